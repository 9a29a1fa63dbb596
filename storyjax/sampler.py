"""Story sampler: one prefill pass, then one jitted `lax.while_loop` over a fixed-shape state.

The state holds a preallocated token buffer, the KV cache (updated in place inside the loop), per-row
done flags and the step counter; the RNG of story token i is `fold_in(rng, i)`. N tokens take one prefill
and N - 1 decode passes (the last token is sampled from the logits the pass before it left); the loop
advances STEPS_PER_CHECK tokens between looks at the done flags. Temperature, top-k and top-p are traced scalars,
so changing their values (or the prompts, or the RNG) never recompiles; only switching the top-k/top-p
filters on or off does, once. Prompts are left-padded to a common length; positions count only real
tokens, so a row sees exactly what it would see alone.

Returned log-probs are those of the sampled tokens under the *unmodified* model distribution (the
policy the REINFORCE step differentiates), not under the temperature/top-k/top-p-filtered one.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from storyjax import model as model_lib
from storyjax.setting_checks import finite


class Samples(NamedTuple):
    tokens_BxN: jax.Array    # sampled ids; pad after a row's end-of-text
    mask_BxN: jax.Array      # True for response tokens, end-of-text included
    logprobs_BxN: jax.Array  # policy log-prob of each sampled token (0 where masked)


class LoopState(NamedTuple):
    """What the decoding loop carries from one token to the next."""
    tokens_BxN: jax.Array    # sampled so far (pad elsewhere)
    mask_BxN: jax.Array      # response tokens so far
    logprobs_BxN: jax.Array
    done_B: jax.Array        # the row has emitted end-of-text
    logits_BxV: jax.Array    # the next token's logits
    cache: model_lib.KVCache
    pos_B: jax.Array         # the next token's position


# Rows' done flags are read (on GPUs, a device→host copy that stalls kernel launches) once per this many
# steps rather than every step; at most this many - 1 steps run after the last row has ended.
STEPS_PER_CHECK = 8


def filter_logits(logits_BxV, temperature, top_k, top_p, filtered: bool = True):
    """Temperature, then top-k (0 = off), then nucleus top-p (1 = off); filtered entries get -inf.

    `filtered=False` (static) skips the vocabulary sort both filters need: `sample` passes it when top-k
    and top-p are off (pure sampling, the paper's setting), so no per-step branch is left to decide it.
    """
    logits_BxV = logits_BxV / jnp.maximum(temperature, 1e-6)
    return _top_k_top_p(logits_BxV, top_k, top_p) if filtered else logits_BxV


def _top_k_top_p(logits_BxV, top_k, top_p):
    sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
    V = logits_BxV.shape[-1]
    kth_Bx1 = sorted_BxV[:, jnp.clip(top_k - 1, 0, V - 1)][:, None]
    logits_BxV = jnp.where((top_k > 0) & (logits_BxV < kth_Bx1), -jnp.inf, logits_BxV)
    sorted_BxV = jnp.where((top_k > 0) & (sorted_BxV < kth_Bx1), -jnp.inf, sorted_BxV)
    probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
    # Keep the smallest prefix whose mass reaches top_p (the first token always survives).
    mass_before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV
    cutoff_Bx1 = jnp.min(jnp.where(mass_before_BxV < top_p, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
    return jnp.where((top_p < 1.0) & (logits_BxV < cutoff_Bx1), -jnp.inf, logits_BxV)


def choose(logits_BxV, rng, temperature, top_k, top_p, filtered: bool = True):
    """Samples one token per row; returns (token_B, policy logprob_B)."""
    token_B = jax.random.categorical(rng, filter_logits(logits_BxV, temperature, top_k, top_p, filtered))
    logprob_B = jnp.take_along_axis(jax.nn.log_softmax(logits_BxV), token_B[:, None], axis=-1)[:, 0]
    return token_B.astype(jnp.int32), logprob_B


@dataclasses.dataclass(frozen=True)
class Sampling:
    """A run's `sampling` section, parsed."""
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


def setting_problems(sp: Sampling) -> list[str]:
    """What is wrong with a `sampling` section (max_new_tokens, temperature, top_k, top_p), one line each."""
    checks = [
        (sp.max_new_tokens >= 1, f"sampling.max_new_tokens={sp.max_new_tokens}: the student must write at least "
                                 "1 token (paper: 90)"),
        (finite(sp.temperature) and sp.temperature > 0,
         f"sampling.temperature={sp.temperature}: use a positive temperature (paper: 1.0)"),
        (sp.top_k >= 0 and finite(sp.top_p) and 0 < sp.top_p <= 1,
         f"sampling.top_k={sp.top_k} (>= 0) or sampling.top_p={sp.top_p} (in (0, 1]) is out of range"),
    ]
    return [why for ok, why in checks if not ok]


def check_lengths(cfg: model_lib.ModelConfig, prompt_len: int, max_new_tokens: int) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}: the student must write at least one token; set "
                         "--config.sampling.max_new_tokens to 1 or more (the paper: 90).")
    if prompt_len + max_new_tokens > cfg.max_len:
        room = cfg.max_len - prompt_len
        if room >= 1:
            fix = f"lower max_new_tokens to {room} or shorten the prompt"
        elif max_new_tokens < cfg.max_len:
            fix = f"shorten the prompt to at most {cfg.max_len - max_new_tokens} tokens or lower max_new_tokens"
        else:
            fix = f"lower max_new_tokens below {cfg.max_len} and keep prompt + story within the context"
        raise ValueError(f"prompt of {prompt_len} tokens + max_new_tokens={max_new_tokens} exceeds the model "
                         f"context {cfg.max_len}; {fix}.")


