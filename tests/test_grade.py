"""The grading job: any teacher grades a JSONL of stories; same order, nulls for unscorable, intervals."""

import json

import numpy as np
import pytest

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
    assert proc.stdout.strip().splitlines()[-2].startswith(f"Graded 4 stories with the rubric teacher (0 unscorable): "
                                                          f"mean grade sum {s['sum']['mean']:.2f}")
    assert proc.stdout.strip().endswith("grades.jsonl (each story's grades and the teacher's answer), summary.json.")
    with FakeTeacherServer() as server:
        proc = run_main(["--config=configs/grade.py", f"--config.stories={stories}", "--config.progress_bar=False",
                         "--config.teacher.name=openai", f"--config.teacher.openai.base_url={server.url}",
                         "--config.teacher.openai.retries=0", "--config.teacher.openai.timeout_s=5"],
                        tmp_path / "openai")
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


def write_pairs(path, austen_dir, n=12, family="word_salad"):
    """Pairs from real passages of a novel: (a) the passage, (b) the same passage made into `family`; every
    third pair swapped, so a judge that always answers "a" cannot score."""
    from storyjax import adversarial
    texts = [p.read_text(errors="replace") for p in sorted(austen_dir.glob("*.txt"))]
    chosen = adversarial.passages(texts, n, seed=5)
    prompts, real = adversarial.stories("real", chosen)
    _, bad = adversarial.stories(family, chosen)
    rows, truth = [], []
    for i, (p, r, b) in enumerate(zip(prompts, real, bad)):
        swap = i % 3 == 2
        rows.append({"prompt": p, "a": b if swap else r, "b": r if swap else b})
        truth.append(0.0 if swap else 1.0)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, truth


def test_pairs_are_judged_with_a_win_rate_clustered_by_opening_and_resume(tmp_path, austen_dir):
    pairs, truth = write_pairs(tmp_path / "pairs.jsonl", austen_dir)
    args = ["--config=configs/grade.py", f"--config.pairs={pairs}", "--config.batch=5", "--config.progress_bar=False"]
    proc = run_main(args, tmp_path / "full")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Judged 12 pairs with the rubric teacher" in proc.stdout and proc.stdout.strip().endswith("summary.json.")
    lines = [json.loads(line) for line in open(tmp_path / "full" / "pairs.jsonl")]
    assert [d["index"] for d in lines] == list(range(12))
    # The rubric: the larger sum of grades wins (a tie is 0.5), in both orders alike.
    p_a = [d["p_a"] for d in lines]
    assert p_a == [(np.sign(d["sum_a"] - d["sum_b"]) + 1) / 2 for d in lines]
    assert all(d["p_a_first"] == d["p_a_second"] == d["p_a"] for d in lines)
    # Real prose beats its own word salad (measured: 11 of 12, one tie on a passage of short exclamations).
    assert sum(p == t for p, t in zip(p_a, truth)) >= 10 and not any(abs(p - t) == 1 for p, t in zip(p_a, truth))
    s = summary(tmp_path / "full")
    assert s["mode"] == "pairwise" and s["pairs"] == 12 and s["unscorable"] == 0
    assert s["a_wins"]["win_rate"] == np.mean(p_a) and s["a_wins"]["clusters"] == 12 and s["a_wins"]["ci95"] > 0
    assert s["position"] == {"consistency": 1.0, "first_slot": 0.5}  # no slot to prefer
    # Killed after one batch with a torn line: the rerun keeps the first batch and ends the same.
    (tmp_path / "part").mkdir()
    text = open(tmp_path / "full" / "pairs.jsonl").read().splitlines()
    (tmp_path / "part" / "pairs.jsonl").write_text("\n".join(text[:5]) + "\n" + text[5][:7])
    assert run_main(args, tmp_path / "part").returncode == 0
    assert open(tmp_path / "part" / "pairs.jsonl").read() == open(tmp_path / "full" / "pairs.jsonl").read()


@pytest.mark.slow
def test_pairs_and_stories_are_one_or_the_other_and_a_bad_pair_is_named(tmp_path):
    stories = write_stories(tmp_path / "stories.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "a": "one", "b": "two"}\n{"prompt": "x", "a": "only a"}\n')
    both = run_main(["--config=configs/grade.py", f"--config.stories={stories}", f"--config.pairs={bad}"],
                    tmp_path / "w")
    assert both.returncode == 2 and "not both" in both.stderr
    neither = run_main(["--config=configs/grade.py"], tmp_path / "w")
    assert neither.returncode == 2 and "not neither" in neither.stderr
    proc = run_main(["--config=configs/grade.py", f"--config.pairs={bad}"], tmp_path / "w")
    assert proc.returncode == 2 and 'bad.jsonl, line 2: not a JSON object with "prompt" and "a" and "b"' in proc.stderr
    assert not (tmp_path / "w").exists()
    # A teacher that cannot compare stories says which can.
    pairs = tmp_path / "ok.jsonl"
    pairs.write_text('{"prompt": "x", "a": "one", "b": "two"}\n')
    served = run_main(["--config=configs/grade.py", f"--config.pairs={pairs}", "--config.teacher.name=openai"],
                      tmp_path / "o")
    assert served.returncode == 2 and "cannot judge pairs" in served.stderr


def test_a_storys_grade_in_the_grading_job_is_the_same_alone_and_beside_any_others(tmp_path, austen_dir):
    """Real passages beside their own sentence shuffles in one file, then each graded alone in a file of its
    own: the same grades (no grade depends on the other stories graded with it)."""
    from configs import grade as grade_config
    from storyjax import adversarial as A
    from storyjax import grade
    passages = A.passages([(austen_dir / "persuasion.txt").read_text()], 6)
    prompts, shuffles = A.stories("shuffled_sentences", passages)
    rows = [{"prompt": p, "story": s} for p, s in zip(prompts + prompts, passages + shuffles)]

    def graded(name, part):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
        config = grade_config.get_config()
        config.stories, config.progress_bar = str(path), False
        grade.run(config, str(tmp_path / name))
        return [g["scores"] for g in grades(tmp_path / name)]
    together = graded("together", rows)
    assert together == [graded(f"alone{i}", [r])[0] for i, r in enumerate(rows)]
    assert all(g is not None for g in together)
