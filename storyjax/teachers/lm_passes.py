"""Where and how the JAX teacher's model runs: its three jitted passes over a batch of stories (the shared
prefix, the stories against it, the answer tokens after them), compiled per platform (on CPU with the
matmul kernels `teacher.jax.cpu_kernels` names), and the device mesh they run on, with the teacher's weights
replicated or split Megatron-style over a "model" axis."""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from storyjax.teachers import lm
from storyjax.teachers.kinds.jax_kind import CPU_KERNELS


# Prefixes are padded to a multiple of this many tokens (their K/V slots), so openings of other lengths
# reuse the compiled passes.
PREFIX_BUCKET = 64


def _prefill(cfg, params, prefix_1xP):
    P = prefix_1xP.shape[1]
    pos = jnp.arange(P)[None]
    _, k, v = lm.forward(cfg, params, prefix_1xP, pos, lm.causal_mask(jnp.ones((1, P), bool)))
    return k[:, 0], v[:, 0]  # [L, P, Hkv, D]: the shared segment


def _prefix_segment(prefix_k, prefix_v, prefix_len, B: int, S: int) -> lm.Segment:
    """The shared prefix as a context segment: its K/V hold a bucket of slots (PREFIX_BUCKET), of which the
    first `prefix_len` (a traced count: another opening's length compiles nothing new) are real."""
    T = prefix_k.shape[1]
    seen_T = jnp.arange(T) < prefix_len
    return lm.Segment(prefix_k, prefix_v, jnp.broadcast_to(seen_T[None, None, :], (B, S, T)), jnp.arange(T))


def _suffix(cfg, params, prefix_k, prefix_v, prefix_len, suffix_BxS, valid_BxS):
    """Digit-1 logits of each story (at its last real token) and the stories' own K/V."""
    B, S = suffix_BxS.shape
    pos = prefix_len + jnp.arange(S)[None]
    h, k, v = lm.forward(cfg, params, suffix_BxS, pos + jnp.zeros_like(suffix_BxS), lm.causal_mask(valid_BxS),
                         (_prefix_segment(prefix_k, prefix_v, prefix_len, B, S),))
    last_B = valid_BxS.sum(1) - 1
    return lm.logits(cfg, params, h[jnp.arange(h.shape[0]), last_B]), k, v


def _extend(cfg, params, prefix_k, prefix_v, prefix_len, suffix_k, suffix_v, valid_BxS, answer_BxE, upto=None):
    """Logits after the first `upto` answer tokens (a traced count; all E by default), which follow each
    story's last real token. The teacher passes the whole answer and counts the digits read so far with
    `upto`: no token sees a later one, so the logits are those of the answer cut at `upto`, and every digit
    position runs the one compiled pass."""
    B, E = answer_BxE.shape
    pos = prefix_len + valid_BxS.sum(1)[:, None] + jnp.arange(E)[None]
    S = valid_BxS.shape[1]
    segments = (_prefix_segment(prefix_k, prefix_v, prefix_len, B, E),
                lm.Segment(suffix_k, suffix_v, jnp.broadcast_to(valid_BxS[:, None, :], (B, E, S)),
                           prefix_len + jnp.arange(S)))
    h, _, _ = lm.forward(cfg, params, answer_BxE, pos, lm.causal_mask(jnp.ones((B, E), bool)), segments)
    return lm.logits(cfg, params, h[:, -1] if upto is None else jnp.take(h, upto - 1, axis=1))


def _token_logprobs(cfg, params, tokens_BxS, valid_BxS):
    """log p(token t | tokens < t) of every token after the first, [B, S-1] (0 where padding): the model as a
    reference language model, reading whole texts with no template."""
    logits_BxSxV = lm.full_logits(cfg, params, tokens_BxS, valid_BxS)[:, :-1]
    logp_BxSxV = jax.nn.log_softmax(logits_BxSxV, axis=-1)
    picked_BxS = jnp.take_along_axis(logp_BxSxV, tokens_BxS[:, 1:, None], axis=-1)[..., 0]
    return jnp.where(valid_BxS[:, 1:], picked_BxS, 0.0)


class Passes(NamedTuple):
    """The teacher's jitted passes (the model config static): the shared prefix, the stories, and the answer
    tokens after them; and, as a reference language model, every token's log-probability."""
    prefill: Callable
    suffix: Callable
    extend: Callable
    token_logprobs: Callable


# The matmul kernels on CPU (`teacher.jax.cpu_kernels`): jaxlib 0.10 fuses dots into YNNPACK by default; the
# other choice is XLA's own (Eigen) dot emitter. Which is faster depends on the CPU. The SmolLM2 story pass
# (32 stories x 160 tokens, 2 cores) took 11.0 s with XLA's emitter against 12.9 s with YNNPACK on an Intel
# CPU with AMX; on an AMD EPYC (Zen 5, AVX-512) 96 stories were graded in 11.9-12.7 s with YNNPACK against
# 12.8-13.7 s with XLA's (three runs each). `auto` follows these measurements. The option is per
# compilation, so the student's programs keep XLA's defaults.
_XLA_DOTS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo) as f:
            return any(line.startswith("flags") and " amx_tile" in line for line in f)
    except OSError:
        return False


