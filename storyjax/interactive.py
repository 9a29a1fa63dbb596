"""Interactive learning: the student writes stories, the teacher grades them, REINFORCE learns from the grades.

One step, in phase order: sample a batch from the prompt (jitted sampler) → decode it to text → the
teacher grades it [B,3] → the step's record (storyjax.step_record): which stories were graded, their
counted words and each story's reward (storyjax.reward, on the host) → the ledger charges what the
student takes in → the jitted REINFORCE step updates → the record is logged. The RNG of step k is `fold_in(key(seed), k)` and
everything else that evolves (params, optimizer, EMA baseline, KL coefficient, ledger) is in the
checkpoint, so a killed run resumes exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from typing import Any, Callable, Optional

import jax
import numpy as np
from absl import logging

from storyjax import blimp, distributed, export, heldout, reinforce, run_loop, run_outputs, sampler
from storyjax import settings_record, stats, step_record
from storyjax import stories
from storyjax import checkpoint as ckpt_lib
from storyjax import judge as judge_lib
from storyjax import ledger as ledger_lib
from storyjax import student as student_lib
from storyjax import teacher_health
from storyjax import tokenizer as tokenizer_lib
from storyjax.interactive_logs import PhaseClock, RunLogs
from storyjax.interactive_settings import InteractiveSettings
from storyjax.prompts import heldout_openings
from storyjax.setting_checks import finite
from storyjax.teachers import kinds, make_teacher
from storyjax.teachers.grader_settings import GraderSettings
from storyjax.teachers.settings import parse as parse_grader
from storyjax.grades import CRITERIA


def parse(config, **per_run) -> InteractiveSettings:
    """The run's settings as a checked record (`config`: configs/interactive.py's ConfigDict, or an
    experiment's interactive section with `per_run` settings); refuses settings no run can use, before any
    work or any file is written."""
    if "distributed" in config:
        distributed.check(config.distributed)
    return check(InteractiveSettings.from_config(config, **per_run))


def check(s: InteractiveSettings) -> InteractiveSettings:
    """`s` if a run can use it (also a record composed with `dataclasses.replace`), else a one-line refusal."""
    checks = [
        (s.batch_size >= 1, f"batch_size={s.batch_size}: give at least 1 story per step (paper: 360)"),
        (bool(s.prompt.strip()), "prompt is empty: give the opening every story continues, e.g. the paper's "
                                 "(storyjax.prompts.PAPER_PROMPT)"),
        (s.budget_words >= 1, f"budget_words={s.budget_words}: give a positive word budget"),
        (s.max_steps >= 0, f"max_steps={s.max_steps}: use 0 (until the budget is spent) or more"),
        (s.checkpoint_every_steps >= 1, f"checkpoint_every_steps={s.checkpoint_every_steps}: use 1 or more"),
        (s.log_every >= 1, f"log_every={s.log_every}: use 1 or more"),
        (s.seed >= 0, f"seed={s.seed}: use a seed >= 0"),
        (not s.init_from_hf or os.path.isdir(s.init_from_hf),
         f"init_from_hf={s.init_from_hf!r} is not a folder: give a transformers GPT-2 folder"),
        (not s.init_milestone or s.init_checkpoint,
         f"init_milestone={s.init_milestone!r} needs --config.init_checkpoint=PRETRAIN_WORKDIR"),
        (s.charge_prompt in ("once", "per_story"), f"charge_prompt={s.charge_prompt!r}: use 'once' (the paper: the "
                                                   "prompt counted with the first batch) or 'per_story'"),
        (s.compute_dtype in ("float32", "bfloat16"), f"compute_dtype={s.compute_dtype!r}: use float32 or bfloat16"),
        (s.generated_words_cap >= 1, f"generated_words_cap={s.generated_words_cap}: use 1 or more words"),
        (s.milestone_every_words >= 0, f"milestone_every_words={s.milestone_every_words}: use 0 (none) or a word "
                                       "count"),
        (s.heldout.num_openings >= 0 and s.heldout.stories_per_opening >= 1,
         "heldout.num_openings must be >= 0 and heldout.stories_per_opening >= 1"),
        (finite(s.rl.lr) and s.rl.lr > 0, f"rl.lr={s.rl.lr}: use a positive learning rate"),
        (s.judge.mode != "pairwise" or (s.judge.kind in kinds.pairwise() and s.heldout.num_openings > 0),
         "judge.mode=pairwise needs a judge that compares stories (judge.name=jax with judge.jax.weights, or rubric) "
         "and held-out stories to compare (heldout.num_openings > 0)"),
        (not distribution_reward(s.teacher) or s.teacher.jax.allow_distribution_reward,
         "teacher.jax.grading='expected' rewards the student with the teacher's output distribution, which BabyLM's "
         "rules forbid: use teacher.jax.grading=sample (the paper's, at temperature 0.2) or greedy, or set "
         "teacher.jax.allow_distribution_reward=True to run it anyway (the summary will say so)"),
    ]
    settings_record.problems(checks + [(False, why) for why in sampler.setting_problems(s.sampling)])
    _check_start(s)
    return s


def _check_start(s: InteractiveSettings) -> None:
    """The openings, the student named to start from, the judge and the BLiMP folder."""
    heldout_openings(s.heldout.num_openings, (s.prompt,))
    parse_grader(s.teacher, "teacher", weights=not s.ledger_only)
    parse_grader(s.judge, "judge", weights=not s.ledger_only)
    if s.init_checkpoint:  # RUN/milestones/chck_N (as evaluate takes) names its milestone itself
        named = ckpt_lib.check_student_path(s.init_checkpoint)[1]
        if named and s.init_milestone and s.init_milestone != named:
            raise ValueError(f"init_checkpoint={s.init_checkpoint} names milestone {named} "
                             f"but init_milestone={s.init_milestone}: give one of them.")
    blimp.check_dir(s.milestone_eval.blimp_dir)
    judge_lib.check(s.judge, s.teacher)


def distribution_reward(teacher: GraderSettings) -> bool:
    """Whether the teacher's settings reward the student with its output distribution (its kind says)."""
    return teacher.kind in kinds.KINDS and kinds.KINDS[teacher.kind].rewards_distribution(teacher)


