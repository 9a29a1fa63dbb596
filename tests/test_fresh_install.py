"""The README's benchmark lines, run as written in a new virtual environment, give a working bench with a
GGUF teacher: nothing installed by hand beyond those lines (the extras must carry what the commands use),
and no torch in the process that builds the teacher's tokenizer."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from test_jax_teacher import smollm2_path


def readme_install_line() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    found = re.search(r"\*\*Benchmarks\*\* beside HF transformers: `([^`]+)`", readme)
    assert found, "README.md no longer says how to install the benchmark (**Benchmarks** beside HF transformers: `...`)"
    return found.group(1)


def readme_bench_command() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    found = re.search(r"`(python -m storyjax\.bench --preset=tiny[^`]*)`", readme)
    assert found, "README.md no longer shows the `python -m storyjax.bench --preset=tiny ...` command"
    return found.group(1).split()


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_readme_bench_lines_work_in_a_new_venv_with_a_gguf_teacher(tmp_path):
    weights = smollm2_path()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # `pip` and `python` are the new venv's
    install = subprocess.run(["bash", "-c", readme_install_line()], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=1800)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]

    out = tmp_path / "bench.json"
    command = readme_bench_command()
    command = [str(venv / "bin" / "python"), *command[1:]]
    command = [a for a in command if not a.startswith("--out=")] + [
        f"--out={out}", "--rows=teacher", "--teacher=jax", f"--teacher_weights={weights}", "--teacher_stories=4",
        "--teacher_batch=4"]
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="")
    bench = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=900)
    assert bench.returncode == 0, bench.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert rows["teacher_jax"]["scored"] == 4
    # the transformers peer on the same GGUF: what the `bench` extra is for
    assert rows["teacher_jax_hf"]["stories"] == 4, rows.get("teacher_jax_hf")

    # The jax teacher's GGUF tokenizer in the new venv, with torch made impossible to import.
    probe = ("import sys; sys.modules['torch'] = None\n"
             "from storyjax.teachers import gguf_tokenizer, gguf_file\n"
             f"tok = gguf_tokenizer.from_metadata(gguf_file.GGUFFile({weights!r}).metadata, {weights!r})\n"
             "print(tok.encode('Once upon a time'))")
    tokenizer = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=str(tmp_path), env=env,
                               capture_output=True, text=True, timeout=300)
    assert tokenizer.returncode == 0 and tokenizer.stdout.strip().startswith("["), tokenizer.stderr[-2000:]
