"""The student: a GPT-2 decoder as a pure function of its parameters.

Linen rather than NNX: `Transformer(cfg).apply(params, ...)` is already the pure
`params in, logits out` function the jitted/pmapped steps need, parameters are a
plain nested dict (easy to checkpoint, replicate and map onto HF GPT-2 names for
export), and there is no split/merge bookkeeping inside `pmap`/`while_loop`.

Parameter names follow Hugging Face's GPT-2 (wte, wpe, h_0.attn.c_attn, ...)
so conversion to and from `transformers` is a renaming, not a reshuffle.

Two entry points share one set of weights:
  * `forward`: full causal pass over `tokens_BxT` (training, scoring).
  * `decode`: incremental pass that writes keys/values into a preallocated
    `KVCache` at `cache.index` and attends over the valid cache slots; used by
    the sampler (one prefill call, then one token at a time).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from storyjax import output_layer

PRESETS = {
    # The paper's student (arXiv 2509.15714): 97,737,216 parameters at vocab 16,000.
    "gpt2_small": dict(num_layers=12, d_model=768, num_heads=12, max_len=512),
    # CPU-sized: trains at a few thousand tokens/s on two cores.
    "tiny": dict(num_layers=4, d_model=256, num_heads=4, max_len=128),
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 16_000
    num_layers: int = 12
    d_model: int = 768
    num_heads: int = 12
    max_len: int = 512
    mlp_ratio: int = 4
    dropout: float = 0.1
    init_std: float = 0.02
    layer_norm_eps: float = 1e-5
    # Activations/matmuls in this dtype; parameters always stay float32.
    compute_dtype: str = "float32"
    # Training-time causal attention: "xla" (einsum + float32 softmax, attention dropout), "cudnn" (fused
    # flash attention, no attention dropout), "auto" (cudnn where it compiles: GPU, bfloat16, no attention
    # dropout; else xla). Decoding and left-padded batches always take the xla path.
    attention: str = "auto"

    # Fields that are run-time choices, not the architecture (not written into run_meta.json).
    RUNTIME = ("dropout", "compute_dtype", "attention")

    def shape_dict(self) -> dict:
        """The architecture: what run_meta.json records and a checkpoint must match."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RUNTIME}

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def validate(self) -> "ModelConfig":
        if self.d_model % self.num_heads:
            raise ValueError(
                f"model.d_model={self.d_model} is not divisible by model.num_heads="
                f"{self.num_heads}; pick num_heads that divides d_model.")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"model.compute_dtype={self.compute_dtype!r}: use 'float32' or 'bfloat16'.")
        if self.attention not in ("auto", "xla", "cudnn"):
            raise ValueError(f"model.attention={self.attention!r}: use 'auto', 'xla' or 'cudnn'.")
        if self.attention == "cudnn" and self.compute_dtype != "bfloat16":
            raise ValueError("model.attention='cudnn' needs model.compute_dtype='bfloat16' (cuDNN flash attention "
                             "takes bf16/fp16 only); or use model.attention='auto'.")
        if self.attention == "cudnn" and self.dropout > 0:
            raise ValueError(f"model.attention='cudnn' has no attention dropout but model.dropout={self.dropout}; "
                             "set model.dropout=0, or model.attention='auto' (cuDNN when dropout is off).")
        return self


def model_config_from(cfg, vocab_size: int) -> ModelConfig:
    """Builds the model config from the `model` section of a run's parsed settings."""
    if cfg.preset not in PRESETS:
        raise ValueError(f"model.preset={cfg.preset!r} is unknown; choose one of {sorted(PRESETS)}.")
    shape = dict(PRESETS[cfg.preset])
    for key in ("num_layers", "d_model", "num_heads", "max_len"):
        override = getattr(cfg, key)
        if override:
            shape[key] = override
    return ModelConfig(vocab_size=vocab_size, dropout=cfg.dropout, compute_dtype=cfg.compute_dtype,
                       attention=cfg.attention, **shape).validate()


class KVCache(NamedTuple):
    """Preallocated keys/values for every layer, shared write index.

    One buffer per layer, so a layer reads its keys/values where they lie: slicing one [L, ...] buffer
    made XLA copy each layer's slice out of it at every step (on CPU a fifth of the sampler's op time,
    though not of its wall-clock; on GPUs those copies are memory traffic the size of the cache).
    Heads before slots ([B, H, S, D]): each decoding step's attention is then a matmul batched over
    (B, H) with the batch dimensions leading, the layout GPU matmul libraries take without a copy.
    Rows of a batch may hold prompts of different lengths (left-padded): a slot is attended to only
    where `valid_BxS` is set, so padding never leaks in.
    """
    k_BxHxSxD: tuple[jax.Array, ...]  # one per layer
    v_BxHxSxD: tuple[jax.Array, ...]
    valid_BxS: jax.Array
    index: jax.Array  # int32 scalar: next slot to write


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=jnp.float32) -> KVCache:
    if length > cfg.max_len:
        raise ValueError(f"cache length {length} exceeds the model context {cfg.max_len}.")
    shape = (batch, cfg.num_heads, length, cfg.head_dim)
    zeros = lambda: tuple(jnp.zeros(shape, dtype) for _ in range(cfg.num_layers))
    return KVCache(zeros(), zeros(), jnp.zeros((batch, length), bool), jnp.zeros((), jnp.int32))