def needs_pretraining(config) -> bool:
    """Whether the run starts by pretraining its student (the quickstart: `auto_pretrain` and no student
    named); `main` then hands `run` the pretraining job."""
    return not (config.init_checkpoint or config.init_from_hf) and bool(config.auto_pretrain)


def student_source(config: InteractiveSettings, workdir: str,
                   pretrain: Optional[Callable[[str], Any]] = None) -> tuple[str, str]:
    """(run directory, milestone) of the student to start from: a storyjax run, an imported transformers
    folder, or, with none named, the embedded pretraining run `pretrain(directory)` (handed over by main)."""
    if config.init_from_hf:
        if config.init_checkpoint:
            raise ValueError("give one student to start from: --config.init_checkpoint (a storyjax run) or "
                             "--config.init_from_hf (a transformers folder), not both.")
        run_dir = os.path.join(workdir, "hf_init")
        if distributed.is_primary():
            export.import_as_run(config.init_from_hf, run_dir)
        distributed.barrier("imported")
        return run_dir, ""
    if config.init_checkpoint:  # student.from_run splits RUN/milestones/chck_N (`check` made sure it agrees)
        return config.init_checkpoint, config.init_milestone
    if not needs_pretraining(config):
        raise ValueError("this preset starts from a pretraining run: give --config.init_checkpoint=PRETRAIN_WORKDIR "
                         "(and --config.init_milestone=chck_90M or another milestone of it).")
    if pretrain is None:
        raise ValueError("this run pretrains its student first (auto_pretrain, no init_checkpoint): start it with "
                         "`python -m storyjax.main`, or give --config.init_checkpoint=PRETRAIN_WORKDIR.")
    pre_dir = os.path.join(workdir, "pretrain")
    logging.info("No init_checkpoint: pretraining the student first (config.pretrain, in %s).", pre_dir)
    pretrain(pre_dir)
    return pre_dir, ""


