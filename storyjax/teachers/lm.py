"""The teacher's language model: a decoder-only transformer (Llama-3.x, SmolLM2, Qwen2.5, Gemma-3) as a
pure function of a params pytree, with attention that can read shared context without copying it per row.

Grading a batch means one prompt prefix (chat header, rubric, opening line) shared by every story and a
suffix per story. `forward` runs new tokens against any number of *context segments*: K/V computed
earlier, either shared by the whole batch (the prefix: `[T, Hkv, D]`, no batch axis, so the scores are one
batched matmul against a single copy) or per row (`[B, T, Hkv, D]`). Each segment's softmax is computed on
its own and the segments are merged exactly with log-sum-exp (Hydragen / cascade inference), so the
result equals plain attention over the concatenated sequence.

Gemma-3 differs in ways the config names: the embedding is scaled by sqrt(d_model), Q and K are
RMS-normed per head, attention and MLP outputs are normed again before the residual add, the MLP uses
tanh-GELU, the query scale is `query_pre_attn_scalar`, and five layers in six attend only to the last
`sliding_window` positions with their own RoPE base. Norm weights are stored as the multiplier itself
(Gemma's `1 + w`), as GGUF files store them, so one RMS norm serves every family.

Layers are stacked along a leading axis and run under `lax.scan` (one layer compiled, not N); what differs
per layer (sliding or global attention, its RoPE frequencies) is scanned over with it. Weights are kept in
the compute dtype; norms, softmax and logits are float32.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

FAMILIES = ("llama", "qwen2", "gemma3")


@dataclasses.dataclass(frozen=True)
class LMConfig:
    family: str
    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_dim: int
    rms_eps: float
    max_len: int
    qkv_bias: bool = False          # qwen2
    tie_embeddings: bool = True
    compute_dtype: str = "float32"
    # gemma3
    embed_scale: float = 1.0
    activation: str = "silu"        # or "gelu_tanh"
    qk_norm: bool = False
    post_norms: bool = False
    query_scalar: float = 0.0       # attention scale is query_scalar**-0.5 (0: head_dim)
    sliding_window: int = 0
    sliding_layers: tuple = ()      # per layer: attends only to the last `sliding_window` positions
    attn_softcap: float = 0.0
    final_softcap: float = 0.0

    def validate(self) -> "LMConfig":
        if self.family not in FAMILIES:
            raise ValueError(f"teacher architecture {self.family!r} is not supported; storyjax reads {FAMILIES}.")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"{self.num_heads} attention heads do not split into {self.num_kv_heads} KV groups.")
        if self.activation not in ("silu", "gelu_tanh"):
            raise ValueError(f"teacher MLP activation {self.activation!r} is not supported (silu, gelu_tanh).")
        if self.sliding_layers and (len(self.sliding_layers) != self.num_layers or not self.sliding_window):
            raise ValueError(f"sliding_layers names {len(self.sliding_layers)} layers of {self.num_layers}, with "
                             f"sliding_window={self.sliding_window}: give one flag per layer and a window.")
        return self


class Segment(NamedTuple):
    """Keys/values the new tokens may attend to. `k`/`v`: [L, T, Hkv, D] (shared by every row) or
    [L, B, T, Hkv, D] (per row); `mask_BxSxT`: which keys each new token sees (None: all); `pos`: the keys'
    positions, [T] or [B, T] (needed only by sliding-window layers)."""
    k: jax.Array
    v: jax.Array
    mask_BxSxT: Optional[jax.Array] = None
    pos: Optional[jax.Array] = None


def rope_inv_freq(head_dim: int, theta: float, scaling: Optional[dict] = None) -> np.ndarray:
    """RoPE inverse frequencies, with Llama-3's long-context scaling (`rope_scaling.rope_type == "llama3"`)."""
    # float32 arithmetic, as transformers computes it (its logits are the reference)
    inv = np.float32(1.0) / np.float32(theta) ** (np.arange(0, head_dim, 2).astype(np.float32) / np.float32(head_dim))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind in (None, "default"):
        return inv.astype(np.float32)
    if kind == "linear":  # Gemma-3's global layers (4B and up)
        return (inv / np.float32(scaling["factor"])).astype(np.float32)
    if kind != "llama3":
        raise ValueError(f"rope_scaling type {kind!r} is not supported (storyjax reads 'default', 'linear' and "
                         "'llama3').")
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * np.pi / inv
    smooth = (old_len / wavelen - low) / (high - low)
    scaled = np.where(wavelen > old_len / low, inv / factor, inv)
    mid = (wavelen <= old_len / low) & (wavelen >= old_len / high)
    return np.where(mid, (1 - smooth) * inv / factor + smooth * inv, scaled).astype(np.float32)