def _dense(cfg: ModelConfig, features: int, name: str, std: float) -> nn.Dense:
    return nn.Dense(features, name=name, dtype=jnp.dtype(cfg.compute_dtype),
                    param_dtype=jnp.float32,
                    kernel_init=nn.initializers.normal(std), bias_init=nn.initializers.zeros)


def _layer_norm(cfg: ModelConfig, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=cfg.layer_norm_eps, name=name,
                        dtype=jnp.dtype(cfg.compute_dtype), param_dtype=jnp.float32)


@functools.lru_cache(maxsize=None)
def cudnn_attention_compiles(seq_len: int, head_dim: int) -> bool:
    """Whether cuDNN's fused causal attention (forward and backward) compiles here at this shape.

    Probed once per shape on abstract inputs, so "auto" falls back to xla on CPU, TPU, GPUs or cuDNN
    builds without it, and shapes it refuses, instead of failing the run."""
    if jax.default_backend() != "gpu":
        return False
    spec = jax.ShapeDtypeStruct((1, seq_len, 1, head_dim), jnp.bfloat16)

    def loss(q):
        return jax.nn.dot_product_attention(q, q, q, is_causal=True, implementation="cudnn").astype(
            jnp.float32).sum()

    try:
        jax.jit(jax.grad(loss)).lower(spec).compile()
        return True
    except Exception:  # noqa: BLE001 - any refusal (no cuDNN, old GPU, shape) means: use xla
        return False


def use_cudnn_attention(cfg: ModelConfig, seq_len: int, deterministic: bool) -> bool:
    """The causal full-sequence pass takes cuDNN flash attention when the config allows it (see
    ModelConfig.attention); attention dropout, which cuDNN's public entry point lacks, keeps xla."""
    dropout_active = not deterministic and cfg.dropout > 0
    if cfg.attention == "xla" or dropout_active:
        return False
    if cfg.attention == "cudnn":
        return True
    return cfg.compute_dtype == "bfloat16" and cudnn_attention_compiles(seq_len, cfg.head_dim)


class Attention(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxTxC, mask_BxTxS, deterministic, kv=None):
        """`mask_BxTxS=None` means plain causal attention over an unpadded batch (training)."""
        cfg = self.cfg
        B, T, _ = x_BxTxC.shape
        # GPT-2 scales the residual projections by 1/sqrt(2·layers) at init.
        resid_std = cfg.init_std / (2 * cfg.num_layers) ** 0.5
        qkv_BxTx3C = _dense(cfg, 3 * cfg.d_model, "c_attn", cfg.init_std)(x_BxTxC)
        q, k, v = jnp.split(qkv_BxTx3C, 3, axis=-1)
        heads = lambda a: a.reshape(B, T, cfg.num_heads, cfg.head_dim)
        new_kv = None
        if kv is None and mask_BxTxS is None and use_cudnn_attention(cfg, T, deterministic):
            out_BxTxHxD = jax.nn.dot_product_attention(heads(q), heads(k), heads(v), is_causal=True,
                                                       implementation="cudnn")
        else:
            out_BxTxHxD, new_kv = self._xla_attention(heads(q), heads(k), heads(v), mask_BxTxS, deterministic, kv)
        out_BxTxC = _dense(cfg, cfg.d_model, "c_proj", resid_std)(out_BxTxHxD.reshape(B, T, cfg.d_model))
        return nn.Dropout(cfg.dropout)(out_BxTxC, deterministic=deterministic), new_kv

    def _xla_attention(self, q_BxTxHxD, k_BxTxHxD, v_BxTxHxD, mask_BxTxS, deterministic, kv):
        cfg = self.cfg
        T = q_BxTxHxD.shape[1]
        to_heads_first = lambda a: a.transpose(0, 2, 1, 3)
        q_BxHxTxD, k_BxHxSxD, v_BxHxSxD = map(to_heads_first, (q_BxTxHxD, k_BxTxHxD, v_BxTxHxD))
        new_kv = None
        if kv is not None:
            # Write this step's keys/values into the layer's own buffers (in place inside the sampler's
            # while_loop) and attend over all their slots.
            k_cache, v_cache, index = kv
            k_BxHxSxD = jax.lax.dynamic_update_slice(k_cache, k_BxHxSxD.astype(k_cache.dtype), (0, 0, index, 0))
            v_BxHxSxD = jax.lax.dynamic_update_slice(v_cache, v_BxHxSxD.astype(v_cache.dtype), (0, 0, index, 0))
            new_kv = (k_BxHxSxD, v_BxHxSxD)
        if mask_BxTxS is None:
            mask_BxTxS = jnp.tril(jnp.ones((T, T), bool))[None]
        # Scores and softmax in float32 even under bf16 compute: logits of long contexts overflow bf16 precision.
        scores_BxHxTxS = output_layer.matmul_f32("bhtd,bhsd->bhts", q_BxHxTxD, k_BxHxSxD,
                                                 cfg.compute_dtype) / jnp.sqrt(jnp.float32(cfg.head_dim))
        scores_BxHxTxS = jnp.where(mask_BxTxS[:, None], scores_BxHxTxS, -1e30)
        probs_BxHxTxS = jax.nn.softmax(scores_BxHxTxS, axis=-1).astype(jnp.dtype(cfg.compute_dtype))
        probs_BxHxTxS = nn.Dropout(cfg.dropout)(probs_BxHxTxS, deterministic=deterministic)
        out_BxTxHxD = jnp.einsum("bhts,bhsd->bthd", probs_BxHxTxS, v_BxHxSxD.astype(probs_BxHxTxS.dtype))
        return out_BxTxHxD, new_kv


