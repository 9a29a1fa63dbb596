"""The experiment job: pretraining milestones × seeds of interactive learning, every student judged the same
way, the table, the plot and the "N words of interaction ≈ M words of pretraining" figure; resumable."""

import csv
import json
import os
import signal
import time

import pytest

from conftest import BLIMP
from storyjax import experiment
from test_main import run_main, start_main

TINY = ["--config=configs/experiment.py:tiny", "--config.pretrain.data.num_docs=2000",
        "--config.pretrain.model.num_layers=2", "--config.pretrain.model.d_model=64",
        "--config.pretrain.model.num_heads=2", "--config.pretrain.model.max_len=96",
        "--config.pretrain.tokenizer.vocab_size=800", "--config.pretrain.train.batch_size=16",
        "--config.pretrain.train.num_steps=40", "--config.pretrain.train.seq_len=64",
        "--config.pretrain.ledger.milestones=(5000,10000,20000)", "--config.experiment.milestones=('chck_5K','chck_20K')",
        "--config.experiment.seeds=(0,1)", "--config.interactive.batch_size=8",
        "--config.interactive.sampling.max_new_tokens=24", "--config.interactive.budget_words=400",
        "--config.interactive.checkpoint_every_steps=2", "--config.evaluate.stories.num_openings=10",
        "--config.evaluate.stories.per_opening=2", "--config.evaluate.max_val_blocks=16",
        "--config.evaluate.sampling.max_new_tokens=24"]


def test_equivalent_pretraining_words_are_read_off_the_curve_on_log_words():
    curve = [(1_000, 1.0), (10_000, 3.0), (100_000, 5.0)]
    assert experiment.reached_words(curve, 4.0) == round(10 ** 4.5)  # whole words
    assert experiment.reached_words(curve, 1.0) == 1_000 and experiment.reached_words(curve, 5.0) == 100_000
    assert experiment.reached_words(curve, 0.5) is None and experiment.reached_words(curve, 5.5) is None
    assert experiment.equivalence(curve, 5.5) == "not reached (above the curve's best, 5.00)"
    assert experiment.equivalence(curve, 0.5) == "not reached (below the first milestone's 1.00)"
    # A curve that dips: the first crossing counts.
    assert experiment.reached_words([(1_000, 1.0), (10_000, 3.0), (100_000, 2.0)], 2.0) == round(10 ** 3.5)


def test_kl_band_counts_the_late_steps_near_the_target():
    settling, late = [0.5, 20.0, 9.5, 7.0, 1.0, 6.0], [6.0, 8.9, 9.1, 2.9, 3.0, float("nan")]
    assert experiment.kl_in_band(settling + late, 6.0, 0.5) == 3 / 5  # 6.0, 8.9, 3.0 lie in [3, 9]; NaN dropped
    assert experiment.kl_in_band(settling + late, 0.0, 0.5) is None  # a fixed coefficient has no target
    assert experiment.kl_in_band([], 6.0, 0.5) is None


def test_milestones_the_pretraining_will_not_write_are_refused_before_any_work(tmp_path):
    proc = run_main(TINY + ["--config.experiment.milestones=('chck_7K',)"], tmp_path / "x")
    assert proc.returncode == 2
    assert "experiment.milestones ['chck_7K'] are not among the pretraining run's milestones" in proc.stderr
    assert "pretrain.ledger.milestones" in proc.stderr and not os.path.exists(tmp_path / "x" / "pretrain")


@pytest.fixture(scope="module")
def blimp_subset(tmp_path_factory):
    out = tmp_path_factory.mktemp("blimp")
    for name in ("anaphor_gender_agreement.jsonl", "transitive.jsonl"):
        (out / name).write_text("".join((BLIMP / name).read_text().splitlines(keepends=True)[:40]))
    return out


@pytest.mark.slow
def test_experiment_writes_the_table_plot_and_headline_and_a_killed_run_ends_the_same(tfds_dir, blimp_subset,
                                                                                     tmp_path):
    args = TINY + [f"--config.pretrain.data.tfds_dir={tfds_dir}", f"--config.evaluate.blimp_dir={blimp_subset}"]
    ref = run_main(args, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-4000:]
    s = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert [r["milestone"] for r in s["rows"]] == ["chck_5K", "chck_20K"]
    assert [w for w, _ in s["curve"]] == [5_000, 10_000, 20_000]  # every pretraining milestone, judged
    for r in s["rows"]:
        assert r["seeds"] == 2 and 0 < r["input_words"] <= 400
        assert 0 <= r["heldout_before"] <= 9 and 0 <= r["heldout_after"] <= 9
        assert r["ppl_per_word_before"] > 1 and r["ppl_per_word_after"] > 1
        assert 0 <= r["blimp_before"] <= 1 and 0 <= r["blimp_after"] <= 1 and r["kl_end"] >= 0
        assert r["equivalent"] == experiment.equivalence(s["curve"], r["heldout_after"])
    with open(tmp_path / "ref" / "table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["milestone"] for r in rows] == ["chck_5K", "chck_20K"]
    md = (tmp_path / "ref" / "table.md").read_text()
    assert md.count("| chck_") == 2 and "Judge of held-out stories: rubric" in md
    headline = json.loads((tmp_path / "ref" / "headline.json").read_text())
    assert [len(h["per_seed"]) for h in headline] == [2, 2]
    assert (tmp_path / "ref" / "heldout_vs_words.png").stat().st_size > 10_000
    assert "pretraining-only equivalent:" in ref.stdout and "table.md" in ref.stdout

    # Killed during interactive learning, then rerun: the same table (every phase resumes or is skipped).
    proc = start_main(args, tmp_path / "killed")
    deadline = time.time() + 600
    while not os.path.isdir(tmp_path / "killed" / "rl" / "chck_5K_s1" / "latest") and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = run_main(args, tmp_path / "killed")
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert (tmp_path / "killed" / "table.csv").read_text() == (tmp_path / "ref" / "table.csv").read_text()
