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
                           "--attention=auto,cudnn", f"--profile_dir={tmp_path / 'prof'}", f"--out={out}"], cwd=ROOT, env={**ENV, "XLA_FLAGS": ""}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["ratios"]) == {"pretrain_b16_vs_hf_eager", "rollout_b32_vs_hf_generate_b4",
                                     "rollout_b32_vs_hf_generate_b32"}
    assert all(v > 0 for v in result["ratios"].values())
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
