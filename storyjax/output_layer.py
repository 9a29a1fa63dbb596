"""The student's tied output layer, applied a chunk of positions at a time for the losses.

Training and REINFORCE need per-token log-probabilities (and REINFORCE the entropy), never the logits
themselves: the float32 [B, T, V] logits of a gpt2_small batch of 64 are 2.1 GB, written forward and again
backward, and kept them from fitting batch 128 on one GPU. Here the rows (B·T positions) are cut into
chunks of CHUNK_ROWS; each chunk's logits are made, reduced to log p(label), its log-sum-exp and entropy, and
dropped, and the backward pass makes them again per chunk (rematerialised) rather than keeping them. A batch
of at most one chunk (every CPU preset here) runs unchunked, exactly as before.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Rows per chunk: a [CHUNK_ROWS, V] float32 block is 262 MB at V = 16,000, large enough for full-speed matmuls.
CHUNK_ROWS = 4096


def matmul_f32(equation: str, a, b, compute_dtype: str):
    """einsum with a float32 result: under bfloat16 compute the inputs (and, in the backward pass, the
    incoming gradient) are bfloat16 and only accumulation is float32, so the big matmuls whose results
    must stay float32 (attention scores, the output layer) run at bfloat16 speed in both directions."""
    if compute_dtype == "bfloat16":
        return jnp.einsum(equation, a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                          precision=jax.lax.DotAlgorithmPreset.BF16_BF16_F32, preferred_element_type=jnp.float32)
    return jnp.einsum(equation, a.astype(jnp.float32), b.astype(jnp.float32))


def _chunk_stats(h_NxC, embedding_VxC, labels_N, compute_dtype: str, entropy: bool):
    logits_NxV = matmul_f32("nc,vc->nv", h_NxC, embedding_VxC, compute_dtype)
    lse_N = jax.nn.logsumexp(logits_NxV, axis=-1)
    logp_N = jnp.take_along_axis(logits_NxV, labels_N[:, None], axis=-1)[:, 0] - lse_N
    if not entropy:
        return logp_N, jnp.zeros_like(logp_N)
    probs_NxV = jnp.exp(logits_NxV - lse_N[:, None])
    return logp_N, lse_N - (probs_NxV * logits_NxV).sum(-1)


def token_logprobs(cfg, params, h_BxTxC, labels_BxT, entropy: bool = True, chunk_rows: int | None = None):
    """log p(label) at each position [B, T] under the tied output layer, and the entropy there ([B, T], or
    None unless `entropy`), from the final hidden states (`model.forward(..., head=False)`)."""
    B, T, C = h_BxTxC.shape
    N = B * T
    chunk_rows = chunk_rows or CHUNK_ROWS
    embedding_VxC = params["wte"]["embedding"]
    stats = lambda h, y: _chunk_stats(h, embedding_VxC, y, cfg.compute_dtype, entropy)
    h_NxC, labels_N = h_BxTxC.reshape(N, C), labels_BxT.reshape(N)
    if N <= chunk_rows:
        logp_N, entropy_N = stats(h_NxC, labels_N)
    else:
        k = -(-N // chunk_rows)
        pad = k * chunk_rows - N
        h_KxRxC = jnp.pad(h_NxC, ((0, pad), (0, 0))).reshape(k, chunk_rows, C)
        labels_KxR = jnp.pad(labels_N, (0, pad)).reshape(k, chunk_rows)
        chunk = jax.checkpoint(lambda xs: stats(*xs))
        # jax.lax.scan by that name: storyjax.compiled.unrolled_scans() unrolls it to count every chunk's FLOPs
        _, (logp_KxR, entropy_KxR) = jax.lax.scan(lambda carry, xs: (carry, chunk(xs)), None, (h_KxRxC, labels_KxR))
        logp_N, entropy_N = logp_KxR.reshape(-1)[:N], entropy_KxR.reshape(-1)[:N]
    return logp_N.reshape(B, T), (entropy_N.reshape(B, T) if entropy else None)