class MLP(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxTxC, deterministic):
        cfg = self.cfg
        resid_std = cfg.init_std / (2 * cfg.num_layers) ** 0.5
        h = _dense(cfg, cfg.mlp_ratio * cfg.d_model, "c_fc", cfg.init_std)(x_BxTxC)
        h = nn.gelu(h, approximate=True)
        h = _dense(cfg, cfg.d_model, "c_proj", resid_std)(h)
        return nn.Dropout(cfg.dropout)(h, deterministic=deterministic)


class Block(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxTxC, mask_BxTxS, deterministic, kv=None):
        attn, new_kv = Attention(self.cfg, name="attn")(
            _layer_norm(self.cfg, "ln_1")(x_BxTxC), mask_BxTxS, deterministic, kv)
        x_BxTxC = x_BxTxC + attn
        x_BxTxC = x_BxTxC + MLP(self.cfg, name="mlp")(_layer_norm(self.cfg, "ln_2")(x_BxTxC), deterministic)
        return x_BxTxC, new_kv


class Transformer(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens_BxT, positions_BxT, mask_BxTxS, deterministic=True,
                 cache: Optional[KVCache] = None, last_only: bool = False, head: bool = True):
        """`last_only`: the logits of the last position alone (a prefill needs no others). `head=False`: the
        final hidden states instead of logits (storyjax.output_layer applies the head a chunk at a time)."""
        cfg = self.cfg
        dtype = jnp.dtype(cfg.compute_dtype)
        wte = nn.Embed(cfg.vocab_size, cfg.d_model, name="wte", param_dtype=jnp.float32,
                       embedding_init=nn.initializers.normal(cfg.init_std))
        wpe = nn.Embed(cfg.max_len, cfg.d_model, name="wpe", param_dtype=jnp.float32,
                       embedding_init=nn.initializers.normal(cfg.init_std))
        x_BxTxC = (wte(tokens_BxT) + wpe(positions_BxT)).astype(dtype)
        x_BxTxC = nn.Dropout(cfg.dropout)(x_BxTxC, deterministic=deterministic)
        new_k, new_v = [], []
        for i in range(cfg.num_layers):
            kv = None if cache is None else (cache.k_BxHxSxD[i], cache.v_BxHxSxD[i], cache.index)
            x_BxTxC, layer_kv = Block(cfg, name=f"h_{i}")(x_BxTxC, mask_BxTxS, deterministic, kv)
            if layer_kv is not None:
                new_k.append(layer_kv[0])
                new_v.append(layer_kv[1])
        if last_only:
            x_BxTxC = x_BxTxC[:, -1:]
        x_BxTxC = _layer_norm(cfg, "ln_f")(x_BxTxC)
        if not head:
            return x_BxTxC, None
        # Tied output embedding; logits in float32 so the loss and sampling see full precision.
        logits_BxTxV = output_layer.matmul_f32("btc,vc->btv", x_BxTxC, wte.embedding, cfg.compute_dtype)
        if cache is None:
            return logits_BxTxV, None
        return logits_BxTxV, (tuple(new_k), tuple(new_v))


def init_params(cfg: ModelConfig, rng: jax.Array) -> Any:
    tokens = jnp.zeros((1, 8), jnp.int32)
    positions = jnp.arange(8)[None]
    mask = jnp.tril(jnp.ones((1, 8, 8), bool))
    return Transformer(cfg).init(rng, tokens, positions, mask)["params"]


