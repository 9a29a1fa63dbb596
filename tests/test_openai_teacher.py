import json
import os
import socket

import numpy as np
import pytest

from openai_server import FakeTeacherServer
from storyjax.teachers import config as teacher_config
from storyjax.teachers import make_teacher
from storyjax.teachers.openai_teacher import parse_answer
from storyjax.teachers.prompt_templates import load_template


def teacher_cfg(url, name="openai", **kw):
    settings = dict(base_url=url, model="fake-teacher", api_key_env="STORYJAX_TEST_KEY", concurrency=4, timeout_s=1.0,
                    retries=1, backoff_s=0.05)
    return teacher_config.configured(name, **{**settings, **kw})


@pytest.fixture
def server():
    with FakeTeacherServer(hang_s=2.5) as s:
        yield s


def test_parser_accepts_exactly_three_scores_0_to_3():
    np.testing.assert_array_equal(parse_answer("2 1 3"), [2, 1, 3])
    np.testing.assert_array_equal(parse_answer(" 0 0 0\n"), [0, 0, 0])
    for bad in ["2 1", "2 1 3 1", "4 1 1", "2, 1, 3", "2 1 3.", "Readability: 2", "", "two one three", "-1 2 2"]:
        assert np.isnan(parse_answer(bad)).all(), bad


def test_template_must_hold_the_story(tmp_path):
    assert "{story}" in load_template("")
    bad = tmp_path / "t.txt"
    bad.write_text("Grade this: {prompt}")
    with pytest.raises(ValueError, match=r"lacks the placeholder\(s\) \['\{story\}'\]"):
        load_template(str(bad))