def _rms_norm(x, w, eps):
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) + eps) * w).astype(x.dtype)


def _rope(x_BxSxHxD, pos_BxS, inv_freq):
    """rotate_half RoPE (the Hugging Face layout; GGUF Q/K rows are un-permuted to it on load)."""
    angles = pos_BxS[..., None].astype(jnp.float32) * inv_freq  # [B, S, D/2]
    cos, sin = jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]
    x = x_BxSxHxD.astype(jnp.float32)
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x_BxSxHxD.dtype)


def _segment_attention(q_BxSxKxGxD, k, v, mask_BxSxT, scale, softcap=0.0):
    """(out [B,S,K,G,D] normalised within this segment, lse [B,S,K,G]) of one segment.

    Scores are laid out as the batched matmul produces them, batch axes first ([K,B,S,G,T] against a shared
    segment, [B,K,S,G,T] against a per-row one), so softmax and P·V read them in place: written [B,S,K,G,T],
    each layer copied the largest tensor of the pass twice (SmolLM2 story pass on CPU: 17 s → 11–13 s)."""
    shared = k.ndim == 3
    s = jnp.einsum("bskgd,tkd->kbsgt" if shared else "bskgd,btkd->bksgt", q_BxSxKxGxD, k,
                   preferred_element_type=jnp.float32) * scale
    if softcap:
        s = jnp.tanh(s / softcap) * softcap
    if mask_BxSxT is not None:
        s = jnp.where(mask_BxSxT[None, :, :, None, :] if shared else mask_BxSxT[:, None, :, None, :], s, -jnp.inf)
    m = jnp.max(s, -1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)  # a row that sees nothing here: weight 0 below, not NaN
    p = jnp.exp(s - m)
    denom = p.sum(-1, keepdims=True)
    out = jnp.einsum("kbsgt,tkd->kbsgd" if shared else "bksgt,btkd->bksgd", p.astype(v.dtype), v,
                     preferred_element_type=jnp.float32) / jnp.maximum(denom, 1e-30)
    lse = jnp.where(denom[..., 0] > 0, m[..., 0] + jnp.log(jnp.maximum(denom[..., 0], 1e-30)), -jnp.inf)
    order = (1, 2, 0, 3) if shared else (0, 2, 1, 3)  # back to [B,S,K,G]: small tensors
    return jnp.transpose(out, order + (4,)), jnp.transpose(lse, order)


def _merge(parts):
    """Exact softmax over the union of segments from each segment's (normalised output, log-sum-exp)."""
    lse_all = jnp.stack([lse for _, lse in parts])
    top = jnp.max(lse_all, 0)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    weights = jnp.exp(lse_all - top)
    total = jnp.maximum(weights.sum(0), 1e-30)
    return sum(w[..., None] * out for w, (out, _) in zip(weights, parts)) / total[..., None]


def _layer(cfg: LMConfig, h_BxSxD, pos_BxS, layer, contexts, self_mask_BxSxS):
    """One block. `contexts`: (k, v, mask [B,S,T] or None) per segment; masks (the new tokens' own
    included) come with the sliding window already applied where this layer slides."""
    B, S, _ = h_BxSxD.shape
    K, G, D = cfg.num_kv_heads, cfg.num_heads // cfg.num_kv_heads, cfg.head_dim
    x = _rms_norm(h_BxSxD, layer["attn_norm"], cfg.rms_eps)
    q, k, v = x @ layer["wq"], x @ layer["wk"], x @ layer["wv"]
    if cfg.qkv_bias:
        q, k, v = q + layer["bq"], k + layer["bk"], v + layer["bv"]
    q, k, v = q.reshape(B, S, K * G, D), k.reshape(B, S, K, D), v.reshape(B, S, K, D)
    if cfg.qk_norm:
        q, k = _rms_norm(q, layer["q_norm"], cfg.rms_eps), _rms_norm(k, layer["k_norm"], cfg.rms_eps)
    q = _rope(q, pos_BxS, layer["rope_inv_freq"]).reshape(B, S, K, G, D)
    k = _rope(k, pos_BxS, layer["rope_inv_freq"])
    scale = (cfg.query_scalar or D) ** -0.5
    parts = [_segment_attention(q, ck, cv, mask, scale, cfg.attn_softcap) for ck, cv, mask in contexts]
    parts.append(_segment_attention(q, k, v, self_mask_BxSxS, scale, cfg.attn_softcap))
    attn = _merge(parts).astype(h_BxSxD.dtype).reshape(B, S, K * G * D) @ layer["wo"]
    if cfg.post_norms:
        attn = _rms_norm(attn, layer["post_attn_norm"], cfg.rms_eps)
    h_BxSxD = h_BxSxD + attn
    x = _rms_norm(h_BxSxD, layer["ffn_norm"], cfg.rms_eps)
    act = jax.nn.silu if cfg.activation == "silu" else functools.partial(jax.nn.gelu, approximate=True)
    ffn = (act(x @ layer["w_gate"]) * (x @ layer["w_up"])) @ layer["w_down"]
    if cfg.post_norms:
        ffn = _rms_norm(ffn, layer["post_ffn_norm"], cfg.rms_eps)
    return h_BxSxD + ffn, (k, v)


