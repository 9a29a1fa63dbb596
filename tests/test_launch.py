"""Launch scripts parse (bash -n) and pass shellcheck (CI installs it and sets STORYJAX_CI=1, which turns a
missing shellcheck into a failure; elsewhere the check is skipped where shellcheck is absent)."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

SCRIPTS = sorted((ROOT / "launch").glob("*.sh"))


def test_there_are_scripts():
    assert {p.name for p in SCRIPTS} >= {"vllm_teacher.sh", "llamacpp_teacher.sh", "tpu_pod.sh", "slurm_gpu.sh",
                                          "bench_gpu.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses_and_passes_shellcheck(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "Usage:" in text and "Success:" in text
    if shutil.which("shellcheck") is None:
        if os.environ.get("STORYJAX_CI"):
            pytest.fail("shellcheck is not installed but CI must run it: .ci/run installs it with apt-get.")
        pytest.skip("shellcheck not installed (apt-get install shellcheck); CI runs it")
    proc = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def _gpu_call(tmp_path, **env):
    return subprocess.run(["bash", str(ROOT / "launch" / "gpu_call.sh")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OUT": str(tmp_path / "out"), "WHEELS": str(tmp_path / "none"),
                                            "SITE": str(tmp_path / "site"), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "",
                                            "SMOKE_PRESET": "tiny", **env})


def test_the_gpu_call_stops_at_a_failing_smoke_test_and_runs_nothing_after_it(tmp_path):
    """cuDNN's attention cannot run on a CPU: the first check fails, the call ends (exit 1) before the bench."""
    proc = _gpu_call(tmp_path, STAGES="smoke,pretrain", SMOKE_ATTENTION="cudnn")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "FAILED pretrain_step" in proc.stdout and "stage pretrain" not in proc.stdout
    assert json.loads((tmp_path / "out" / "smoke.json").read_text())["checks"]["pretrain_step"]["ok"] is False


@pytest.mark.slow
def test_the_gpu_call_runs_its_stages_in_order_within_the_call_limit(tmp_path):
    yardstick = tmp_path / "yardstick.py"
    yardstick.write_text("import json, os\njson.dump({'ran': True}, open(os.path.join(os.environ['OUT'], "
                         "'yardstick.json'), 'w'))\n")
    proc = _gpu_call(tmp_path, STAGES="yardstick,smoke,rollout", SMOKE_ATTENTION="auto", YARDSTICK=str(yardstick),
                     CALL_LIMIT="120", MIN_STAGE="100")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    smoke = json.loads((tmp_path / "out" / "smoke.json").read_text())["checks"]
    assert [c["ok"] for c in smoke.values()] == [True] * 4
    assert json.loads((tmp_path / "out" / "yardstick.json").read_text()) == {"ran": True}
    assert "stage yardstick: rc 0" in proc.stdout and "stage rollout: skipped" in proc.stdout  # out of call time