def test_unreachable_server_is_refused_before_any_work(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(ValueError, match="is unreachable"):
        make_teacher(teacher_cfg(f"http://127.0.0.1:{port}/v1"), str(tmp_path))


def test_failures_are_masked_counted_logged_and_never_defaulted(server, tmp_path, monkeypatch):
    monkeypatch.setenv("STORYJAX_TEST_KEY", "sk-secret-123")
    teacher = make_teacher(teacher_cfg(server.url), str(tmp_path))
    stories = ["A good story about a fox.", "FAIL500 story.", "GARBAGE story.", "TWO story.", "HANG story.",
               "Another good story about a cat."]
    grades = teacher.grade_batch(["Once upon a time"] * 6, stories)
    ok = ~np.isnan(grades.scores_Bx3).any(1)
    assert ok.tolist() == [True, False, False, False, False, True]
    assert ((grades.scores_Bx3[ok] >= 0) & (grades.scores_Bx3[ok] <= 3)).all()
    assert grades.answers[2] == "What a lovely story!" and grades.answers[3] == "2 1"
    assert teacher.failures == 2  # the 500 (after a retry) and the timeout; garbage is answered, just unparsable
    assert sum("FAIL500" in r["body"]["messages"][0]["content"] for r in server.requests) == 2  # retried once
    log = [json.loads(line) for line in open(tmp_path / "answers.jsonl")]
    assert len(log) == 6 and {r["status"] for r in log} >= {"ok"}
    assert any(r["status"].startswith("failed after 2 attempts: HTTP 500") for r in log)
    assert any("ReadTimeout" in r["status"] for r in log)
    assert all(r["auth"] == "Bearer sk-secret-123" for r in server.requests)
    assert "sk-secret-123" not in open(tmp_path / "answers.jsonl").read()
    body = server.requests[0]["body"]
    assert body["temperature"] == 0.2 and body["max_tokens"] == 6 and body["seed"] == 0
    # The cache answers repeats without the server; failures are asked again.
    n = len(server.requests)
    again = teacher.grade_batch(["Once upon a time"] * 2, [stories[0], stories[5]])
    np.testing.assert_array_equal(again.scores_Bx3, grades.scores_Bx3[[0, 5]])
    assert len(server.requests) == n
    teacher.close()


@pytest.mark.parametrize("constrain, field", [("vllm", "structured_outputs"), ("vllm_legacy", "guided_regex"),
                                              ("llama_cpp", "grammar")])
def test_constrained_output_is_requested_in_the_servers_dialect(server, tmp_path, constrain, field):
    teacher = make_teacher(teacher_cfg(server.url, constrain=constrain), str(tmp_path))
    teacher.grade_batch(["p"], ["A story."])
    assert field in server.requests[-1]["body"]
    teacher.close()


def test_replay_regrades_a_run_without_the_server(server, tmp_path):
    os.makedirs(tmp_path / "run", exist_ok=True)
    teacher = make_teacher(teacher_cfg(server.url), str(tmp_path / "run"))
    stories = [f"Story number {i} about a dragon." for i in range(12)]
    original = teacher.grade_batch(["p"] * 12, stories)
    teacher.close()
    replay = make_teacher(teacher_cfg("http://127.0.0.1:9/v1", name="replay",
                                      answers=str(tmp_path / "run" / "answers.jsonl")), "")
    again = replay.grade_batch(["p"] * 12, stories)
    np.testing.assert_array_equal(np.isnan(again.scores_Bx3), np.isnan(original.scores_Bx3))
    ok = ~np.isnan(original.scores_Bx3)
    np.testing.assert_array_equal(again.scores_Bx3[ok], original.scores_Bx3[ok])
    unseen = replay.grade_batch(["p"], ["A story never graded."])
    assert np.isnan(unseen.scores_Bx3).all()


def test_per_host_answer_logs_are_one_run_for_resume_and_replay(server, tmp_path):
    """A run that sharded grading over 2 hosts logs answers.jsonl and answers.p1.jsonl: a resumed process
    (whichever shard it now holds) and a replay of the run see the answers of both, with no new request."""
    run = tmp_path / "run"
    os.makedirs(run)
    stories = [f"Story number {i} about an owl." for i in range(12)]
    first = []
    for process, part in ((0, stories[:6]), (1, stories[6:])):
        teacher = make_teacher(teacher_cfg(server.url), str(run), process)
        first.append(teacher.grade_batch(["p"] * 6, part).scores_Bx3)
        teacher.close()
    first = np.concatenate(first)
    assert sorted(os.listdir(run)) == ["answers.jsonl", "answers.p1.jsonl"]
    ok = ~np.isnan(first).any(1)
    graded = [s for s, k in zip(stories, ok) if k]
    assert ok[:6].any() and ok[6:].any()
    asked = len(server.requests)
    resumed = make_teacher(teacher_cfg(server.url), str(run), 0)
    again = resumed.grade_batch(["p"] * len(graded), graded)  # all on process 0 now
    resumed.close()
    assert len(server.requests) == asked  # every answer came from the two logs
    np.testing.assert_array_equal(again.scores_Bx3, first[ok])
    replay = make_teacher(teacher_cfg("http://127.0.0.1:9/v1", name="replay", answers=str(run / "answers.jsonl")), "")
    np.testing.assert_array_equal(replay.grade_batch(["p"] * len(graded), graded).scores_Bx3, first[ok])


def test_bad_bodies_are_logged_with_their_status_and_never_cached(server, tmp_path):
    """A number for content, an HTML body, a 401 and unparsable text: each logged with its own status (and
    the body's first bytes), none cached, so a rerun against a fixed server asks again and gets grades."""
    stories = ["NUMBER story.", "NOTJSON story.", "UNAUTH story.", "GARBAGE story.", "A fine story."]
    teacher = make_teacher(teacher_cfg(server.url), str(tmp_path))
    grades = teacher.grade_batch(["p"] * 5, stories)
    assert np.isnan(grades.scores_Bx3[:4]).all() and not np.isnan(grades.scores_Bx3[4]).any()
    log = {r["story"]: r for r in map(json.loads, open(tmp_path / "answers.jsonl"))}
    assert log["NUMBER story."]["status"] == "bad response: choices[0].message.content is a int, not text"
    assert log["NOTJSON story."]["status"] == "bad response: body is not JSON"
    assert "502 Bad Gateway" in log["NOTJSON story."]["body_head"]
    assert log["UNAUTH story."]["status"] == "bad response: HTTP 401" and "API key" in log["UNAUTH story."]["body_head"]
    assert log["GARBAGE story."]["status"] == "unparsable" and log["GARBAGE story."]["answer"] == "What a lovely story!"
    assert teacher.last_problem.split(" (body: ")[0] in {log[s]["status"] for s in stories[:4]}
    # The server is fixed: the same stories now get three grades. A new teacher on the same log (a rerun)
    # asks the server again for the four and takes the good one from its cache.
    server.force = "ok"
    asked = len(server.requests)
    rerun = make_teacher(teacher_cfg(server.url), str(tmp_path))
    again = rerun.grade_batch(["p"] * 5, stories)
    assert not np.isnan(again.scores_Bx3).any()
    assert len(server.requests) == asked + 4
    np.testing.assert_array_equal(again.scores_Bx3[4], grades.scores_Bx3[4])


def test_a_log_written_with_a_malformed_ok_does_not_poison_the_cache(server, tmp_path):
    """Logs from before answers were validated can hold status "ok" with a number or garbage: ignored."""
    teacher = make_teacher(teacher_cfg(server.url), str(tmp_path))
    key = teacher.key("p", "A story.")
    with open(tmp_path / "answers.jsonl", "w") as f:
        f.write(json.dumps({"key": key, "status": "ok", "answer": 7}) + "\n")
        f.write(json.dumps({"key": key, "status": "ok", "answer": "Lovely!"}) + "\n")
    rerun = make_teacher(teacher_cfg(server.url), str(tmp_path))
    assert rerun.cache == {}
    assert not np.isnan(rerun.grade_batch(["p"], ["A story."]).scores_Bx3).any()


def test_cancel_abandons_a_slow_batch_at_once(tmp_path):
    """SIGTERM's path: cancel() from another thread stops grading in flight and between retries."""
    import threading
    import time

    from storyjax.grades import GradingCancelled
    with FakeTeacherServer(hang_s=30.0, force="hang") as server:
        teacher = make_teacher(teacher_cfg(server.url, timeout_s=20.0, retries=3, backoff_s=5.0), str(tmp_path))
        threading.Timer(0.5, teacher.cancel).start()
        t0 = time.time()
        with pytest.raises(GradingCancelled):
            teacher.grade_batch(["p"] * 8, [f"Story {i}." for i in range(8)])
        assert time.time() - t0 < 2.0
        with pytest.raises(GradingCancelled):  # and it stays cancelled: no new batch starts
            teacher.grade_batch(["p"], ["Another story."])
