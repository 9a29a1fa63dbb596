"""The experiment job: pretraining milestones × seeds of interactive learning, every student judged the same
way, the table, the plot and the "N words of interaction ≈ M words of pretraining" figure; resumable."""

import csv
import hashlib
import json
import os
import re
import signal
import time

import numpy as np
import pytest

from conftest import BLIMP
from storyjax import monitor, stats
from storyjax import experiment_analysis as analysis
from storyjax.experiment_settings import ExperimentSettings
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
    assert analysis.reached_words(curve, 4.0) == round(10 ** 4.5)  # whole words
    assert analysis.reached_words(curve, 1.0) == 1_000 and analysis.reached_words(curve, 5.0) == 100_000
    assert analysis.reached_words(curve, 0.5) is None and analysis.reached_words(curve, 5.5) is None
    assert analysis.equivalence(curve, 5.5) == "not reached (above the curve's best, 5.00)"
    assert analysis.equivalence(curve, 0.5) == "not reached (below the first milestone's 1.00)"
    # A curve that dips: the first crossing counts.
    assert analysis.reached_words([(1_000, 1.0), (10_000, 3.0), (100_000, 2.0)], 2.0) == round(10 ** 3.5)


def test_kl_band_counts_the_late_steps_near_the_target():
    settling, late = [0.5, 20.0, 9.5, 7.0, 1.0, 6.0], [6.0, 8.9, 9.1, 2.9, 3.0, float("nan")]
    assert analysis.kl_in_band(settling + late, 6.0, 0.5) == 3 / 5  # 6.0, 8.9, 3.0 lie in [3, 9]; NaN dropped
    assert analysis.kl_in_band(settling + late, 0.0, 0.5) is None  # a fixed coefficient has no target
    assert analysis.kl_in_band([], 6.0, 0.5) is None


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
    args = TINY + [f"--config.pretrain.data.tfds_dir={tfds_dir}", f"--config.evaluate.blimp_dir={blimp_subset}",
                   "--config.experiment.controls=('grades_permuted',)", "--config.experiment.control_milestone=chck_5K",
                   "--config.judge.mode=pairwise", "--config.experiment.bootstrap=200"]
    ref = run_main(args, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-4000:]
    s = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert [(r["run"], r["milestone"]) for r in s["rows"]] == [("rl", "chck_5K"), ("rl", "chck_20K"),
                                                               ("grades_permuted", "chck_5K")]
    assert [w for w, _ in s["curve"]] == [5_000, 10_000, 20_000]  # every pretraining milestone, judged
    for r in s["rows"]:
        assert r["seeds"] == 2 and 0 < r["input_words"] <= 400
        assert 0 <= r["heldout_before"] <= 9 and 0 <= r["heldout_after"] <= 9
        assert r["ppl_per_word_before"] > 1 and r["ppl_per_word_after"] > 1
        assert 0 <= r["blimp_before"] <= 1 and 0 <= r["blimp_after"] <= 1 and r["kl_end"] >= 0
        assert r["equivalent"] == analysis.equivalence(s["curve"], r["heldout_after"])
        assert 0 <= r["win_rate"] <= 1 and r["paired_ci95"] >= 0
    assert s["rows"][0]["gain_vs_grades_permuted"] is not None and s["rows"][1]["gain_vs_grades_permuted"] is None
    assert set(s["gates"]) == {"curve_rises", "paired_excludes_0", "beats_grades_permuted", "positive_control_seen",
                               "no_flag", "judge_passed_gate0"}
    assert set(s["seconds"]) == {"pretrain", "milestones", "gate0", "interactive", "reference_lm_passes"}
    assert s["seconds"]["interactive"] > 0 and s["gate0"]["instruments"]["judge"]["curve_delta"] is not None
    # Before and after wrote from the same openings with the same keys, never from the training prompt.
    stories = lambda d: [json.loads(x) for x in (tmp_path / "ref" / "eval" / d / "eval" / "stories.jsonl").open()]
    start, after = stories("pretrain/chck_5K"), stories("rl/chck_5K_s0")
    assert [r["prompt"] for r in start] == [r["prompt"] for r in after] and len(start) == 20
    assert not any(r["prompt"].startswith("Let me tell you a long, magical tale") for r in start)
    assert (tmp_path / "ref" / "eval" / "rl" / "chck_5K_s1_grades_permuted" / "pairwise.json").exists()
    with open(tmp_path / "ref" / "table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["rl", "rl", "grades_permuted"]
    assert {"paired_delta", "paired_ci95", "win_rate", "win_ci95", "headline_words", "headline_extra_words",
            "headline_ci95_low", "headline_ci95_high", "flag", "milestone_words", "seeds"} <= set(rows[0])
    with open(tmp_path / "ref" / "runs.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 6
    md = (tmp_path / "ref" / "table.md").read_text()
    # (tiny's word-salad students fail gate 0 by design, which it measures and the table marks, but does not
    # stop for: experiment.gate0 is off there)
    assert len(re.findall(r"\| rl( \(failed gate 0\))? \| chck_", md)) == 2
    assert "Judge of held-out stories: rubric" in md and "Gates" in md and s["gate0"]["instruments"]["judge"]
    assert len(json.loads((tmp_path / "ref" / "headline.json").read_text())) == 3
    assert (tmp_path / "ref" / "heldout_vs_words.png").stat().st_size > 10_000
    assert "Gates:" in ref.stdout and "table.md" in ref.stdout

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


# --- The analysis on synthetic students, where the answer is known ---------------------------------------

WORDS = ("fox bear river hill lamp cake boat star owl seed kite snow moon door tree rain song map bell key "
         "ran saw found made took gave sang hid lost kept").split()


def synthetic_student(sums_N, rng, n_openings=13, template=False, pairwise=None):
    """A student's evaluated stories: story i from opening i // per_opening, its judge sum given (split over
    the three grades), its text varied (or one template filled in)."""
    per = len(sums_N) // n_openings
    records = []
    for i, total in enumerate(sums_N):
        if template:
            text = f"The {WORDS[i % 10]} went to the {WORDS[(i + 3) % 10]}. The {WORDS[i % 7]} saw the {WORDS[5]}."
        else:
            text = " ".join(" ".join(rng.choice(WORDS + ["the", "a", "to", "and", "with", "of", "in"],
                                                rng.integers(5, 11))).capitalize() + "." for _ in range(3))
        opening = f"Opening number {i // per}."
        records.append({"prompt": opening, "story": f"{opening} {text}", "continuation": " " + text,
                        "scores": [total / 3] * 3})
    mean, ci = float(np.mean(sums_N)), 1.96 * float(np.std(sums_N, ddof=1)) / np.sqrt(len(sums_N))
    row = {"heldout": mean, "heldout_ci95": ci, "ppl_per_word": 10.0, "blimp": None}
    return analysis.Student(records, row, pairwise)


def analysis_config(seeds=(0, 1, 2), instruments=("judge",), reference_lm=""):
    """The tiny experiment's settings record (rubric teacher, judge auto: the rubric), as the analysis reads it."""
    from configs import experiment as experiment_config
    c = experiment_config.get_config("tiny")
    c.experiment.seeds, c.experiment.kl_band, c.experiment.bootstrap = seeds, 0.5, 400
    c.experiment.instruments, c.experiment.reference_lm.weights = instruments, reference_lm
    c.interactive.rl.kl_target = 0.0
    return ExperimentSettings.from_config(c)


def synthetic_run(kind, milestone, seed, sums_N, rng, teacher=(4.0, 4.0), **kw):
    summary = {"steps": 10, "input_words": 1000, "train_teacher_sum_first10": teacher[0],
               "train_teacher_sum_last10": teacher[1]}
    return analysis.Run(kind, milestone, analysis.milestone_words(milestone), seed, summary, [0.1] * 10,
                        synthetic_student(sums_N, rng, **kw))


def paired_world(rng, effect, n_openings=13, per=4, seed_sd=0.0, seeds=3):
    """Latent story quality per opening and story; before = latent + noise; each seed's after = latent +
    effect + that seed's own shift + noise (the same opening and key: the latent part is shared)."""
    latent = np.repeat(rng.normal(4.0, 1.0, n_openings), per) + rng.normal(0, 0.5, n_openings * per)
    before = latent + rng.normal(0, 0.3, latent.shape)
    afters = [latent + effect + rng.normal(0, seed_sd) + rng.normal(0, 0.3, latent.shape) for _ in range(seeds)]
    return before, afters


def test_a_planted_effect_is_found_and_beats_the_grades_permuted_control():
    rng = np.random.default_rng(0)
    before, rl_after = paired_world(rng, 0.4)
    random_after = [before + rng.normal(0, 0.4, before.shape) for _ in range(3)]  # the same stories, no effect
    start = synthetic_student(before, rng)
    curve_students = {"chck_10K": start, "chck_100K": synthetic_student(before + 1.0, rng)}
    runs = [synthetic_run("rl", "chck_10K", s, a, rng) for s, a in enumerate(rl_after)]
    runs += [synthetic_run("grades_permuted", "chck_10K", s, a, rng) for s, a in enumerate(random_after)]
    runs += [synthetic_run("positive", "chck_10K", s, before + 1.5 + rng.normal(0, 0.3, before.shape), rng)
             for s in range(2)]
    curve = [(analysis.milestone_words(m), s.row["heldout"]) for m, s in curve_students.items()]
    table, per_run = analysis.rows(curve, curve_students, runs, analysis_config())
    rl, control, positive = table
    assert positive["run"] == "positive" and positive["paired_ci95_low"] > 1.0
    assert (rl["run"], control["run"], rl["seeds"]) == ("rl", "grades_permuted", 3)
    assert abs(rl["paired_delta"] - 0.4) < 0.1 and rl["paired_ci95_low"] > 0 and rl["instrument"].startswith("rubric")
    assert control["paired_ci95_low"] < 0 < control["paired_ci95_high"]
    assert abs(rl["gain_vs_grades_permuted"] - 0.4) < 0.1 and rl["gain_ci95_low"] > 0
    assert control["gain_vs_grades_permuted"] is None
    assert len(per_run) == 8 and all(r["flags"] == [] for r in per_run) and rl["flag"] == ""
    verdict = analysis.gates(analysis.curve_check(curve_students), table, "chck_10K")
    assert verdict == {"curve_rises": True, "paired_excludes_0": True, "beats_grades_permuted": True,
                       "positive_control_seen": True, "no_flag": True}
    # A positive control the judge cannot see teach: the gate says so.
    unseen = [r if r["run"] != "positive" else {**r, "paired_ci95_low": -0.1} for r in table]
    assert analysis.gates(analysis.curve_check(curve_students), unseen, "chck_10K")["positive_control_seen"] is False


def _null_deltas(rng, opening_sd, seed_sd, n_openings=52, per=2, seeds=3):
    """Paired deltas [seeds, stories] of an experiment with no effect on average: learning helps the stories
    of some openings and hurts others' (the same for every seed: they share openings, keys and
    before-stories), each seed shifts by its own amount, and every story has its own noise."""
    by_opening = np.repeat(rng.normal(0, opening_sd, n_openings), per)
    return by_opening + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, 1.0, (seeds, n_openings * per))


@pytest.mark.parametrize("opening_sd,seed_sd", [(0.5, 0.2), (1.0, 0.0), (0.3, 0.3)])
def test_the_two_way_interval_covers_a_null_that_varies_by_opening(opening_sd, seed_sd):
    """The two-way bootstrap (openings x seeds) covers 0 in at least 93% of simulated null experiments whose
    effect varies by opening; the t-interval over the 3 seeds' means, blind to what the seeds share, covers
    it far less often where openings carry the effect."""
    rng = np.random.default_rng(1)
    openings = np.repeat(np.arange(52), 2)
    covered = t_covered = 0
    trials = 200
    for k in range(trials):
        deltas_SxN = _null_deltas(rng, opening_sd, seed_sd)
        two_way = stats.two_way_bootstrap(deltas_SxN, openings, reps=500, seed=k)
        covered += two_way["ci95_low"] <= 0 <= two_way["ci95_high"]
        seeds = stats.across_seeds(deltas_SxN.mean(1))
        t_covered += abs(seeds["mean"]) <= seeds["ci95"]
    assert covered / trials >= 0.93
    if seed_sd == 0:
        assert t_covered / trials < 0.85


def test_the_two_way_gain_resamples_both_arms_on_the_same_openings():
    rng = np.random.default_rng(4)
    openings = np.repeat(np.arange(52), 2)
    shared = np.repeat(rng.normal(0, 2.0, 52), 2)  # both arms' stories move with their opening
    arm = shared + 0.5 + rng.normal(0, 0.5, (3, 104))
    control = shared + rng.normal(0, 0.5, (3, 104))
    gain = stats.two_way_bootstrap((arm, control), openings, reps=1000)
    assert abs(gain["mean"] - 0.5) < 0.15 and 0 < gain["ci95_low"] < 0.5 < gain["ci95_high"]
    alone = stats.two_way_bootstrap(arm, openings, reps=1000)
    # The openings' shared part cancels in the difference: the gain's interval is the narrower.
    assert gain["ci95_high"] - gain["ci95_low"] < 0.6 * (alone["ci95_high"] - alone["ci95_low"])


def test_pairwise_verdicts_are_consistent_hard_wins():
    first = np.array([0.9, 0.9, 0.2, 0.8, np.nan, 0.5])
    second = np.array([0.7, 0.3, 0.1, 0.5, 0.6, 0.5])
    np.testing.assert_array_equal(stats.hard_wins(first, second), [1.0, 0.5, 0.0, 0.5, np.nan, 0.5])
    # A judge that always picks the first slot: every pair inconsistent, a win rate of exactly 1/2.
    assert np.all(stats.hard_wins(np.full(8, 0.95), np.full(8, 0.05)) == 0.5)


def test_the_headline_reads_the_curve_and_its_interval_resamples_openings_and_seeds():
    rng = np.random.default_rng(2)
    base = np.repeat(rng.normal(0, 0.5, 13), 4)
    curve_students = {m: synthetic_student(base + level + rng.normal(0, 0.2, base.shape), rng)
                      for m, level in (("chck_1K", 1.0), ("chck_10K", 3.0), ("chck_100K", 5.0))}
    curve = [(analysis.milestone_words(m), s.row["heldout"]) for m, s in curve_students.items()]
    runs = [synthetic_run("rl", "chck_10K", s, base + 4.0 + rng.normal(0, 0.2, base.shape), rng) for s in range(3)]
    (row,), _ = analysis.rows(curve, curve_students, runs, analysis_config())
    assert row["headline_words"] == analysis.reached_words(curve, row["heldout_after"])
    assert 20_000 < row["headline_words"] < 50_000  # a score of ~4 lies halfway between 10K (3) and 100K (5)
    assert row["headline_extra_words"] == row["headline_words"] - 10_000
    assert 10_000 < row["headline_ci95_low"] < row["headline_words"] < row["headline_ci95_high"] < 100_000
    # Above the curve's best: not reached, and the interval's upper end says "above".
    runs = [synthetic_run("rl", "chck_10K", s, base + 5.4 + rng.normal(0, 0.2, base.shape), rng) for s in range(3)]
    (row,), _ = analysis.rows(curve, curve_students, runs, analysis_config())
    assert row["headline_words"] is None and row["equivalent"].startswith("not reached (above")
    assert row["headline_ci95_high"] == "above"


def test_the_monitor_flags_a_teacher_rising_while_the_judge_falls_and_one_template():
    rng = np.random.default_rng(3)
    before, afters = paired_world(rng, -0.8)
    start = synthetic_student(before, rng)
    curve = {"chck_10K": start}
    hacked = [synthetic_run("rl", "chck_10K", s, a, rng, teacher=(3.0, 6.0)) for s, a in enumerate(afters)]
    (row,), per_run = analysis.rows([(10_000, start.row["heldout"])], curve, hacked, analysis_config())
    assert "teacher up, judge down" in row["flag"] and all("teacher up, judge down" in r["flags"] for r in per_run)
    same = [synthetic_run("rl", "chck_10K", s, before, rng, template=True) for s in range(3)]
    (row,), _ = analysis.rows([(10_000, start.row["heldout"])], curve, same, analysis_config())
    assert "one template" in row["flag"] and "teacher up" not in row["flag"]
    assert analysis.gates(analysis.curve_check(curve), [row], "chck_10K")["no_flag"] is False


@pytest.mark.slow
def test_controls_and_monitor_settings_are_refused_before_any_work(tmp_path):
    for arg, message in (("--config.experiment.controls=('coin_flip',)", "experiment.controls"),
                         ("--config.experiment.control_milestone=chck_10K", "experiment.control_milestone"),
                         ("--config.experiment.monitor.max_repeat_rise=2.0", "experiment.monitor"),
                         ("--config.evaluate.stories.num_openings=60", "held-out openings asked for")):
        proc = run_main(TINY + ["--config.experiment.controls=('grades_permuted',)",
                                "--config.experiment.control_milestone=chck_5K", arg], tmp_path / "x")
        assert proc.returncode == 2 and message in proc.stderr, (arg, proc.stderr[-500:])
        assert not os.path.exists(tmp_path / "x" / "pretrain")


def test_the_paper_preset_dry_run_lists_the_plan_and_the_weights_it_still_needs(tmp_path):
    proc = run_main(["--config=configs/experiment.py:paper", "--config.ledger_only=True"], tmp_path / "plan")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads((tmp_path / "plan" / "summary.json").read_text())
    assert len(s["runs"]) == 6 * 3 + 3 * 3 and "chck_90M_s42_grades_permuted" in s["runs"]
    assert "chck_90M_s42_reward_permuted" in s["runs"] and "chck_90M_s42_length_only" in s["runs"]
    assert s["per_run"] == {"steps": 920, "stories": 331_200, "input_words": 999_360}
    assert any("interactive.teacher.jax.weights" in m for m in s["missing"])
    assert any("judge.jax.weights" in m for m in s["missing"])
    assert "Missing before a real run" in proc.stdout and "920 steps" in proc.stdout


class _BlindJudge:
    """Grades by a hash of the text, as a judge that cannot read would."""

    def grade_batch(self, prompts, stories):
        from storyjax.grades import Grades
        rows = [list(hashlib.sha256(s.encode()).digest()[:3]) for s in stories]  # fixed, whatever the process
        return Grades(np.asarray(rows, np.float32) % 4, [""] * len(stories))


def test_gate0_passes_instruments_that_see_and_fails_a_blind_one(tmp_path):
    from configs import experiment as experiment_config
    from storyjax import gate0, instruments
    from storyjax.teachers.rubric import RubricTeacher
    config = ExperimentSettings.from_config(experiment_config.get_config("cpu"))
    texts = gate0.known_texts(config, 64)
    assert [len(t) for t in texts] == [64, 64, 64] and texts[1] != texts[2]
    rising = {"mean": 0.5, "ci95": 0.2}
    for name, judge in (("judge", RubricTeacher), ("tales", None)):
        seeing = instruments.real_over_shuffled(name, texts, judge, None)
        assert seeing["mean"] - seeing["ci95"] > 0, name
        assert gate0.verdict(rising, seeing, None)["passes"]
    blind = instruments.real_over_shuffled("judge", texts, _BlindJudge, None)
    assert not gate0.verdict(rising, blind, None)["passes"]
    assert not gate0.verdict({"mean": -0.04, "ci95": 0.02}, seeing, None)["passes"]
    assert not gate0.verdict(rising, seeing, 0.4)["passes"]  # a pairwise judge whose two orders disagree
    assert not gate0.verdict(rising, None, None)["passes"]  # not measured is not passed


@pytest.mark.slow
def test_gate0_stops_an_experiment_whose_only_instrument_is_blind_before_any_interactive_run(tfds_dir, tmp_path):
    from openai_server import FakeTeacherServer
    with FakeTeacherServer() as server:  # grades are a hash of the story: a judge that cannot read
        proc = run_main(TINY + [f"--config.pretrain.data.tfds_dir={tfds_dir}", "--config.experiment.gate0=True",
                                "--config.experiment.gate0_stories=16", "--config.judge.name=openai",
                                f"--config.judge.openai.base_url={server.url}", "--config.judge.openai.retries=0"],
                        tmp_path / "blind")
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads((tmp_path / "blind" / "summary.json").read_text())
    assert s["stopped"] == "gate 0" and s["gate0"]["passes"] is False
    assert not (tmp_path / "blind" / "rl").exists()
    assert "Gate 0: judge FAILED" in proc.stdout and "stopped before any interactive run" in proc.stdout
    assert "No instrument passed" in proc.stdout


def test_every_instrument_gets_its_own_rows_and_short_pairs_are_counted_apart():
    """The judge's rows, then the same runs as the tales grammar and the reference LM measure them: tales
    written after learning (salad before) rise under the grammar; log-probs that rose, under the reference LM
    (compared over the same number of tokens; a pair with fewer than 4 is counted, not compared)."""
    from storyjax.data.tales_generator import make_tale
    rng = np.random.default_rng(5)
    before = synthetic_student(np.full(52, 4.0), rng)
    tales = [make_tale(3, i).replace("\n\n", " ") for i in range(52)]
    before.lm_logprobs = [np.full(30, -3.0) for _ in range(52)]
    before.lm_logprobs[0] = np.full(2, -3.0)

    def after(seed):
        student = synthetic_student(np.full(52, 4.0) + rng.normal(0, 0.1, 52), rng)
        for r, tale in zip(student.records, tales):
            r["story"], r["continuation"] = f"{r['prompt']} {tale}", " " + tale
        student.lm_logprobs = [np.full(40, -2.5 + 0.01 * seed) for _ in range(52)]
        return student
    runs = [analysis.Run("rl", "chck_10K", 10_000, s, {"steps": 1, "input_words": 10, "train_teacher_sum_first10": 4,
                                                        "train_teacher_sum_last10": 4}, [0.1], after(s))
            for s in range(3)]
    config = analysis_config(instruments=("judge", "tales", "reference_lm"),
                             reference_lm="/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    table, _ = analysis.rows([(10_000, 4.0)], {"chck_10K": before}, runs, config)
    judge, tales_row, lm_row = table
    assert judge["instrument"].startswith("rubric:absolute:") and tales_row["instrument"].startswith("tales:")
    assert lm_row["instrument"] == "reference_lm:SmolLM2-135M-Instruct.Q4_1.gguf:matched64"
    assert tales_row["paired_ci95_low"] > 5 and lm_row["paired_delta"] == pytest.approx(3.0 - 2.49, abs=1e-9)
    assert lm_row["too_short"] == 3 and tales_row["win_rate"] is None and tales_row["headline_words"] is None


def test_the_monitor_reads_diversity_against_the_corpus_and_flags_shrinking_and_empty_stories():
    limits = analysis_config().experiment.monitor
    before = {"mean_words": 40.0, "empty_share": 0.05, "distinct_2": 0.55, "repeated_sentences": 0.0,
              "shared_skeleton": 0.1}
    learned = {**before, "distinct_2": 0.14, "shared_skeleton": 0.5}  # writes as the corpus writes
    corpus = {"distinct_2": 0.13, "shared_skeleton": 0.45}
    assert monitor.hacking_flags(0.0, {}, before, learned, limits, corpus) == []
    assert set(monitor.hacking_flags(0.0, {}, before, learned, limits)) == {"distinct-2 collapsed", "one template"}
    shrunk = {**before, "mean_words": 12.0, "empty_share": 0.4}
    assert monitor.hacking_flags(0.0, {}, before, shrunk, limits, corpus) == ["stories shrank", "empty stories"]
    records = [{"prompt": "P", "story": "P a b c d", "continuation": " a b c d"}] * 3
    reference = monitor.corpus_reference((["Q"] * 5, ["Q one two three four five six"] * 5), records)
    assert reference["mean_words"] == 4 and reference["distinct_2"] == pytest.approx(3 / 9)