def milestone_eval(config: InteractiveSettings, student: student_lib.Student, sample, params, teacher, judge=None) -> dict:
    """The evaluations `config.milestone_eval` asks for at a milestone: held-out stories, BLiMP."""
    record = {}
    if config.milestone_eval.heldout and config.heldout.num_openings:  # every process takes part (broadcast)
        held = heldout.heldout_score(config, sample, params, student.tok, teacher, judge)
        record.update({"heldout_score": held["score"], **{c: held[c] for c in CRITERIA},
                       "heldout_unscorable": held["unscorable"], "judge_score": held["judge"]["score"]})
    record.update(blimp.milestone_record(student.model_cfg, params, student.tok, config.milestone_eval.blimp_dir))
    return record


def fresh_ledger(config: InteractiveSettings) -> ledger_lib.WordBudget:
    ledger = ledger_lib.WordBudget(
        budget_words=config.budget_words, prompt_words=tokenizer_lib.count_words(config.prompt),
        charge_prompt=config.charge_prompt, generated_cap=config.generated_words_cap,
        milestone_every=config.milestone_every_words)
    ledger.check_first_batch(config.batch_size)
    return ledger


def dry_run(config: InteractiveSettings, workdir: str) -> dict:
    """`ledger_only`: the word budget played out, nothing trained."""
    ledger = fresh_ledger(config)
    ledger_lib.dry_run(ledger, config.batch_size)
    summary = {"job": "interactive", "ledger_only": True, "steps": ledger.steps, "stories": ledger.stories,
               "input_words": ledger.input_words, "budget_words": ledger.budget_words,
               "milestones": [ledger_lib.milestone_name(m) for m in ledger.due_milestones()]}
    run_outputs.write_summary(workdir, summary)
    return summary


def run(config, workdir: str, pretrain: Optional[Callable[[str], Any]] = None) -> dict:
    """The job's entry (configs/interactive.py): its settings parsed, then `run_settings`. `pretrain(directory)`:
    the embedded pretraining job, for a run that starts by pretraining its student."""
    return run_settings(parse(config), workdir, pretrain)


def run_settings(config: InteractiveSettings, workdir: str, pretrain: Optional[Callable[[str], Any]] = None) -> dict:
    """An interactive run from its parsed settings (the job, or one run of an experiment)."""
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    if config.ledger_only:
        return dry_run(config, workdir)
    ledger = fresh_ledger(config)  # refuses a first batch the budget cannot pay for, before any work
    blimp.check_dir(config.milestone_eval.blimp_dir)
    with contextlib.ExitStack() as stack:
        # Fails here, before any work, if the teacher is unusable. Several processes: process 0 grades for
        # all, or each process its share of every batch (teacher.shard_across_hosts).
        shard = config.teacher.shard_across_hosts and jax.process_count() > 1
        teacher = (make_teacher(config.teacher, workdir, jax.process_index())
                   if shard or distributed.is_primary() else None)
        if teacher is not None:
            stack.callback(teacher.close)
        # The judge grades held-out stories only: with none (an experiment judges its students itself) it is
        # not loaded.
        judge = judge_lib.make(config.judge, config.teacher, workdir, teacher, distributed.is_primary()) \
            if config.heldout.num_openings else None
        if judge is not None and judge is not teacher:
            stack.callback(judge.close)
        student = student_lib.from_run(*student_source(config, workdir, pretrain), compute_dtype=config.compute_dtype)
        run = stack.enter_context(run_loop.Run(workdir, keep=2, on_sigterm=teacher.cancel if teacher else None))
        loop = Loop(config, student, teacher, judge, run, ledger)
        loop.check_run_meta()
        state, step, extra = loop.start()
        state, step = loop.train(state, step, extra)
        heldout_end = loop.heldout(state.params, "after")
        pairwise = heldout.heldout_pairwise(config, judge, extra["heldout_start"], heldout_end)
    return loop.summary(state, step, extra, heldout_end, teacher.name if teacher is not None else config.teacher.name,
                        pairwise)


