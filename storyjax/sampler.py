"""Story sampler: one prefill pass, then one jitted `lax.while_loop` over a fixed-shape state.

The state holds a preallocated token buffer, the KV cache (updated in place inside the loop), per-row
done flags and the step counter; the RNG of step i is `fold_in(rng, i)`. The loop advances
STEPS_PER_CHECK tokens between looks at the done flags. Temperature, top-k and top-p are traced scalars,
so changing their values (or the prompts, or the RNG) never recompiles; only switching the top-k/top-p
filters on or off does, once. Prompts are left-padded to a common length; positions count only real
tokens, so a row sees exactly what it would see alone.

Returned log-probs are those of the sampled tokens under the *unmodified* model distribution (the
policy the REINFORCE step differentiates), not under the temperature/top-k/top-p-filtered one.
"""

from __future__ import annotations

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


def setting_problems(sp) -> list[str]:
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
                 *, max_new_tokens: int, eos_id: int, pad_id: int):
    """What `sample` runs with these arguments, lowered (`.compile().memory_analysis()`: its memory plan)."""
    return _sample.lower(cfg, params, prompt_BxP, prompt_valid_BxP, rng, temperature, top_k, top_p,
                         max_new_tokens=max_new_tokens, eos_id=eos_id, pad_id=pad_id,
                         filtered=_filtered(top_k, top_p))


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "eos_id", "pad_id", "filtered"))
def _sample(cfg: model_lib.ModelConfig, params, prompt_BxP, prompt_valid_BxP, rng, temperature, top_k, top_p,
            *, max_new_tokens: int, eos_id: int, pad_id: int, filtered: bool) -> Samples:
    B, P = prompt_BxP.shape
    N = max_new_tokens
    # Buffers padded to whole checks; steps past N are dead (nothing recorded) and their cache writes land
    # in the last slot, which no recorded token's logits depend on.
    N_pad = -(-N // STEPS_PER_CHECK) * STEPS_PER_CHECK
    params = model_lib.inference_params(cfg, params)
    cache = model_lib.init_cache(cfg, B, P + N, dtype=jnp.dtype(cfg.compute_dtype))
    positions_BxP = jnp.maximum(jnp.cumsum(prompt_valid_BxP, axis=1) - 1, 0)
    logits_BxPxV, cache = model_lib.decode(cfg, params, prompt_BxP, positions_BxP, prompt_valid_BxP, cache)
    next_pos_B = jnp.sum(prompt_valid_BxP, axis=1).astype(jnp.int32)

    def step(i, s: LoopState) -> LoopState:
        token_B, logprob_B = choose(s.logits_BxV, jax.random.fold_in(rng, i), temperature, top_k, top_p, filtered)
        live_B = ~s.done_B & (i < N)
        token_B = jnp.where(live_B, token_B, pad_id)
        logits_Bx1xV, cache = model_lib.decode(cfg, params, token_B[:, None],
                                               jnp.minimum(s.pos_B, cfg.max_len - 1)[:, None], live_B[:, None],
                                               s.cache)
        return LoopState(tokens_BxN=s.tokens_BxN.at[:, i].set(token_B),
                         # a response token: emitted while live, end-of-text included
                         mask_BxN=s.mask_BxN.at[:, i].set(live_B),
                         logprobs_BxN=s.logprobs_BxN.at[:, i].set(jnp.where(live_B, logprob_B, 0.0)),
                         done_B=s.done_B | (token_B == eos_id), logits_BxV=logits_Bx1xV[:, 0], cache=cache,
                         pos_B=s.pos_B + 1)

    def cond(carry):
        i, state = carry
        return (i < N) & ~jnp.all(state.done_B)

    def steps(carry):  # a fixed trip count: no per-step look at the done flags
        i, state = carry
        state = jax.lax.fori_loop(0, STEPS_PER_CHECK, lambda j, st: step(i + j, st), state)
        return i + STEPS_PER_CHECK, state

    state = LoopState(tokens_BxN=jnp.full((B, N_pad), pad_id, jnp.int32), mask_BxN=jnp.zeros((B, N_pad), bool),
                      logprobs_BxN=jnp.zeros((B, N_pad), jnp.float32), done_B=jnp.zeros((B,), bool),
                      logits_BxV=logits_BxPxV[:, -1], cache=cache, pos_B=next_pos_B)
    _, end = jax.lax.while_loop(cond, steps, (jnp.zeros((), jnp.int32), state))
    return Samples(end.tokens_BxN[:, :N], end.mask_BxN[:, :N], end.logprobs_BxN[:, :N])