def resolve_cpu_kernels(cpu_kernels: str = "auto", cpuinfo: str = "/proc/cpuinfo") -> str:
    if cpu_kernels not in CPU_KERNELS:
        raise ValueError(f"teacher.jax.cpu_kernels={cpu_kernels!r}: choose one of {CPU_KERNELS}.")
    if cpu_kernels == "auto":
        return "xla" if cpu_has_amx(cpuinfo) else "ynnpack"
    return cpu_kernels


def compiler_options(platform: str, cpu_kernels: str = "auto"):
    kernels = resolve_cpu_kernels(cpu_kernels)  # checked on every platform: a bad value fails early anywhere
    return _XLA_DOTS if platform == "cpu" and kernels == "xla" else None


@functools.lru_cache(maxsize=None)
def passes(platform: str, cpu_kernels: str = "auto") -> Passes:
    """The passes compiled for `platform` ("cpu", "gpu", "tpu"); on CPU with the matmul kernels named."""
    options = compiler_options(platform, cpu_kernels)
    if options:
        try:  # a jaxlib that does not know the option keeps its defaults
            jax.jit(lambda x: x + 1, compiler_options=options)(jnp.zeros((), jnp.float32)).block_until_ready()
        except Exception as e:  # noqa: BLE001 — XLA reports an unknown option as a generic runtime error
            logging.warning("XLA does not take %s (%s); the JAX teacher compiles with its defaults.", options, e)
            options = None
    jit = functools.partial(jax.jit, static_argnums=0, compiler_options=options)
    return Passes(jit(_prefill), jit(_suffix), jit(_extend), jit(_token_logprobs))


def teacher_mesh(devices: int, model_parallel: int = 1) -> jax.sharding.Mesh:
    """This process's devices as ("data", "model"): stories split over "data", each weight matrix over
    "model" when `model_parallel` > 1 (a teacher larger than one device). CPU "devices" share the same
    cores, so one CPU unless `devices` says more."""
    local = jax.local_devices()
    n = devices or (1 if jax.default_backend() == "cpu" else len(local))
    if not 1 <= n <= len(local):
        raise ValueError(f"teacher.jax.devices={n}: this process has {len(local)} devices; use 1..{len(local)} "
                         "(0: all accelerators, or one CPU).")
    if model_parallel < 1 or n % model_parallel:
        raise ValueError(f"teacher.jax.model_parallel={model_parallel} must be >= 1 and divide the {n} teacher devices "
                         "(teacher.jax.devices).")
    return jax.sharding.Mesh(np.asarray(local[:n]).reshape(n // model_parallel, model_parallel), ("data", "model"))


# Megatron-style: Q/K/V, gate and up split by output columns, the attention output and down projections
# by input rows, so each layer needs one reduction per matmul pair; embedding and head split over the
# vocabulary. A dimension the "model" axis does not divide stays whole.
_SPLIT = {"wq": 2, "wk": 2, "wv": 2, "w_gate": 2, "w_up": 2, "wo": 1, "w_down": 1, "bq": 1, "bk": 1, "bv": 1}


def param_sharding(names: tuple, shape: tuple, mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Where one parameter lives (`names`: its path in the params pytree): a layer matrix split over the
    mesh's `model` axis along its output features (its input features for wo / w_down), the embedding
    over its vocabulary, everything else (norms, RoPE tables, an axis that does not divide) replicated."""
    mp = mesh.shape["model"]
    axis = _SPLIT.get(names[-1]) if "layers" in names else {"embed": 0, "lm_head": 1}.get(names[-1])
    if mp == 1 or axis is None or shape[axis] % mp:
        return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    parts = [None] * len(shape)
    parts[axis] = "model"
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*parts))


def placer(mesh: jax.sharding.Mesh):
    """`place(path, host_array)` for `lm_weights.load`: each parameter onto the mesh (sharded as
    `param_sharding` says) as soon as it is read, waiting for the copy so its host buffer is freed before
    the next one is read. (Writing slabs into a parameter already on the device would spare that one host
    copy but compiles an update per shape: measured on CPU, those compilations kept more memory than the
    copy they save.)"""
    def place(names: tuple, host):
        return jax.device_put(host, param_sharding(names, host.shape, mesh)).block_until_ready()
    return place


def shard_params(params: dict, mesh: jax.sharding.Mesh) -> dict:
    def spec(path, x):
        return param_sharding(tuple(getattr(k, "key", None) for k in path), x.shape, mesh)

    return jax.device_put(params, jax.tree_util.tree_map_with_path(spec, params))