class Loop:
    """Interactive learning in a run: steps, their logs, checkpoints, milestones, held-out scores."""

    def __init__(self, config: InteractiveSettings, student: student_lib.Student, teacher, judge, run: run_loop.Run,
                 ledger: ledger_lib.WordBudget):
        self.config, self.student, self.teacher, self.judge, self.run = config, student, teacher, judge, run
        B = config.batch_size
        self.prompts = [config.prompt] * B
        self.prompt_BxP, self.valid_BxP = stories.encode_prompts(student.tok, self.prompts)
        sampler.check_lengths(student.model_cfg, self.prompt_BxP.shape[1], config.sampling.max_new_tokens)
        heldout.check_openings_fit(student.model_cfg, student.tok,
                                   heldout_openings(config.heldout.num_openings, (config.prompt,)),
                                   config.sampling.max_new_tokens)
        self.rl = config.rl
        self.optimizer = reinforce.make_optimizer(self.rl)
        self.reward = config.reward
        self.rl_step = reinforce.make_step(student.model_cfg, self.rl, self.optimizer)
        self.sample = stories.make_sample_fn(config.sampling, student.model_cfg, student.tok)
        self.health = teacher_health.TeacherHealth.from_config(config.teacher)
        self.logs = RunLogs(run.out)
        self.clock = PhaseClock()
        self.ledger = ledger  # fresh; replaced by the checkpoint's in `start` on resume
        self.t0 = time.time()
        # Several processes each hold their own single-device copy: checkpoint host copies (orbax then
        # writes them from process 0) rather than arrays that look like shards of one global array.
        self.saved = (lambda tree: tree) if jax.process_count() == 1 else jax.device_get

    def check_run_meta(self) -> None:
        s, c = self.student, self.config
        meta = {"student": s.model_cfg.shape_dict(), "tokenizer_sha256": s.tok.sha256, "init": s.source,
                "init_milestone": s.milestone, "prompt": c.prompt, "batch_size": c.batch_size, "seed": c.seed}
        distributed.primary_first("run meta", lambda: ckpt_lib.check_run_meta(self.run.workdir, meta))

    def heldout(self, params, when: str) -> dict:
        held = heldout.heldout_score(self.config, self.sample, params, self.student.tok, self.teacher, self.judge)
        if held:
            logging.info("Held-out score %s learning: %s", when, heldout.heldout_words(held))
        return held

    def start(self):
        """(state, step, extra) of a fresh run (after its held-out score) or of the newest checkpoint."""
        fresh = reinforce.init_state(self.student.params, self.optimizer, self.rl)
        start = self.run.start(jax.eval_shape(lambda: fresh), self.ledger)
        self.ledger = start.ledger
        self.logs.truncate_after(start.step)  # rows past the checkpoint are rewritten identically on resume
        if start.state is None:
            return fresh, 0, {"heldout_start": self.heldout(self.student.params, "before")}
        logging.info("Resumed interactive learning at step %d (%d counted words).", start.step,
                     self.ledger.input_words)
        return start.state, start.step, start.extra

    def train(self, state, step: int, extra: dict):
        c, run = self.config, self.run
        run.progress(total=c.budget_words, initial=self.ledger.input_words, unit="word",
                     desc="counted input words", enabled=c.progress_bar)
        while (self.ledger.can_afford(c.batch_size) and not run.preempted
               and (not c.max_steps or step < c.max_steps)):
            stepped = self.step(state, step, extra)
            if stepped is None:  # SIGTERM during grading: this batch is neither charged nor applied
                break
            state, step = stepped, step + 1
            due = self.ledger.due_milestones()
            if due or step % c.checkpoint_every_steps == 0 or run.preempted:
                run.reach_milestones(step, self.ledger, due, self.saved(state), extra,
                                     lambda name, words: self.at_milestone(step, name, words, state))
                run.save_latest(step, self.saved(state), self.ledger, extra)
            self.clock.lap("rest")  # tables, logs, checkpoints, milestone evaluations
        if step == 0 and not run.preempted:
            raise ValueError("no interactive step ran; check budget_words and max_steps.")
        self.save_latest_once(step, state, extra)
        run.finish(step, self.ledger)
        return state, step

    def step(self, state, step: int, extra: dict):
        """sample → decode → grade → record (graded, words, reward) → charge → update → log; the new state,
        or None when SIGTERM cancelled the grading."""
        c, clock = self.config, self.clock
        clock.start()
        rng = jax.random.fold_in(jax.random.key(c.seed), step)
        samples = self.sample(state.params, self.prompt_BxP, self.valid_BxP, rng)
        full, texts = stories.decode(self.student.tok, self.prompts, self.prompt_BxP, self.valid_BxP, samples)
        clock.lap("sample")  # decoding waited for the device
        grades = stories.grade(self.teacher, self.prompts, full, c.teacher.shard_across_hosts)
        clock.lap("grade")
        if grades is None:
            return None
        record = step_record.make(full, texts, grades, samples, self.reward, c.seed, step, self.ledger.input_words)
        self.check_teacher(record.scored_B, step, state, extra)
        self.ledger.charge(c.batch_size, int(record.scored_B.sum()), int(record.words_B.sum()))
        state, metrics = self.rl_step(state, self.student.params, record.rollout(self.prompt_BxP, self.valid_BxP))
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        clock.lap("update")
        if not (math.isfinite(metrics["loss"]) and metrics.pop("state_finite")):
            raise self.run.diverged(step + 1, math.isfinite(metrics["loss"]), "--config.rl.lr")
        self.log(step + 1, record, metrics)
        return state

    def check_teacher(self, scored_B, step: int, state, extra: dict) -> None:
        """A teacher that stopped grading ends the run with its checkpoint written and nothing charged for the
        failed batch (a rerun redoes it)."""
        unhealthy = self.health.after_batch(scored_B)
        if not unhealthy:
            return
        self.save_latest_once(step, state, extra)
        self.run.ckpts.wait()
        last = getattr(self.teacher, "last_problem", "") if self.teacher is not None else ""
        self.run.out.audit("teacher_unhealthy", self.ledger, step=step, reason=unhealthy)
        raise teacher_health.TeacherUnhealthy(
            f"{unhealthy}; last teacher status: {last or 'answers that are not three grades 0-3'}. "
            f"Checkpoint of step {step} written and nothing charged for the failed batch. Fix the teacher "
            f"({kinds.get(self.config.teacher.kind).fix_dead(self.config.teacher, 'teacher')}; see "
            f"{self.run.workdir}/answers.jsonl) and rerun the same command to resume.")

    def save_latest_once(self, step: int, state, extra: dict) -> None:
        if self.run.ckpts.latest_step() != step:
            self.run.save_latest(step, self.saved(state), self.ledger, extra)

    def log(self, step: int, record: step_record.StepRecord, m: dict) -> None:
        c, ledger = self.config, self.ledger
        row = self.logs.write_step(step, c.prompt, record, m, ledger)
        self.run.bar.update(ledger.input_words - record.words_before)
        self.run.bar.set_postfix(step=step, reward=f"{row['reward_mean']:.3f}",
                                 teacher=f"{row['teacher_sum_mean']:.2f}/9")
        if step % c.log_every == 0 or step == 1:
            self.logs.tensorboard(step, {**row, **self.clock.last()})
            if not c.progress_bar:  # no bar: a line every log_every steps instead
                logging.info("step %d: %s of %s counted words, teacher %.2f/9, reward %.3f, KL %.3f", step,
                             f"{ledger.input_words:,}", f"{c.budget_words:,}", row["teacher_sum_mean"],
                             row["reward_mean"], m.get("kl", float("nan")))
            self.run.out.audit("step", ledger, step=step, reward=row["reward_mean"])

    def at_milestone(self, step: int, name: str, words: int, state) -> None:
        """The export and evaluations `config.export_hf` and `config.milestone_eval` ask for."""
        c, s = self.config, self.student
        if c.export_hf and run_outputs.is_writer():
            export.export_milestone(self.run.workdir, name, s.model_cfg, jax.device_get(state.params), s.tok,
                                    s.tok_dir)
        if c.milestone_eval.heldout or c.milestone_eval.blimp_dir:
            record = milestone_eval(c, s, self.sample, state.params, self.teacher, self.judge)
            self.run.out.milestone_eval(self.ledger, step, name, words, record)

    def summary(self, state, step: int, extra: dict, heldout_end: dict, teacher_name: str,
                pairwise: Optional[dict] = None) -> dict:
        c, ledger = self.config, self.ledger
        params = jax.device_get(state.params)
        distributed.barrier("logs written")  # process 0's last rows are in before anyone reads them
        history = self.logs.read_batch_stats()
        # The held-out stories themselves go to their own file, not into the summary's figures.
        start = {k: v for k, v in extra["heldout_start"].items() if k != "texts"}
        heldout_end = {k: v for k, v in heldout_end.items() if k != "texts"}
        if pairwise:
            run_outputs.write_text(os.path.join(self.run.workdir, "heldout_pairs.jsonl"),
                                   "".join(json.dumps(p) + "\n" for p in pairwise["pairs"]))
            pairwise = {"judge": judge_lib.describe(c.judge, c.teacher), **{k: v for k, v in pairwise.items() if k != "pairs"}}
        summary = {
            "job": "interactive", "steps": step, "stories": ledger.stories, "input_words": ledger.input_words,
            "generated_words": ledger.generated_words, "unscorable": ledger.unscorable,
            "budget_words": ledger.budget_words, "teacher": teacher_name,
            # Said wherever the figures stand: such a run does not follow BabyLM's rules.
            "reward_is_teacher_distribution": distribution_reward(c.teacher),
            "reward_control": c.reward.control or None,
            "heldout_score_start": start.get("score"), "heldout_score_end": heldout_end.get("score"),
            "heldout_start": start, "heldout_end": heldout_end,
            "judge": judge_lib.describe(c.judge, c.teacher),
            "judge_score_start": start.get("judge", {}).get("score"),
            "judge_score_end": heldout_end.get("judge", {}).get("score"),
            # judge.mode=pairwise: how often the judge preferred the story after learning to the one before
            # from the same opening and key (WORKDIR/heldout_pairs.jsonl holds every pair).
            "pairwise": pairwise,
            "train_teacher_sum_first10": float(np.mean([r["teacher_sum_mean"] for r in history[:10]])),
            "train_teacher_sum_last10": float(np.mean([r["teacher_sum_mean"] for r in history[-10:]])),
            "checkpoints": self.run.ckpts.milestones(), "seconds": time.time() - self.t0,
            # Where a step's wall-clock went (this invocation's steps): what overlapping the teacher with
            # device work could at most save is the smaller of "grade" and "sample" + "update".
            "seconds_per_step": self.clock.means(),
            "param_checksum": run_outputs.param_checksum(params),
        }
        return self.run.end(ledger, summary, step=step)