def _filtered(top_k, top_p) -> bool:
    """Whether the top-k / top-p filters' sort is needed: decided once from host values (every caller
    here); traced by an outer jit, the path that is right for any value."""
    try:
        return bool(int(top_k) > 0 or float(top_p) < 1.0)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
        return True


def sample(cfg: model_lib.ModelConfig, params, prompt_BxP, prompt_valid_BxP, rng, temperature, top_k, top_p,
           *, max_new_tokens: int, eos_id: int, pad_id: int) -> Samples:
    """Up to `max_new_tokens` tokens after each left-padded prompt (see the module docstring)."""
    return _sample(cfg, params, prompt_BxP, prompt_valid_BxP, rng, temperature, top_k, top_p,
                   max_new_tokens=max_new_tokens, eos_id=eos_id, pad_id=pad_id, filtered=_filtered(top_k, top_p))


def lower_sample(cfg: model_lib.ModelConfig, params, prompt_BxP, prompt_valid_BxP, rng, temperature, top_k, top_p,
                 *, max_new_tokens: int, eos_id: int, pad_id: int, filtered: bool | None = None):
    """What `sample` runs with these arguments, lowered (`.compile().memory_analysis()`: its memory plan).
    `filtered`: whether the top-k / top-p sort is compiled in (None: as `sample` decides from the values;
    give it with abstract scalars)."""
    return _sample.lower(cfg, params, prompt_BxP, prompt_valid_BxP, rng, temperature, top_k, top_p,
                         max_new_tokens=max_new_tokens, eos_id=eos_id, pad_id=pad_id,
                         filtered=_filtered(top_k, top_p) if filtered is None else filtered)


def program(filtered: bool = False):
    """The jitted sampler itself, `filtered` fixed (for exporting or lowering it elsewhere)."""
    return functools.partial(_sample, filtered=filtered)


def prefill(cfg: model_lib.ModelConfig, params, prompt_BxP, prompt_valid_BxP, max_new_tokens: int):
    """The prompts' pass: (the first story token's logits [B, V], the KV cache holding the prompts, the next
    position of each row). Logits of the last prompt position only (left-padded: every row's last real token)."""
    B, P = prompt_BxP.shape
    cache = model_lib.init_cache(cfg, B, P + max_new_tokens, dtype=jnp.dtype(cfg.compute_dtype))
    positions_BxP = jnp.maximum(jnp.cumsum(prompt_valid_BxP, axis=1) - 1, 0)
    logits_Bx1xV, cache = model_lib.decode(cfg, params, prompt_BxP, positions_BxP, prompt_valid_BxP, cache,
                                           last_only=True)
    return logits_Bx1xV[:, 0], cache, jnp.sum(prompt_valid_BxP, axis=1).astype(jnp.int32)


