"""`python -m storyjax.bench --compile_only`: every GPU path compiled at the real shapes from abstract inputs
on whatever host runs it (a CPU included), nothing executed, and read by `storyjax.compiled`.

Rows: `compiled_pretrain_b{B}` (the data-parallel train step, with the same step of a plain `jit` GPT-2 +
`optax.adamw` with donation beside it as `compiled_plain_jit_pretrain_b{B}`, and their ratios),
`compiled_sample_b{S}`, `compiled_reinforce_b{S}` and `compiled_teacher_{shape}_{S}` (the JAX teacher's
passes on a random-weights shape grading S stories behind a shared prefix). Each holds `flops`,
`bytes_accessed`, `fusions`, `param_copies`, `temp_bytes` and `lowers_for_cuda` (with `cuda_error` when it
does not lower). On a CPU host the figures are XLA:CPU's compilation of the program a GPU would run
(fusion and memory planning differ by backend); `lowers_for_cuda` is the CUDA lowering itself, cuDNN's fused
attention included (its version check answered as a cuDNN 9 on Hopper would, where no GPU is present).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import optax

from storyjax import compiled, model as model_lib, pretrain_step, reinforce, sampler
from storyjax import rollout as rollout_lib
from storyjax.bench_pretrain import student_config
from storyjax.teachers import jax_teacher, lm_passes, lm_weights
from storyjax.pretrain_settings import TrainSettings

TRAIN = dict(lr=5e-4, warmup_frac=0.01, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=1.0)
RL = dict(lr=1e-6, grad_clip=1.0, baseline="ema", ema_decay=0.9, whiten=False, kl_coef=0.2, kl_target=6.0,
          kl_horizon=10_000.0, kl_estimator="k1", kl_mode="reward", entropy_coef=0.0)


@contextlib.contextmanager
def cudnn_assumed(version: int = 91000):
    """Where no GPU is present, cuDNN's fused attention asks the local cuDNN its version (and the local
    GPU its compute capability) while it is traced: answered here as a cuDNN `version` on a Hopper GPU, so
    the CUDA lowering of that branch can be checked from a CPU host. A host with a GPU is asked for real."""
    if jax.default_backend() == "gpu":
        yield
        return
    from jax._src.cudnn import fused_attention_stablehlo as fa
    saved = {name: getattr(fa, name) for name in ("check_cudnn_version", "check_compute_capability",
                                                  "is_cuda_compute_capability_equal")}
    fa.check_cudnn_version = lambda: version
    fa.check_compute_capability = lambda capability: tuple(map(int, capability.split("."))) <= (9, 0)
    fa.is_cuda_compute_capability_equal = lambda capability: capability == "9.0"
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(fa, name, fn)


def _cuda(row: dict, fn, *args, **kwargs) -> dict:
    with cudnn_assumed():
        ok, why = compiled.lowers_for("cuda", fn, *args, **kwargs)
    return {**row, "lowers_for_cuda": ok, **({"cuda_error": why} if not ok else {})}


def _timed_compile(lowered) -> tuple:
    t0 = time.perf_counter()
    exe = lowered.compile()
    return exe, time.perf_counter() - t0


def _pretrain_parts(shape: dict, batch: int, attention: str, dropout: float):
    cfg = dataclasses.replace(student_config(shape, attention), dropout=dropout)
    train_cfg = TrainSettings(**TRAIN)
    opt = pretrain_step.make_optimizer(train_cfg, 10_000)
    params = jax.eval_shape(lambda: model_lib.init_params(cfg, jax.random.key(0)))
    state = jax.eval_shape(lambda p: pretrain_step.TrainState(p, opt.init(p)), params)
    mesh = pretrain_step.mesh_of(jax.local_devices()[:1])
    step = pretrain_step.make_train_step(cfg, opt, pretrain_step.lr_schedule(train_cfg, 10_000), 0, mesh,
                                         dropout=dropout > 0)
    args = (state, jax.ShapeDtypeStruct((1, batch, shape["seq"]), jnp.int32), jax.ShapeDtypeStruct((), jnp.int32))
    return step, args, state


def pretrain_row(shape: dict, batch: int, dropout: float = 0.0) -> dict:
    """The train step as a run compiles it here (attention `auto`) and, for CUDA, as it lowers there
    (cuDNN attention where dropout allows it, as `auto` picks on a GPU)."""
    step, args, state = _pretrain_parts(shape, batch, "auto", dropout)
    exe, seconds = _timed_compile(step.lower(*args))
    text = exe.as_text()
    row = {**compiled.summary(exe, compiled.leaf_shapes(state)), "compile_s": seconds,
           "threefry": text.count("threefry"), "f32_logits": _f32_logits(text, batch, shape)}
    if " while(" in text:  # the output layer's chunks (a scan): costed again with each chunk counted
        with compiled.unrolled_scans():
            unrolled, unrolled_args, _ = _pretrain_parts(shape, batch, "auto", dropout)
            row.update(compiled.cost(unrolled.lower(*unrolled_args).compile()))
    # on a GPU `auto` takes cuDNN's fused attention for bfloat16 without dropout
    cudnn = shape["dtype"] == "bfloat16" and not dropout
    cuda_step, cuda_args, _ = _pretrain_parts(shape, batch, "cudnn" if cudnn else "xla", dropout)
    return _cuda(row, cuda_step, *cuda_args)


def _f32_logits(hlo_text: str, batch: int, shape: dict) -> int:
    """Buffers the step materializes as float32 [B, T-1, V] or [B·(T-1), V]: whole-batch logits."""
    T, V = shape["seq"] - 1, shape["vocab"]
    return sum(compiled.entry_results(hlo_text, "f32", dims) for dims in ((batch, T, V), (batch * T, V)))


def plain_jit_step(cfg: model_lib.ModelConfig, weight_decay: float = 0.0):
    """The yardstick step: a plain `jit` of GPT-2's next-token loss, clipping and `optax.adamw`, the
    state donated; returns (jitted step, optimizer)."""
    opt = optax.chain(optax.clip_by_global_norm(TRAIN["grad_clip"]),
                      optax.adamw(TRAIN["lr"], TRAIN["b1"], TRAIN["b2"], TRAIN["eps"], weight_decay=weight_decay))

    def loss_fn(params, tokens_BxT):  # the whole float32 logits, as a plain GPT-2 computes its loss
        logits_BxTxV = model_lib.forward(cfg, params, tokens_BxT[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, tokens_BxT[:, 1:]).mean()

    def step(state, tokens_BxT):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens_BxT)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return jax.jit(step, donate_argnums=(0,)), opt


def plain_jit_row(shape: dict, batch: int) -> dict:
    cfg = student_config(shape, "auto")
    step, opt = plain_jit_step(cfg)
    state = jax.eval_shape(lambda: (lambda p: (p, opt.init(p)))(model_lib.init_params(cfg, jax.random.key(0))))
    exe, seconds = _timed_compile(step.lower(state, jax.ShapeDtypeStruct((batch, shape["seq"]), jnp.int32)))
    return {**compiled.summary(exe, compiled.leaf_shapes(state)), "compile_s": seconds}


def _sample_args(shape: dict):
    cfg = student_config(shape)
    params = jax.eval_shape(lambda: model_lib.inference_params(cfg, model_lib.init_params(cfg, jax.random.key(0))))
    B, P = shape["stories"], shape["prompt_len"]
    scalars = (jax.eval_shape(lambda: jax.random.key(0)), jax.ShapeDtypeStruct((), jnp.float32),
               jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.float32))
    return cfg, params, jax.ShapeDtypeStruct((B, P), jnp.int32), jax.ShapeDtypeStruct((B, P), jnp.bool_), scalars


def sample_row(shape: dict) -> dict:
    """The whole sampler compiled (fusions, memory, CUDA lowering); FLOPs and bytes as its parts: the
    prefill plus N - 1 decode steps, each compiled alone (its while loop's trip count is known at run time)."""
    cfg, params, prompt, valid, scalars = _sample_args(shape)
    N = shape["new_tokens"]
    kw = dict(max_new_tokens=N, eos_id=2, pad_id=1)
    exe, seconds = _timed_compile(sampler.lower_sample(cfg, params, prompt, valid, *scalars, filtered=False, **kw))
    row = {**compiled.summary(exe, compiled.leaf_shapes(params)), "compile_s": seconds, "decode_passes": N - 1}
    pre = jax.jit(sampler.prefill, static_argnums=(0, 4)).lower(cfg, params, prompt, valid, N).compile()
    state = jax.eval_shape(lambda p: _loop_state(cfg, p, prompt, valid, N), params)
    one = jax.jit(lambda p, s, *sc: sampler.decode_step(cfg, p, s, 0, *sc, eos_id=2, pad_id=1, filtered=False)
                  ).lower(params, state, *scalars).compile()
    parts = [compiled.cost(pre), compiled.cost(one)]
    row.update(flops=parts[0]["flops"] + (N - 1) * parts[1]["flops"],
               bytes_accessed=parts[0]["bytes_accessed"] + (N - 1) * parts[1]["bytes_accessed"])
    return _cuda(row, jax.jit(lambda *a: sampler.program()(cfg, *a, **kw)), params, prompt, valid, *scalars)


def _loop_state(cfg, params, prompt, valid, N: int) -> sampler.LoopState:
    logits, cache, pos = sampler.prefill(cfg, params, jnp.zeros(prompt.shape, jnp.int32),
                                         jnp.ones(valid.shape, bool), N)
    B = prompt.shape[0]
    return sampler.LoopState(jnp.zeros((B, N), jnp.int32), jnp.zeros((B, N), bool), jnp.zeros((B, N)),
                             jnp.zeros((B,), bool), logits, cache, pos)


def reinforce_row(shape: dict) -> dict:
    cfg = student_config(shape)
    rl_cfg = reinforce.RLConfig(**RL)
    opt = reinforce.make_optimizer(rl_cfg)
    step = reinforce.make_step(cfg, rl_cfg, opt)
    params = jax.eval_shape(lambda: model_lib.init_params(cfg, jax.random.key(0)))
    state = jax.eval_shape(lambda p: reinforce.init_state(p, opt, rl_cfg), params)
    B, L = shape["stories"], shape["prompt_len"] + shape["new_tokens"]
    batch = rollout_lib.Rollout(jax.ShapeDtypeStruct((B, L), jnp.int32), jax.ShapeDtypeStruct((B, L), jnp.bool_),
                                jax.ShapeDtypeStruct((B, L), jnp.bool_), jax.ShapeDtypeStruct((B,), jnp.float32))
    exe, seconds = _timed_compile(step.lower(state, params, batch))
    text = exe.as_text()
    row = {**compiled.summary(exe, compiled.leaf_shapes(state)), "compile_s": seconds,
           "f32_logits": compiled.entry_results(text, "f32", (B, L - 1, shape["vocab"]))}
    with compiled.unrolled_scans():  # the output layer's chunks (a scan) each counted
        row.update(compiled.cost(reinforce.make_step(cfg, rl_cfg, opt).lower(state, params, batch).compile()))
    return _cuda(row, step, state, params, batch)


def teacher_row(hf_shape: dict, stories: int, prefix_len: int = 300, story_len: int = 110, batch: int = 32) -> dict:
    """The JAX teacher grading `stories` stories of about `story_len` tokens behind a `prefix_len`-token
    shared prefix, `batch` stories a pass, as the bench's random-weights row runs it: the prefix once, then
    per micro-batch the story pass and two answer-token passes. FLOPs and bytes with the layer scan
    unrolled (every layer counted); fusions, copies and memory of the story pass as it is compiled."""
    cfg, _ = lm_weights.hf_lm_config("llama", hf_shape, "bfloat16")
    params = lm_weights.param_shapes(cfg)
    S = -(-story_len // jax_teacher.BUCKET) * jax_teacher.BUCKET
    passes = lm_passes.passes("cpu")
    i32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.int32)
    prefix = i32(1, -(-prefix_len // lm_passes.PREFIX_BUCKET) * lm_passes.PREFIX_BUCKET)  # padded as the teacher does
    P = jax.ShapeDtypeStruct((), jnp.int32)
    k, v = jax.eval_shape(lambda p, t: lm_passes._prefill(cfg, p, t), params, prefix)
    toks, valid = i32(batch, S), jax.ShapeDtypeStruct((batch, S), jnp.bool_)
    _, sk, sv = jax.eval_shape(lambda *a: lm_passes._suffix(cfg, *a), params, k, v, P, toks, valid)
    suffix_args = (cfg, params, k, v, P, toks, valid)
    exe, seconds = _timed_compile(passes.suffix.lower(*suffix_args))
    row = {**compiled.summary(exe, compiled.leaf_shapes(params)), "compile_s": seconds, "stories": stories,
           "micro_batch": batch, "prefix_len": prefix_len, "story_tokens": S}
    with compiled.unrolled_scans():
        costs = [compiled.cost(jax.jit(fn, static_argnums=0).lower(*args).compile()) for fn, args in (
            (lm_passes._prefill, (cfg, params, prefix)), (lm_passes._suffix, suffix_args),
            (lm_passes._extend, (cfg, params, k, v, P, sk, sv, valid, i32(batch, 4), P)))]
    passes_per = math.ceil(stories / batch)
    for key in ("flops", "bytes_accessed"):  # the answer pass runs twice (the second and third digits)
        row[key] = costs[0][key] + passes_per * (costs[1][key] + 2 * costs[2][key])
    return _cuda(row, jax.jit(lambda *a: lm_passes._suffix(cfg, *a)), *suffix_args[1:])


def ratios(ours: dict, plain: dict) -> dict:
    return {"fusions_vs_plain_jit": ours["fusions"] / max(plain["fusions"], 1),
            "bytes_vs_plain_jit": ours["bytes_accessed"] / max(plain["bytes_accessed"], 1.0)}


def rows(shape: dict, batch: int, teacher_shape: dict, teacher_name: str, teacher_batch: int, write) -> dict:
    """Every compile-only row, each handed to `write(name, row)` as soon as it is known (a row that fails
    is written with its error, and the others still run)."""
    plan = [(f"compiled_pretrain_b{batch}", lambda: pretrain_row(shape, batch)),
            (f"compiled_plain_jit_pretrain_b{batch}", lambda: plain_jit_row(shape, batch)),
            (f"compiled_pretrain_b{batch}_dropout", lambda: pretrain_row(shape, batch, dropout=0.1)),
            (f"compiled_sample_b{shape['stories']}", lambda: sample_row(shape)),
            (f"compiled_reinforce_b{shape['stories']}", lambda: reinforce_row(shape)),
            (f"compiled_teacher_{teacher_name}_{shape['stories']}",
             lambda: teacher_row(teacher_shape, shape["stories"], batch=teacher_batch))]
    out = {}
    for name, make in plan:
        try:
            out[name] = make()
        except Exception as e:  # noqa: BLE001 - one path failing to compile is a finding, not the end
            out[name] = {"error": f"{type(e).__name__}: {e}"[:800]}
        if name.startswith("compiled_plain_jit") and "error" not in out[name] and "error" not in out[plan[0][0]]:
            out[plan[0][0]].update(ratios(out[plan[0][0]], out[name]))
            write(plan[0][0], out[plan[0][0]])
        write(name, out[name])
    return out