def closing_words(summary: dict, workdir: str) -> str:
    """What happened, in words, for the end of a run: the held-out before → after from the teacher and
    the judge with their intervals, and where to look next."""
    if summary.get("ledger_only"):
        return (f"Dry run of the word budget: {summary['steps']} steps, {summary['stories']:,} stories, "
                f"{summary['input_words']:,} counted words of {summary['budget_words']:,}; nothing was trained.")
    start, end = summary.get("heldout_start") or {}, summary.get("heldout_end") or {}
    lines = [f"Learned from {summary['stories']:,} stories ({summary['input_words']:,} counted words, "
             f"{summary['unscorable']} unscorable) in {summary['steps']} steps."]
    if end:
        lines.append(f"Held-out stories ({end.get('stories', 0)}), mean grade sum out of 9 with 95% intervals: "
                     f"training teacher ({summary['teacher']}) {stats.score_ci(start)} → {stats.score_ci(end)}; judge "
                     f"({summary.get('judge', '-')}) {stats.score_ci(start.get('judge') or {})} → "
                     f"{stats.score_ci(end.get('judge') or {})}."
                     + ("" if (end.get("judge") or {}).get("independent") else
                        " Only an independent judge (--config.judge.jax.weights=...) tells storytelling from "
                        "learning the teacher's blind spots."))
    pairwise = summary.get("pairwise") or {}
    if pairwise.get("after_wins"):
        wins = pairwise["after_wins"]
        lines.append(f"Judge {pairwise['judge']}, pairwise: the story after learning was the better in "
                     f"{wins['win_rate']:.2f} ± {wins['ci95']:.2f} of {wins['pairs']} held-out pairs (95% interval "
                     f"over {wins['clusters']} openings; 0.5 = no change; heldout_pairs.jsonl holds them).")
    lines.append(f"Outputs in {workdir}: summary.json, generated.csv (every story with its grades), "
                 f"batch_stats.csv, milestones/. Plots: python -m storyjax.report --workdir={workdir} "
                 f"--out={workdir}/report")
    return "\n".join(lines)
