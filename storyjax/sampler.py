"""Story sampler: one prefill pass, then one jitted `lax.while_loop` over a fixed-shape state.

The state holds a preallocated token buffer, the KV cache (updated in place inside the loop), per-row
done flags and the step counter; the RNG of step i is `fold_in(rng, i)`. Temperature, top-k and top-p
are traced scalars, so changing them (or the prompts, or the RNG) never recompiles. Prompts are
left-padded to a common length; positions count only real tokens, so a row sees exactly what it would
see alone.

Returned log-probs are those of the sampled tokens under the *unmodified* model distribution (the
policy the REINFORCE step differentiates), not under the temperature/top-k/top-p-filtered one.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from storyjax import model as model_lib


class Samples(NamedTuple):
    tokens_BxN: jax.Array    # sampled ids; pad after a row's end-of-text
    mask_BxN: jax.Array      # True for response tokens, end-of-text included
    logprobs_BxN: jax.Array  # policy log-prob of each sampled token (0 where masked)


def filter_logits(logits_BxV, temperature, top_k, top_p):
    """Temperature, then top-k (0 = off), then nucleus top-p (1 = off); filtered entries get -inf.

    The vocabulary sort both filters need is skipped (lax.cond) under pure sampling, the paper's setting.
    """
    logits_BxV = logits_BxV / jnp.maximum(temperature, 1e-6)
    return jax.lax.cond((top_k > 0) | (top_p < 1.0), _top_k_top_p, lambda x, k, p: x, logits_BxV, top_k, top_p)


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


def choose(logits_BxV, rng, temperature, top_k, top_p):
    """Samples one token per row; returns (token_B, policy logprob_B)."""
    token_B = jax.random.categorical(rng, filter_logits(logits_BxV, temperature, top_k, top_p))
    logprob_B = jnp.take_along_axis(jax.nn.log_softmax(logits_BxV), token_B[:, None], axis=-1)[:, 0]
    return token_B.astype(jnp.int32), logprob_B


def check_lengths(cfg: model_lib.ModelConfig, prompt_len: int, max_new_tokens: int) -> None:
    if prompt_len + max_new_tokens > cfg.max_len:
        raise ValueError(
            f"prompt of {prompt_len} tokens + max_new_tokens={max_new_tokens} exceeds the model context "
            f"{cfg.max_len}; shorten the prompt or lower max_new_tokens to {cfg.max_len - prompt_len}.")


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "eos_id", "pad_id"))
def sample(cfg: model_lib.ModelConfig, params, prompt_BxP, prompt_valid_BxP, rng, temperature, top_k, top_p,
           *, max_new_tokens: int, eos_id: int, pad_id: int) -> Samples:
    B, P = prompt_BxP.shape
    N = max_new_tokens
    cache = model_lib.init_cache(cfg, B, P + N, dtype=jnp.dtype(cfg.compute_dtype))
    positions_BxP = jnp.maximum(jnp.cumsum(prompt_valid_BxP, axis=1) - 1, 0)
    logits_BxPxV, cache = model_lib.decode(cfg, params, prompt_BxP, positions_BxP, prompt_valid_BxP, cache)
    next_pos_B = jnp.sum(prompt_valid_BxP, axis=1).astype(jnp.int32)

    def cond(state):
        i, done_B = state[0], state[4]
        return (i < N) & ~jnp.all(done_B)

    def body(state):
        i, tokens_BxN, mask_BxN, logprobs_BxN, done_B, logits_BxV, cache, pos_B = state
        token_B, logprob_B = choose(logits_BxV, jax.random.fold_in(rng, i), temperature, top_k, top_p)
        live_B = ~done_B
        token_B = jnp.where(live_B, token_B, pad_id)
        tokens_BxN = tokens_BxN.at[:, i].set(token_B)
        mask_BxN = mask_BxN.at[:, i].set(live_B)  # a response token: emitted while live, end-of-text included
        logprobs_BxN = logprobs_BxN.at[:, i].set(jnp.where(live_B, logprob_B, 0.0))
        done_B = done_B | (token_B == eos_id)
        logits_Bx1xV, cache = model_lib.decode(cfg, params, token_B[:, None], pos_B[:, None], live_B[:, None], cache)
        return i + 1, tokens_BxN, mask_BxN, logprobs_BxN, done_B, logits_Bx1xV[:, 0], cache, pos_B + 1

    state = (jnp.zeros((), jnp.int32), jnp.full((B, N), pad_id, jnp.int32), jnp.zeros((B, N), bool),
             jnp.zeros((B, N), jnp.float32), jnp.zeros((B,), bool), logits_BxPxV[:, -1], cache, next_pos_B)
    _, tokens_BxN, mask_BxN, logprobs_BxN, _, _, _, _ = jax.lax.while_loop(cond, body, state)
    return Samples(tokens_BxN, mask_BxN, logprobs_BxN)