def count_params(params) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))


def all_finite(tree) -> jax.Array:
    """True when every floating-point leaf of `tree` (parameters, optimizer moments) is finite; traceable,
    so a jitted step can report whether the state it returns may be checkpointed."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves])) if leaves else jnp.asarray(True)


def inference_params(cfg: ModelConfig, params):
    """`params` with the dense layers' kernels and biases already in the compute dtype.

    Exact: nn.Dense casts them to that dtype on every call anyway; casting once before a decoding loop
    spares reading float32 weights and writing bf16 copies at every token, should XLA not hoist the casts.
    """
    dtype = jnp.dtype(cfg.compute_dtype)

    def cast(path, x):
        in_dense = any(getattr(k, "key", None) in ("c_attn", "c_proj", "c_fc") for k in path)
        return x.astype(dtype) if in_dense else x

    return jax.tree_util.tree_map_with_path(cast, params)


def forward(cfg: ModelConfig, params, tokens_BxT, *, valid_BxT=None, rng=None, head: bool = True):
    """Full causal pass: logits [B, T, V], or with `head=False` the final hidden states [B, T, C]. `valid_BxT`
    marks real tokens in left-padded rows.

    Positions count only valid tokens, so a left-padded prompt sees the same
    positions as the unpadded one. Dropout is active iff `rng` is given.
    """
    B, T = tokens_BxT.shape
    if T > cfg.max_len:
        raise ValueError(f"sequence length {T} exceeds the model context {cfg.max_len}.")
    if valid_BxT is None:  # unpadded: plain causal attention (the fused cuDNN kernel where enabled)
        positions_BxT = jnp.broadcast_to(jnp.arange(T), (B, T))
        mask_BxTxS = None
    else:
        positions_BxT = jnp.maximum(jnp.cumsum(valid_BxT, axis=1) - 1, 0)
        causal_TxT = jnp.tril(jnp.ones((T, T), bool))
        mask_BxTxS = causal_TxT[None] & valid_BxT[:, None, :]
        # A padding query row with nothing to attend to would give NaNs: let it see itself.
        mask_BxTxS = mask_BxTxS | jnp.eye(T, dtype=bool)[None]
    rngs = None if rng is None else {"dropout": rng}
    logits_BxTxV, _ = Transformer(cfg).apply({"params": params}, tokens_BxT, positions_BxT, mask_BxTxS,
                                             deterministic=rng is None, rngs=rngs, head=head)
    return logits_BxTxV


def sequence_logprobs(cfg: ModelConfig, params, tokens_BxL, valid_BxL, entropy: bool = True):
    """Teacher-forced log p(token_t | tokens_<t) for t ≥ 1, and the model's entropy there (None unless
    `entropy`): [B, L-1] each. The output layer runs a chunk of positions at a time (storyjax.output_layer)."""
    h_BxTxC = forward(cfg, params, tokens_BxL[:, :-1], valid_BxT=valid_BxL[:, :-1], head=False)
    return output_layer.token_logprobs(cfg, params, h_BxTxC, tokens_BxL[:, 1:], entropy)


@functools.partial(jax.jit, static_argnames=("cfg",))
def sequence_logprob(cfg: ModelConfig, params, tokens_BxL, valid_BxL):
    """Σ_t log p(token_t | tokens_<t) over valid tokens t ≥ 1 (right-padded rows): [B]."""
    logp_BxT, _ = sequence_logprobs(cfg, params, tokens_BxL, valid_BxL, entropy=False)
    return jnp.where(valid_BxL[:, 1:], logp_BxT, 0.0).sum(-1)


def decode(cfg: ModelConfig, params, tokens_BxT, positions_BxT, valid_BxT, cache: KVCache, last_only: bool = False):
    """Runs `tokens_BxT` at cache slots [index, index+T) and returns (logits, cache): logits [B, T, V], or
    [B, 1, V] of the last position with `last_only`.

    Works for the prefill (T = prompt length) and for single steps (T = 1).
    """
    B, T = tokens_BxT.shape
    S = cache.valid_BxS.shape[1]
    valid_BxS = jax.lax.dynamic_update_slice(cache.valid_BxS, valid_BxT, (0, cache.index))
    slot_S = jnp.arange(S)
    query_slot_T = cache.index + jnp.arange(T)
    mask_BxTxS = (slot_S[None, None, :] <= query_slot_T[None, :, None]) & valid_BxS[:, None, :]
    mask_BxTxS = mask_BxTxS | (slot_S[None, None, :] == query_slot_T[None, :, None])
    logits_BxTxV, (k, v) = Transformer(cfg).apply({"params": params}, tokens_BxT, positions_BxT, mask_BxTxS,
                                                  deterministic=True, cache=cache, last_only=last_only)
    return logits_BxTxV, KVCache(k, v, valid_BxS, cache.index + T)
