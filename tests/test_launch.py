"""Launch scripts parse (bash -n) and pass shellcheck (CI installs it and sets STORYJAX_CI=1, which turns a
missing shellcheck into a failure; elsewhere the check is skipped where shellcheck is absent)."""

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
