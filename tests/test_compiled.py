"""Guards read from compiled programs (storyjax.compiled): what a GPU would run, checked on CPU at small
shapes (the gpt2_small figures come from `python -m storyjax.bench --compile_only`)."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from storyjax import bench_compiled, compiled, pretrain_step
from storyjax import model as M
from storyjax.bench_teacher import RANDOM_SHAPES
from storyjax.pretrain_settings import TrainSettings

SHAPE = dict(vocab=512, preset="tiny", seq=64, batches=[8], steps=2, dtype="float32", stories=8, prompt_len=8,
             new_tokens=12)
BF16 = {**SHAPE, "dtype": "bfloat16"}


def test_the_train_step_copies_no_state_and_costs_what_a_plain_jit_step_costs():
    ours = bench_compiled.pretrain_row(SHAPE, 8)
    plain = bench_compiled.plain_jit_row(SHAPE, 8)
    assert ours["param_copies"] == 0  # pmap's stacked replicas copied every parameter and moment at entry
    assert plain["param_copies"] == 0
    ratio = bench_compiled.ratios(ours, plain)
    assert ratio["fusions_vs_plain_jit"] <= 1.4 and ratio["bytes_vs_plain_jit"] <= 1.07, ratio
    assert ours["threefry"] == 0 and ours["lowers_for_cuda"]
    # what a paper run does, dropout 0.1: masks from RngBitGenerator, no threefry hash in the step
    assert bench_compiled.pretrain_row(SHAPE, 8, dropout=0.1)["threefry"] == 0


def test_the_state_copy_count_sees_a_copied_state():
    """The measure itself: a step that does not donate its state copies it (and a stacked pmap state was
    counted at 157 copies at the tiny preset before the step moved to a replicated mesh)."""
    def step(state, g):
        return jax.tree.map(lambda x: x * 0.5 + g, state), jax.tree.map(lambda x: x + 1, state)

    state = {"w": jax.ShapeDtypeStruct((64, 64), jnp.float32), "b": jax.ShapeDtypeStruct((64,), jnp.float32)}
    exe = jax.jit(step).lower(state, jax.ShapeDtypeStruct((), jnp.float32)).compile()
    assert compiled.top_level_fusions(exe.as_text()) >= 1
    text = "\n".join(["HloModule m", "", "ENTRY %main (p: f32[64,64]) -> f32[64,64] {",
                      "  %p = f32[64,64]{1,0} parameter(0)", "  %copy.1 = f32[64,64]{1,0} copy(%p)",
                      "  ROOT %copy.2 = f32[64,64]{0,1} copy(%copy.1)", "}", ""])
    assert compiled.state_copies(text, [(64, 64)]) == 2
    assert compiled.state_copies(text, [(32, 32)]) == 0


def test_no_decay_pass_at_weight_decay_zero_and_checkpoints_keep_their_structure():
    cfg = dict(lr=1e-3, warmup_frac=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=1.0)
    params = {"dense": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones((4,))}}
    ours = pretrain_step.make_optimizer(TrainSettings(**cfg), 100)
    # what earlier runs checkpointed: optax.adamw with weight_decay=0 inside the same chain
    theirs = optax.chain(optax.clip_by_global_norm(1.0),
                         optax.adamw(pretrain_step.lr_schedule(TrainSettings(**cfg), 100), b1=0.9, b2=0.999,
                                     eps=1e-8, weight_decay=0.0, mask=pretrain_step._decay_mask))
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    assert jax.tree.structure(s_ours) == jax.tree.structure(s_theirs)
    grads = jax.tree.map(lambda x: 0.1 * jnp.arange(x.size, dtype=x.dtype).reshape(x.shape), params)
    for _ in range(3):
        (u_ours, s_ours), (u_theirs, s_theirs) = ours.update(grads, s_ours, params), theirs.update(grads, s_theirs, params)
        for a, b in zip(jax.tree.leaves(u_ours), jax.tree.leaves(u_theirs)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_a_non_finite_loss_marks_the_state_unfit_to_keep():
    cfg = M.ModelConfig(vocab_size=64, num_layers=1, d_model=32, num_heads=2, max_len=16, dropout=0.0)
    train = TrainSettings(lr=1e-3, warmup_frac=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
                             grad_clip=1.0)
    opt = pretrain_step.make_optimizer(train, 10)
    mesh = pretrain_step.mesh_of(jax.local_devices()[:2])
    step = pretrain_step.make_train_step(cfg, opt, pretrain_step.lr_schedule(train, 10), 0, mesh, dropout=False)
    tokens = pretrain_step.global_rows(np.ones((1, 4, 16), np.int32), mesh, pretrain_step.P(None, pretrain_step.AXIS))
    params = M.init_params(cfg, jax.random.key(0))
    for poison, finite in ((False, True), (True, False)):
        p = jax.tree.map(lambda x: x.at[0].set(jnp.nan) if poison and x.ndim == 2 else x, params)
        state = pretrain_step.replicate(pretrain_step.TrainState(p, opt.init(p)), mesh)
        _, metrics = step(state, tokens, pretrain_step.replicate(np.int32(0), mesh))
        assert bool(pretrain_step.to_host(metrics["state_finite"])) is finite


def test_the_cudnn_attention_branch_lowers_for_cuda_from_a_cpu_host():
    # bfloat16 without dropout: cuDNN's fused attention on a GPU (`auto` there, forced here)
    step, args, _ = bench_compiled._pretrain_parts(BF16, 8, "cudnn", 0.0)
    with bench_compiled.cudnn_assumed():
        ok, why = compiled.lowers_for("cuda", step, *args)
    assert ok, why
    with bench_compiled.cudnn_assumed():  # the branch is really taken: its custom call is in the CUDA module
        assert "cudnn" in step.trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    # cuDNN trains on even lengths only: 64-token blocks run 64 positions (63 would be refused)
    assert pretrain_step.forward_len(64) == 64 and pretrain_step.forward_len(65) == 64


@pytest.mark.slow
def test_compile_only_rows_have_every_figure():
    written = []
    rows = bench_compiled.rows(SHAPE, 8, RANDOM_SHAPES["tiny"], "tiny", 4, lambda name, row: written.append(name))
    assert set(rows) == {"compiled_pretrain_b8", "compiled_plain_jit_pretrain_b8", "compiled_pretrain_b8_dropout",
                         "compiled_sample_b8", "compiled_reinforce_b8", "compiled_teacher_tiny_8"}
    assert written[-1] == "compiled_teacher_tiny_8" and set(written) == set(rows)
    for name, row in rows.items():
        assert "error" not in row, (name, row)
        for key in ("flops", "bytes_accessed", "fusions", "param_copies", "temp_bytes"):
            assert row[key] >= 0, (name, key)
        assert row["flops"] > 0
        if "plain_jit" not in name:
            assert row["lowers_for_cuda"] is True, (name, row.get("cuda_error"))
    assert rows["compiled_sample_b8"]["decode_passes"] == SHAPE["new_tokens"] - 1
    assert rows["compiled_pretrain_b8_dropout"]["threefry"] == 0  # dropout masks from RngBitGenerator
    # the teacher's FLOPs count every layer (its layer scan's body counted once would add nothing per layer)
    f2, f4, f6 = [rows["compiled_teacher_tiny_8"]["flops"]] + [
        bench_compiled.teacher_row({**RANDOM_SHAPES["tiny"], "num_hidden_layers": n}, 8, batch=4)["flops"]
        for n in (4, 6)]
    assert f4 - f2 > 0.1 * f2 and f6 - f4 == pytest.approx(f4 - f2, rel=0.05)


@pytest.mark.slow
def test_a_bench_stopped_midway_keeps_its_finished_rows(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.Popen([sys.executable, "-m", "storyjax.bench", "--preset=tiny", "--compile_only",
                             f"--out={out}", "--teacher_weights=random:tiny"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (out.exists() and json.loads(out.read_text())["rows"]):
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    rows = json.loads(out.read_text())["rows"]
    assert "compiled_pretrain_b16" in rows and rows["compiled_pretrain_b16"]["param_copies"] == 0
