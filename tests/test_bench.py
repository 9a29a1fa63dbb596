"""`python -m storyjax.bench` runs end to end on CPU and writes every row the JSON promises (speeds are
compared in the benchmark itself, never asserted in tests)."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from test_main import ENV


@pytest.mark.slow
def test_bench_tiny_writes_rows_ratios_the_teacher_row_and_profiles(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "storyjax.bench", "--preset=tiny", "--steps=2", "--teacher=rubric",
                           "--attention=auto,cudnn", "--dropout=0,0.1", f"--profile_dir={tmp_path / 'prof'}",
                           f"--out={out}"], cwd=ROOT, env={**ENV, "XLA_FLAGS": ""}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["ratios"]) == {"pretrain_b16_vs_hf_eager", "rollout_b32_vs_hf_generate_b4",
                                     "rollout_b32_vs_hf_generate_b32"}
    assert all(v > 0 for v in result["ratios"].values())
    # the pretraining ratio with its spread over the rounds, and the CPU it was measured on
    lo, hi = result["ratio_spreads"]["pretrain_b16_vs_hf_eager"]
    assert lo <= result["ratios"]["pretrain_b16_vs_hf_eager"] <= hi
    assert "over 5 paired rounds of 2 steps" in proc.stdout
    assert result["rounds_interleaved"]  # on CPU the rows' rounds alternate
    assert result["cpu"] and f"host CPU: {result['cpu']} ({result['cpu_isa']})" in proc.stdout
    # what a paper run does: dropout 0.1, an extra storyjax row (masks from RngBitGenerator)
    assert result["rows"]["pretrain_b16_storyjax_dropout0.1"]["dropout"] == 0.1
    assert "storyjax/xla p=0.1" in proc.stdout
    # a CPU-only run keeps freed host memory for reuse (storyjax/host_memory.py), and says so
    assert result["host_malloc"] == "reuse" and "host memory: reuse" in proc.stdout
    rows = result["rows"]
    assert rows["pretrain_b16_storyjax"]["tokens_per_s"] > 0 and rows["rollout_b32_storyjax"]["reinforce_s_per_story"] > 0
    # Memory per configuration, from XLA's plan of each compiled step: at least the float32 parameters (and, in
    # pretraining, their two Adam moments) must be in it.
    n_params = rows["pretrain_b16_storyjax"]["num_params"]
    assert rows["pretrain_b16_storyjax"]["xla_bytes"] > 3 * 4 * n_params
    assert rows["rollout_b32_storyjax"]["rollout_xla_bytes"] > 4 * n_params
    assert rows["rollout_b32_storyjax"]["reinforce_xla_bytes"] > 3 * 4 * n_params
    assert rows["teacher_rubric"]["scored"] == rows["teacher_rubric"]["stories"] == 32
    assert "ratio rollout_b32_vs_hf_generate_b4" in proc.stdout
    # auto is xla on CPU; an attention variant this machine lacks is an error row, not a failed benchmark.
    assert rows["pretrain_b16_storyjax"]["attention"] == "xla"
    assert "cuDNN" in rows["pretrain_b16_storyjax_attn_cudnn"]["error"]
    for row in ("pretrain_b16_storyjax", "rollout_b32_storyjax"):
        top = rows[row]["profile_top"]
        assert top and all(e["ms"] > 0 for e in top) and sum(e["share"] for e in top) <= 1 + 1e-9
    assert "profile rollout:" in proc.stdout


def run_bench(args, out, timeout=900):
    proc = subprocess.run([sys.executable, "-m", "storyjax.bench", "--rows=teacher", f"--out={out}", *args], cwd=ROOT,
                          env={**ENV, "XLA_FLAGS": ""}, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_jax_teacher_row_on_random_weights_beside_transformers(tmp_path):
    """The GPU target's shape in miniature: random weights and ids, a 300-token shared prefix, 110-token
    stories; the JAX teacher's row, transformers' row and their ratio, with XLA's memory plan."""
    pytest.importorskip("transformers")
    result, stdout = run_bench(["--teacher=jax", "--teacher_weights=random:tiny", "--teacher_stories=16",
                                "--teacher_batch=8"], tmp_path / "b.json")
    rows = result["rows"]
    assert rows["teacher_jax"]["stories"] == rows["teacher_jax_hf"]["stories"] == 16
    assert rows["teacher_jax"]["stories_per_s"] > 0 and rows["teacher_jax_hf"]["stories_per_s"] > 0
    assert rows["teacher_jax"]["story_pass_xla_bytes"] > 4 * rows["teacher_jax"]["num_params"]
    assert result["ratios"]["teacher_jax_vs_jax_hf"] > 0 and "ratio teacher_jax_vs_jax_hf" in stdout
    # the load, through the teacher's own loader from a written checkpoint: its weights and host memory
    load = rows["teacher_jax"]
    assert load["weights_bytes"] == 4 * load["num_params"] and load["load_host_peak_bytes"] is not None
    assert "teacher_jax load:" in stdout


@pytest.mark.slow
def test_jax_teacher_row_on_smollm2_agrees_with_transformers(tmp_path):
    """The real SmolLM2 GGUF graded by the JAX teacher and by transformers (same prompts, same digits read):
    the argmax grades agree."""
    pytest.importorskip("transformers")
    from test_jax_teacher import smollm2_path
    result, stdout = run_bench(["--teacher=jax", f"--teacher_weights={smollm2_path()}", "--teacher_stories=16",
                                "--teacher_batch=16"], tmp_path / "b.json")
    rows = result["rows"]
    assert rows["teacher_jax"]["scored"] == 16
    assert rows["teacher_jax_hf"]["argmax_agreement_with_jax"] >= 0.9
    assert "teacher_jax_hf transformers" in stdout