def record(s: LoopState, i, token_B, logprob_B, eos_id: int, pad_id: int) -> LoopState:
    """Writes story token i of the rows still writing (a response token: end-of-text included)."""
    live_B = ~s.done_B
    token_B = jnp.where(live_B, token_B, pad_id)
    return s._replace(tokens_BxN=s.tokens_BxN.at[:, i].set(token_B), mask_BxN=s.mask_BxN.at[:, i].set(live_B),
                      logprobs_BxN=s.logprobs_BxN.at[:, i].set(jnp.where(live_B, logprob_B, 0.0)),
                      done_B=s.done_B | (token_B == eos_id))


def decode_step(cfg: model_lib.ModelConfig, params, s: LoopState, i, rng, temperature, top_k, top_p, *,
                eos_id: int, pad_id: int, filtered: bool) -> LoopState:
    """Samples story token i, records it and runs it through the model (one decode pass) for token i+1's
    logits. Finished rows feed padding, which no later token attends to."""
    token_B, logprob_B = choose(s.logits_BxV, jax.random.fold_in(rng, i), temperature, top_k, top_p, filtered)
    live_B = ~s.done_B
    s = record(s, i, token_B, logprob_B, eos_id, pad_id)
    logits_Bx1xV, cache = model_lib.decode(cfg, params, s.tokens_BxN[:, i][:, None],
                                           jnp.minimum(s.pos_B, cfg.max_len - 1)[:, None], live_B[:, None], s.cache)
    return s._replace(logits_BxV=logits_Bx1xV[:, 0], cache=cache, pos_B=s.pos_B + 1)


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "eos_id", "pad_id", "filtered"))
def _sample(cfg: model_lib.ModelConfig, params, prompt_BxP, prompt_valid_BxP, rng, temperature, top_k, top_p,
            *, max_new_tokens: int, eos_id: int, pad_id: int, filtered: bool) -> Samples:
    """One prefill, then exactly N - 1 decode passes (the last token is sampled, never run through the
    model), STEPS_PER_CHECK at a time between looks at the done flags (the last chunk shorter), in a
    while_loop that stops once every row has ended; then the last token's choice. One decode body is
    compiled (the chunk's length is traced)."""
    B, _ = prompt_BxP.shape
    N = max_new_tokens
    params = model_lib.inference_params(cfg, params)
    logits_BxV, cache, next_pos_B = prefill(cfg, params, prompt_BxP, prompt_valid_BxP, N)
    step = functools.partial(decode_step, cfg, params, rng=rng, temperature=temperature, top_k=top_k, top_p=top_p,
                             eos_id=eos_id, pad_id=pad_id, filtered=filtered)
    state = LoopState(tokens_BxN=jnp.full((B, N), pad_id, jnp.int32), mask_BxN=jnp.zeros((B, N), bool),
                      logprobs_BxN=jnp.zeros((B, N), jnp.float32), done_B=jnp.zeros((B,), bool),
                      logits_BxV=logits_BxV, cache=cache, pos_B=next_pos_B)

    def chunk(carry):  # no look at the done flags within a chunk
        i, st = carry
        n = jnp.minimum(STEPS_PER_CHECK, N - 1 - i)
        st = jax.lax.fori_loop(0, n, lambda j, x: step(x, i + j), st)
        return i + n, st

    _, state = jax.lax.while_loop(lambda c: (c[0] < N - 1) & ~jnp.all(c[1].done_B), chunk,
                                  (jnp.zeros((), jnp.int32), state))
    token_B, logprob_B = choose(state.logits_BxV, jax.random.fold_in(rng, N - 1), temperature, top_k, top_p, filtered)
    end = record(state, N - 1, token_B, logprob_B, eos_id, pad_id)
    return Samples(end.tokens_BxN, end.mask_BxN, end.logprobs_BxN)