def _window(cfg: LMConfig, pos_BxS, mask_BxSxT, key_pos):
    """The segment's mask for a sliding layer: keys fewer than `sliding_window` positions back (as
    transformers and llama.cpp count: a query at p sees p - window + 1 .. p)."""
    if key_pos is None:
        raise ValueError("a sliding-window teacher needs each context segment's key positions (Segment.pos).")
    key_pos = key_pos[None, None, :] if key_pos.ndim == 1 else key_pos[:, None, :]
    near = pos_BxS[:, :, None] - key_pos < cfg.sliding_window
    return near if mask_BxSxT is None else mask_BxSxT & near


def forward(cfg: LMConfig, params, tokens_BxS, pos_BxS, self_mask_BxSxS, contexts: tuple = ()):
    """Final hidden states [B, S, D] of `tokens_BxS` at `pos_BxS`, attending to each context segment
    and, within the new tokens, where `self_mask_BxSxS` allows; plus the new tokens' K/V per layer
    ([L, B, S, Hkv, D] each) so later tokens can use them as a segment."""
    dtype = jnp.dtype(cfg.compute_dtype)
    h = params["embed"][tokens_BxS].astype(dtype)
    if cfg.embed_scale != 1.0:  # in the compute dtype, as transformers scales Gemma's embedding
        h = h * jnp.asarray(cfg.embed_scale, dtype)
    L = cfg.num_layers
    masks = [seg.mask_BxSxT for seg in contexts] + [self_mask_BxSxS]
    if cfg.sliding_window:
        key_pos = [seg.pos for seg in contexts] + [pos_BxS]
        windowed = [_window(cfg, pos_BxS, m, kp) for m, kp in zip(masks, key_pos)]
    sliding_L = jnp.asarray(cfg.sliding_layers or (False,) * L)
    inv_freq = params["rope_inv_freq"]
    per_layer = {**params["layers"], "rope_inv_freq": jnp.broadcast_to(inv_freq, (L, inv_freq.shape[-1]))}

    def body(h, xs):
        layer, ctx, sliding = xs
        ms = masks
        if cfg.sliding_window:
            ms = [jnp.where(sliding, w, True if m is None else m) for m, w in zip(masks, windowed)]
        return _layer(cfg, h, pos_BxS, layer, [(ck, cv, m) for (ck, cv), m in zip(ctx, ms)], ms[-1])

    ctx_kv = tuple((seg.k, seg.v) for seg in contexts)
    h, (k_L, v_L) = jax.lax.scan(body, h, (per_layer, ctx_kv, sliding_L))
    return _rms_norm(h, params["final_norm"], cfg.rms_eps), k_L, v_L


def logits(cfg: LMConfig, params, h_NxD):
    """Next-token logits (float32) for hidden states of any leading shape."""
    head = params["embed"].T if cfg.tie_embeddings else params["lm_head"]
    out = jnp.einsum("...d,dv->...v", h_NxD, head, preferred_element_type=jnp.float32)
    return jnp.tanh(out / cfg.final_softcap) * cfg.final_softcap if cfg.final_softcap else out


def causal_mask(valid_BxS):
    S = valid_BxS.shape[1]
    return jnp.tril(jnp.ones((S, S), bool))[None] & valid_BxS[:, None, :]


def full_logits(cfg: LMConfig, params, tokens_BxS, valid_BxS):
    """Plain causal forward over whole right-padded sequences: logits [B, S, V] (the reference path)."""
    pos = jnp.maximum(jnp.cumsum(valid_BxS, 1) - 1, 0)
    h, _, _ = forward(cfg, params, tokens_BxS, pos, causal_mask(valid_BxS))
    return logits(cfg, params, h)
