"""The paper's experiment end to end (configs/experiment.py): does interactive learning from a teacher
help a student as much as more pretraining would, and more than learning from noise?

Phases, each resumable (a finished phase leaves its summary.json and is not run again; an unfinished one
resumes from its own checkpoints):
  1. pretraining with word milestones (WORKDIR/pretrain), unless `init_checkpoint` names a run;
  2. every pretraining milestone evaluated (WORKDIR/eval/pretrain/chck_N): the pretraining-only curve, and
     with judge.mode=pairwise each milestone's stories judged against the first milestone's;
  3. interactive learning from each of `experiment.milestones` × `experiment.seeds` (WORKDIR/rl/chck_N_sS),
     and the controls (`experiment.controls` at `experiment.control_milestone`: WORKDIR/rl/chck_N_sS_KIND),
     all with the same word budget, each evaluated (WORKDIR/eval/rl/...) and, pairwise, judged against
     its starting milestone's stories;
  4. the analysis (storyjax.experiment_analysis) and its report (storyjax.experiment_report).
Every student writes from the same held-out openings with the same sampling keys (evaluate.seed), so
before and after are compared story by story. Held-out stories are graded by the judge (storyjax.judge), not
by the teacher the student learned from; the training teacher's own view sits beside it.
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np
from absl import logging

from storyjax import checkpoint as ckpt_lib
from storyjax import evaluate, gate0, interactive, judge as judge_lib, preemption, pretrain, reward, run_outputs, stats
from storyjax import experiment_analysis as analysis
from storyjax import experiment_report as report
from storyjax import ledger as ledger_lib
from storyjax.interactive_logs import read_batch_stats
from storyjax.prompts import story_openings
from storyjax.teachers import PAIRWISE, make_teacher
from storyjax.teachers.base import GradingCancelled


def validate(config: ml_collections.ConfigDict) -> None:
    ex = config.experiment
    if config.init_checkpoint and not os.path.isdir(config.init_checkpoint):
        raise ValueError(f"init_checkpoint={config.init_checkpoint!r} is not a folder: give the pretraining run's "
                         "--workdir, or leave it empty to pretrain here.")
    if config.judge.mode not in ("absolute", "pairwise"):
        raise ValueError(f"judge.mode={config.judge.mode!r}: choose 'absolute' or 'pairwise'.")
    if not ex.milestones or not ex.seeds:
        raise ValueError("experiment.milestones and experiment.seeds must each name at least one (e.g. "
                         "--config.experiment.milestones='(\"chck_50K\",)' --config.experiment.seeds='(0,)').")
    if not 0 < ex.kl_band < 1:
        raise ValueError(f"experiment.kl_band={ex.kl_band}: give the band around rl.kl_target as a fraction in "
                         "(0, 1), e.g. 0.5 for target ± 50%.")
    if len(set(ex.seeds)) != len(ex.seeds):
        raise ValueError(f"experiment.seeds={tuple(ex.seeds)} repeats a seed: each run must differ.")
    for name in ex.milestones:
        try:
            ckpt_lib.milestone_words(name)
        except ValueError:
            raise ValueError(f"experiment.milestones: {name!r} is not a milestone name like chck_50K or "
                             "chck_20M.") from None
    if not config.init_checkpoint:
        missing = [m for m in ex.milestones if m not in pretraining_milestones(config)]
        if missing:
            raise ValueError(f"experiment.milestones {missing} are not among the pretraining run's milestones "
                             f"{pretraining_milestones(config)}: add their word counts to "
                             "pretrain.ledger.milestones, or pretrain on more words.")
        pretrain.validate(config.pretrain)
    controls = tuple(ex.get("controls", ()))
    for control in controls:
        if not reward.check_control(control, "experiment.controls"):
            raise ValueError("experiment.controls: '' is the RL run itself, not a control; name control runs from "
                             f"{reward.CONTROLS[1:]} (or () for none).")
    if len(set(controls)) != len(controls):
        raise ValueError(f"experiment.controls={controls}: name each control run once.")
    if controls and ex.control_milestone not in ex.milestones:
        raise ValueError(f"experiment.control_milestone={ex.control_milestone!r}: the controls run from one of "
                         f"experiment.milestones {tuple(ex.milestones)}.")
    if not (isinstance(ex.gate0_stories, int) and ex.gate0_stories >= 8):
        raise ValueError(f"experiment.gate0_stories={ex.gate0_stories}: gate 0 needs at least 8 real stories and "
                         "their shuffles (64 is usual).")
    if not (ex.bootstrap >= 100):
        raise ValueError(f"experiment.bootstrap={ex.bootstrap}: give at least 100 replicates (2000 is usual).")
    limits = ex.monitor
    if not (0 < limits.max_distinct2_drop < 1 and 0 < limits.max_repeat_rise < 1 and 0 < limits.max_skeleton_rise < 1):
        raise ValueError("experiment.monitor: max_distinct2_drop, max_repeat_rise and max_skeleton_rise are shares "
                         "in (0, 1), e.g. 0.2, 0.1, 0.2.")
    story_openings(config.evaluate.stories.openings, config.evaluate.stories.num_openings,
                   (config.interactive.prompt,), config.interactive.prompt)
    if config.evaluate.stories.num_openings < 2 and config.evaluate.stories.openings != "training":
        raise ValueError(f"evaluate.stories.num_openings={config.evaluate.stories.num_openings}: the experiment "
                         "compares students on held-out openings; give at least 2 (intervals cluster by opening).")
    if config.evaluate.stories.openings == "training" and config.evaluate.stories.per_opening < 2:
        raise ValueError("evaluate.stories.openings=training: give evaluate.stories.per_opening >= 2 stories of the "
                         "training prompt (the paper-style evaluation: 256 or more; intervals resample their keys).")
    if config.judge.mode == "pairwise" and judge_lib.resolved(config).name not in PAIRWISE:
        raise ValueError(f"judge.mode=pairwise needs a judge that compares two stories ({PAIRWISE}); "
                         f"judge.name={judge_lib.resolved(config).name!r} does not.")
    if ex.positive_seeds and (ex.positive_teacher not in ("tales", "rubric") or not ex.control_milestone):
        raise ValueError(f"experiment.positive_teacher={ex.positive_teacher!r}: the positive control learns from a "
                         "teacher known to be right about the students' world: 'tales' (the tales corpus's grammar), "
                         "from experiment.control_milestone.")
    positive = ("positive",) if ex.positive_seeds else ()
    for kind in ("rl", *controls, *positive):  # each kind of run as it will start (its pretraining may not exist)
        start = config.init_checkpoint
        interactive.validate(_rl_config(config, ex.milestones[0] if start else "", ex.seeds[0], start, kind))
    evaluate.validate(_evaluate_config(config, "."), weights=not config.get("ledger_only", False), student=False)


def pretraining_milestones(config) -> list[str]:
    words = config.pretrain.ledger.milestones or ledger_lib.BABYLM_MILESTONES  # (): BabyLM's schedule
    return [ledger_lib.milestone_name(int(w)) for w in words]


def _done(workdir: str) -> bool:
    return os.path.exists(os.path.join(workdir, "summary.json"))


def _read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _rl_config(config, milestone: str, seed: int, pretrain_dir: str, kind: str = "rl") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(config.interactive.to_dict())
    c.job, c.auto_pretrain = "interactive", False
    c.init_checkpoint, c.init_milestone, c.seed = pretrain_dir, milestone, int(seed)
    c.progress_bar = config.progress_bar
    # The runs' own held-out scores are off: the experiment judges every student itself, pairs included.
    c.judge = ml_collections.ConfigDict({**config.judge.to_dict(), "mode": "absolute"})
    c.reward.control = "" if kind in ("rl", "positive") else kind
    if kind == "positive":  # the same run, taught by a teacher known to be right about this world
        c.teacher.name = config.experiment.positive_teacher
    c.ledger_only = bool(config.get("ledger_only", False))  # a dry run reports missing weights, not refuses
    return c


def plan(config) -> list[tuple[str, str, int]]:
    """(kind, milestone, seed) of every interactive run: RL from each milestone, the controls and the positive
    control (its own seeds) from one."""
    ex = config.experiment
    runs = [("rl", m, int(s)) for m in ex.milestones for s in ex.seeds]
    runs += [(kind, ex.control_milestone, int(s)) for kind in ex.get("controls", ()) for s in ex.seeds]
    return runs + [("positive", ex.control_milestone, int(s)) for s in ex.positive_seeds]


def run_name(kind: str, milestone: str, seed: int) -> str:
    return f"{milestone}_s{seed}" + ("" if kind == "rl" else f"_{kind}")


def _evaluate_config(config, checkpoint: str) -> ml_collections.ConfigDict:
    """How every student is evaluated: the `evaluate` section, graded by the judge, perplexity on the
    pretraining corpus, never on the opening it learned from."""
    c = ml_collections.ConfigDict(config.evaluate.to_dict())
    c.job, c.checkpoint, c.init_from_hf, c.progress_bar = "evaluate", checkpoint, "", False
    c.teacher = judge_lib.resolved(config)
    c.data = config.pretrain.data
    c.stories.exclude = (config.interactive.prompt,)
    c.stories.prompt = config.interactive.prompt  # stories.openings=training: the paper's evaluation
    return c


def _evaluate(config, checkpoint: str, out: str) -> analysis.Student:
    """One student's evaluation (judge-graded held-out stories, perplexity, BLiMP), run once."""
    if not _done(out):
        evaluate.run(_evaluate_config(config, checkpoint), out)
    with open(os.path.join(out, "eval", "stories.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return analysis.Student(records, _student_row(_read(os.path.join(out, "summary.json"))))


class PairwiseJudge:
    """judge.mode=pairwise: the judge, loaded once on first use, asked which of two students' stories from
    the same opening and key is the better (both orders); each comparison is written once (pairwise.json and
    pairwise.jsonl beside the student's evaluation) and read back on a rerun."""

    def __init__(self, config, workdir: str):
        self.config, self.workdir, self.judge = config, workdir, None
        self.on = config.judge.mode == "pairwise"

    def compare(self, student: analysis.Student, reference: analysis.Student, out: str):
        if not self.on:
            return None
        path = os.path.join(out, "pairwise.json")
        if os.path.exists(path):
            return _read(path)
        if [r["prompt"] for r in student.records] != [r["prompt"] for r in reference.records]:
            raise ValueError(f"{out}: the two students' held-out stories do not pair up (different openings); "
                             "evaluate both with the same evaluate.stories settings.")
        openings = student.openings_N
        try:
            prefs = self.teacher().prefer(openings, [r["story"] for r in student.records],
                                      [r["story"] for r in reference.records])
        except GradingCancelled:
            raise preemption.Preempted("SIGTERM while stories were being judged in pairs; rerun to resume.") from None
        # Consistent hard wins (a pair whose two orders disagree counts 1/2): a judge that always picks one
        # slot then sits at 0.5 with its inconsistency in plain view, not at 0.5 from averaged probabilities.
        verdicts = stats.hard_wins(prefs.p_a_first_B, prefs.p_a_second_B)
        result = {**stats.win_rate(verdicts, student.clusters_N),
                  "soft_win_rate": stats.win_rate(prefs.p_a_B, student.clusters_N)["win_rate"],
                  "position": stats.position_bias(prefs.p_a_first_B, prefs.p_a_second_B),
                  "verdicts": [_json_float(v) for v in verdicts]}
        number = lambda x: _json_float(float(x))
        run_outputs.write_text(os.path.join(out, "pairwise.jsonl"), "".join(
            json.dumps({"opening": o, "a": r["story"], "b": b["story"], "p_a": number(p), "p_a_first": number(f),
                        "p_a_second": number(g), "verdict": _json_float(v)}) + "\n"
            for o, r, b, p, f, g, v in zip(openings, student.records, reference.records, prefs.p_a_B,
                                           prefs.p_a_first_B, prefs.p_a_second_B, verdicts)))
        run_outputs.write_json(path, result)
        return result

    def teacher(self):
        """The judge, loaded on first use (gate 0 grades with it too)."""
        if self.judge is None:
            os.makedirs(os.path.join(self.workdir, "judge"), exist_ok=True)
            self.judge = make_teacher(judge_lib.resolved(self.config), os.path.join(self.workdir, "judge"))
        return self.judge

    def close(self):
        if self.judge is not None:
            self.judge.close()


def _json_float(x):
    """A float for JSON, None for NaN (unscorable)."""
    return float(x) if x == x else None


class TeacherView:
    """`experiment.teacher_view`: the training teacher's own grades of every student's held-out stories
    (teacher_view.json beside its evaluation; loaded once, on first use). The student learned this grader, so
    a rise under it is no evidence of better stories; beside the judge's it tells a blind judge (both flat
    where the stories changed) from a hacked teacher (the teacher's up, the judge's down)."""

    def __init__(self, config, workdir: str):
        self.config, self.workdir, self.teacher = config, workdir, None
        self.on = bool(config.experiment.get("teacher_view", False))

    def sums(self, student: analysis.Student, out: str):
        if not self.on:
            return None
        path = os.path.join(out, "teacher_view.json")
        if not os.path.exists(path):
            if self.teacher is None:
                os.makedirs(os.path.join(self.workdir, "teacher_view"), exist_ok=True)
                self.teacher = make_teacher(self.config.interactive.teacher, os.path.join(self.workdir, "teacher_view"))
            try:
                grades = self.teacher.grade_batch(student.openings_N, [r["story"] for r in student.records])
            except GradingCancelled:
                raise preemption.Preempted("SIGTERM while the teacher graded held-out stories; rerun to resume.") from None
            run_outputs.write_json(path, {"teacher": self.teacher.name, "sums": [
                float(row.sum()) if np.isfinite(row).all() else None for row in grades.scores_Bx3]})
        return np.asarray([np.nan if x is None else x for x in _read(path)["sums"]], np.float64)

    def close(self):
        if self.teacher is not None:
            self.teacher.close()


def _student_row(summary: dict) -> dict:
    st = summary.get("stories") or {}
    return {"heldout": (st.get("sum") or {}).get("mean"), "heldout_ci95": (st.get("sum") or {}).get("ci95"),
            "heldout_n": (st.get("sum") or {}).get("n"), "words_per_story": st.get("mean_words"),
            "distinct_2": st.get("distinct_2"), "repetition": st.get("repetition_rate"),
            "ppl_per_word": (summary.get("perplexity") or {}).get("ppl_per_word"),
            "blimp": (summary.get("blimp") or {}).get("overall")}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    if config.get("ledger_only"):
        return dry_run(config, workdir)
    pretrain_dir = os.path.abspath(config.init_checkpoint) if config.init_checkpoint else \
        os.path.join(workdir, "pretrain")
    if not config.init_checkpoint and not _done(pretrain_dir):
        logging.info("Experiment 1/4: pretraining with milestones %s in %s", pretraining_milestones(config),
                     pretrain_dir)
        pretrain.run(config.pretrain, pretrain_dir)
    with ckpt_lib.Checkpoints(pretrain_dir) as ckpts:
        milestones = ckpts.milestones()
    missing = [m for m in config.experiment.milestones if m not in milestones]
    if missing:
        raise ValueError(f"{pretrain_dir} has no milestones {missing}; it has {milestones}.")
    milestones = sorted(milestones, key=ckpt_lib.milestone_words)
    pairs, view = PairwiseJudge(config, workdir), TeacherView(config, workdir)
    try:
        before = _pretraining_curve(config, pretrain_dir, workdir, milestones, pairs, view)
        passed = gate0.for_experiment(config, workdir, analysis.curve_check(before), before, pairs.teacher)
        if not passed["passes"] and config.experiment.gate0:
            return _stopped_at_gate0(workdir, config, passed)
        runs = _interactive_runs(config, pretrain_dir, workdir, before, pairs, view)
    finally:
        pairs.close()
        view.close()

    logging.info("Experiment 4/4: table, plot and headline in %s", workdir)
    curve = [(ckpt_lib.milestone_words(m), s.row["heldout"]) for m, s in before.items() if s.row["heldout"] is not None]
    table, per_run = analysis.rows(curve, before, runs, config)
    curve_check = analysis.curve_check(before)
    verdict = analysis.gates(curve_check, table, config.experiment.control_milestone)
    run_outputs.write_csv(os.path.join(workdir, "runs.csv"), [{**r, "flags": "; ".join(r["flags"])} for r in per_run])
    report.write(workdir, config, table, curve, before, curve_check, verdict, judge_lib.describe(config))
    summary = {"job": "experiment", "pretrain": pretrain_dir, "judge": judge_lib.describe(config),
               "judge_mode": config.judge.mode,
               "teacher": config.interactive.teacher.name, "milestones": list(config.experiment.milestones),
               "seeds": list(config.experiment.seeds), "controls": list(config.experiment.get("controls", ())),
               "rows": table, "runs": per_run, "curve": curve, "curve_check": curve_check, "gates": verdict,
               "gate0": passed,
               "outputs": [os.path.join(workdir, f) for f in report.OUTPUTS]}
    run_outputs.write_summary(workdir, summary)
    return summary


def _stopped_at_gate0(workdir: str, config, result: dict) -> dict:
    summary = {"job": "experiment", "stopped": "gate 0", "gate0": result, "judge": judge_lib.describe(config),
               "judge_mode": config.judge.mode, "outputs": [os.path.join(workdir, "gate0.json")]}
    run_outputs.write_summary(workdir, summary)
    return summary


def _pretraining_curve(config, pretrain_dir: str, workdir: str, milestones: list[str], pairs: PairwiseJudge,
                       view: TeacherView) -> dict[str, analysis.Student]:
    logging.info("Experiment 2/4: evaluating the %d pretraining milestones (the pretraining-only curve), "
                 "held-out stories graded by the judge: %s", len(milestones), judge_lib.describe(config))
    before = {}
    for m in milestones:
        out = os.path.join(workdir, "eval", "pretrain", m)
        before[m] = _evaluate(config, os.path.join(pretrain_dir, "milestones", m), out)
        before[m].teacher_sums_N = view.sums(before[m], out)
        if m != milestones[0]:
            before[m].pairwise = pairs.compare(before[m], before[milestones[0]], out)
        logging.info("  %s: held-out %s ± %s of 9%s", m, analysis.fmt(before[m].row["heldout"]),
                     analysis.fmt(before[m].row["heldout_ci95"]), _wins_words(before[m].pairwise, milestones[0]))
    return before


def _interactive_runs(config, pretrain_dir: str, workdir: str, before: dict, pairs: PairwiseJudge,
                      view: TeacherView) -> list:
    todo, runs = plan(config), []
    for i, (kind, m, seed) in enumerate(todo):
        name = run_name(kind, m, seed)
        rl_dir = os.path.join(workdir, "rl", name)
        if not _done(rl_dir):
            logging.info("Experiment 3/4: interactive run %d of %d (%s), from %s with seed %d (%d counted words)",
                         i + 1, len(todo), kind, m, seed, config.interactive.budget_words)
            interactive.run(_rl_config(config, m, seed, pretrain_dir, kind), rl_dir)
        out = os.path.join(workdir, "eval", "rl", name)
        student = _evaluate(config, rl_dir, out)
        student.pairwise = pairs.compare(student, before[m], out)
        student.teacher_sums_N = view.sums(student, out)
        stats_rows = read_batch_stats(os.path.join(rl_dir, "batch_stats.csv"))
        runs.append(analysis.Run(kind, m, ckpt_lib.milestone_words(m), seed, _read(os.path.join(rl_dir, "summary.json")),
                                 [r["kl"] for r in stats_rows], student))
        logging.info("  %s: held-out %s ± %s of 9 (from %s)%s", name, analysis.fmt(student.row["heldout"]),
                     analysis.fmt(student.row["heldout_ci95"]), analysis.fmt(before[m].row["heldout"]),
                     _wins_words(student.pairwise, m))
    return runs


def _wins_words(pairwise, reference: str) -> str:
    if not pairwise:
        return ""
    return f"; preferred to {reference}'s stories {analysis.fmt(pairwise['win_rate'])} ± {analysis.fmt(pairwise['ci95'])}"


def closing_words(summary: dict, workdir: str) -> str:
    if summary.get("ledger_only"):
        return report.plan_words(summary)
    if summary.get("stopped") == "gate 0":
        return (gate0.words(summary["gate0"]) + " The judge cannot see what more pretraining, or a story's own "
                "order, does to these stories, so nothing it said of interactive learning would count: the "
                "experiment stopped before any interactive run (set --config.experiment.gate0=False to run it "
                f"anyway, reported as unvalidated). {workdir}/gate0.json holds the figures.")
    return report.closing_words(summary, workdir)


def dry_run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """`ledger_only`: every piece checked as configured and the work laid out (runs, steps, stories, counted
    words, the models each phase loads), nothing trained or loaded."""
    runs = plan(config)
    ledger = interactive.fresh_ledger(_rl_config(config, runs[0][1], runs[0][2], ".", "rl"))
    ledger_lib.dry_run(ledger, config.interactive.batch_size)
    judge, teacher = judge_lib.resolved(config), config.interactive.teacher
    models = {"teacher": _model_needs(teacher, "interactive.teacher"), "judge": _model_needs(judge, "judge")}
    missing = [f"{key}.jax.weights ({what})" for key, what in (("interactive.teacher", models["teacher"]),
                                                           ("judge", models["judge"]))
               if "not set" in what or "not on this machine" in what]
    n_eval = len(pretraining_milestones(config)) + len(runs)
    stories_per_student = config.evaluate.stories.num_openings * config.evaluate.stories.per_opening
    summary = {"job": "experiment", "ledger_only": True, "pretraining_milestones": pretraining_milestones(config),
               "runs": [run_name(*r) for r in runs],
               "per_run": {"steps": ledger.steps, "stories": ledger.stories, "input_words": ledger.input_words},
               "students_evaluated": n_eval, "heldout_stories_per_student": stories_per_student,
               "pairs_judged": (n_eval - 1) * stories_per_student if config.judge.mode == "pairwise" else 0,
               "models": models, "missing": missing, "judge": judge_lib.describe(config)}
    run_outputs.write_summary(workdir, summary)
    return summary


def _model_needs(cfg, key: str) -> str:
    if cfg.name == "jax":
        weights = cfg.jax.weights
        if not weights:
            return f"in-process jax, {key}.jax.weights not set"
        size = (f", {os.path.getsize(weights) / 2**30:.2f} GiB on disk" if os.path.isfile(weights) else
                ", a folder" if os.path.isdir(weights) else ", not on this machine")
        return f"in-process jax: {weights}{size}"
    if cfg.name == "openai":
        return f"OpenAI-compatible server {cfg.openai.base_url} serving {cfg.openai.model}"
    return cfg.name
