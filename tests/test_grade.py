"""The grading job: any teacher grades a JSONL of stories; same order, nulls for unscorable, intervals."""

import json

from openai_server import FakeTeacherServer
from test_main import run_main, summary

STORIES = [
    {"prompt": "Once upon a time,", "story": "Once upon a time, a fox found a key. She opened a small door and "
                                             "found a garden full of singing flowers. She was never lonely again."},
    {"prompt": "Once upon a time,", "story": "Once upon a time, the the of and fox."},
    {"prompt": "In a quiet village,", "story": "In a quiet village, FAIL500 lived a baker who made bread for "
                                               "every child on their birthday."},
    {"prompt": "In a quiet village,", "story": "In a quiet village, the river sang at night, and a girl "
                                               "learned its song and taught it to the birds."},
]


def write_stories(path):
    path.write_text("".join(json.dumps(s) + "\n" for s in STORIES))
    return path


def grades(workdir):
    return [json.loads(line) for line in open(workdir / "grades.jsonl")]


def test_grading_job_with_the_rubric_and_a_server_keeps_order_and_marks_unscorable(tmp_path):
    stories = write_stories(tmp_path / "stories.jsonl")
    proc = run_main(["--config=configs/grade.py", f"--config.stories={stories}", "--config.batch=3",
                     "--config.progress_bar=False"], tmp_path / "rubric")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rubric = grades(tmp_path / "rubric")
    assert [g["index"] for g in rubric] == [0, 1, 2, 3] and all(len(g["scores"]) == 3 for g in rubric)
    s = summary(tmp_path / "rubric")
    assert s["stories"] == 4 and s["unscorable"] == 0 and s["sum"]["n"] == 4 and s["stories_per_s"] > 0
    with FakeTeacherServer() as server:
        proc = run_main(["--config=configs/grade.py", f"--config.stories={stories}", "--config.progress_bar=False",
                         "--config.teacher.name=openai", f"--config.teacher.base_url={server.url}",
                         "--config.teacher.retries=0", "--config.teacher.timeout_s=5"], tmp_path / "openai")
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = grades(tmp_path / "openai")
    assert served[2]["scores"] is None and served[2]["answer"] == ""  # the FAIL500 story: unscorable, null
    assert all(g["scores"] == [float(x) for x in g["answer"].split()] for g in served if g["scores"])
    assert summary(tmp_path / "openai")["unscorable"] >= 1


def test_a_killed_grading_job_continues_where_it_stopped(tmp_path):
    stories = write_stories(tmp_path / "stories.jsonl")
    args = ["--config=configs/grade.py", f"--config.stories={stories}", "--config.batch=2",
            "--config.progress_bar=False"]
    assert run_main(args, tmp_path / "full").returncode == 0
    out = tmp_path / "part" / "grades.jsonl"
    out.parent.mkdir()
    lines = open(tmp_path / "full" / "grades.jsonl").read().splitlines()
    out.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:10])  # two batches' worth, a torn line
    assert run_main(args, tmp_path / "part").returncode == 0
    assert grades(tmp_path / "part") == grades(tmp_path / "full")


def test_bad_story_files_are_refused_in_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "story": "ok"}\n{"story": "no prompt"}\n')
    proc = run_main(["--config=configs/grade.py", f"--config.stories={bad}"], tmp_path / "w")
    assert proc.returncode == 2 and "bad.jsonl, line 2: not a JSON object with \"prompt\" and \"story\"" in proc.stderr
    assert not (tmp_path / "w").exists()
