"""Interactive learning: the student writes stories, the teacher grades them, REINFORCE learns from the grades.

One step: sample a batch from the prompt (jitted sampler) → check the word budget → teacher grades
[B,3] → ledger charges what the student takes in → rewards → jitted REINFORCE step. The RNG of step k
is `fold_in(key(seed), k)` and everything else that evolves (params, optimizer, EMA baseline, KL
coefficient, ledger) is in the checkpoint, so a killed run resumes exactly.
"""

from __future__ import annotations

import math
import os
import time
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from storyjax import checkpoint as ckpt_lib
from storyjax import ledger as ledger_lib
from storyjax import model as model_lib
from storyjax import distributed, preemption, reinforce, run_outputs, sampler, stats, teacher_health
from storyjax import judge as judge_lib
from storyjax import tokenizer as tokenizer_lib
from storyjax.interactive_logs import PhaseClock, RunLogs
from storyjax.prompts import HELDOUT_OPENINGS
from storyjax.teachers import NAMES, make_teacher
from storyjax.teachers.base import CRITERIA, Grades, GradingCancelled


def validate(config: ml_collections.ConfigDict) -> None:
    """Refuses settings no run can use, before any work or any file is written."""
    sp = config.sampling
    checks = [
        (config.batch_size >= 1, f"batch_size={config.batch_size}: give at least 1 story per step (paper: 360)"),
        (sp.max_new_tokens >= 1, f"sampling.max_new_tokens={sp.max_new_tokens}: the student must write at least "
                                 "1 token (paper: 90)"),
        (bool(config.prompt.strip()), "prompt is empty: give the opening every story continues, e.g. the "
                                      "paper's (storyjax.prompts.PAPER_PROMPT)"),
        (sp.temperature > 0, f"sampling.temperature={sp.temperature}: use a positive temperature (paper: 1.0)"),
        (sp.top_k >= 0 and 0 < sp.top_p <= 1, f"sampling.top_k={sp.top_k} (>= 0) or sampling.top_p={sp.top_p} "
                                              "(in (0, 1]) is out of range"),
        (config.budget_words >= 1, f"budget_words={config.budget_words}: give a positive word budget"),
        (config.max_steps >= 0, f"max_steps={config.max_steps}: use 0 (until the budget is spent) or more"),
        (config.checkpoint_every_steps >= 1, f"checkpoint_every_steps={config.checkpoint_every_steps}: use 1 or more"),
        (config.log_every >= 1, f"log_every={config.log_every}: use 1 or more"),
        (config.heldout.num_openings >= 0 and config.heldout.stories_per_opening >= 1,
         "heldout.num_openings must be >= 0 and heldout.stories_per_opening >= 1"),
        (math.isfinite(config.rl.lr) and config.rl.lr > 0, f"rl.lr={config.rl.lr}: use a positive learning rate"),
        (judge_lib.resolved(config).name in NAMES, f"judge.name={config.judge.name!r}: choose auto or one of "
                                                   f"{NAMES}"),
    ]
    problems = [why for ok, why in checks if not ok]
    if problems:
        raise ValueError("; ".join(problems) + ".")
    teacher_health.TeacherHealth.from_config(config.teacher)
    if not (config.init_checkpoint or config.init_from_hf) and config.auto_pretrain:
        from storyjax import pretrain
        pretrain.validate(config.pretrain)


def student_source(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, str]:
    """The pretraining run to start from; with none named, pretrain the embedded default first."""
    if config.init_from_hf:
        if config.init_checkpoint:
            raise ValueError("give one student to start from: --config.init_checkpoint (a storyjax run) or "
                             "--config.init_from_hf (a transformers folder), not both.")
        from storyjax import export
        run_dir = os.path.join(workdir, "hf_init")
        if distributed.is_primary():
            export.import_as_run(config.init_from_hf, run_dir)
        distributed.barrier("imported")
        return run_dir, ""
    if config.init_checkpoint:
        path = os.path.abspath(config.init_checkpoint)
        if os.path.basename(os.path.dirname(path)) == "milestones":  # RUN/milestones/chck_N, as evaluate takes
            if config.init_milestone and config.init_milestone != os.path.basename(path):
                raise ValueError(f"init_checkpoint={config.init_checkpoint} names milestone {os.path.basename(path)} "
                                 f"but init_milestone={config.init_milestone}: give one of them.")
            return os.path.dirname(os.path.dirname(path)), os.path.basename(path)
        return config.init_checkpoint, config.init_milestone
    if not config.auto_pretrain:
        raise ValueError("this preset starts from a pretraining run: give --config.init_checkpoint=PRETRAIN_WORKDIR "
                         "(and --config.init_milestone=chck_90M or another milestone of it).")
    from storyjax import pretrain
    pre_dir = os.path.join(workdir, "pretrain")
    logging.info("No init_checkpoint: pretraining a %s student on %s first (in %s).",
                 config.pretrain.model.preset, config.pretrain.data.name, pre_dir)
    pretrain.run(config.pretrain, pre_dir)
    return pre_dir, ""


def encode_prompts(tok, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded prompt ids and their validity mask."""
    ids = tok.encode(prompts)
    P = max(map(len, ids))
    toks, valid = np.full((len(ids), P), tok.pad_id, np.int32), np.zeros((len(ids), P), bool)
    for b, row in enumerate(ids):
        toks[b, P - len(row):], valid[b, P - len(row):] = row, True
    return toks, valid


def stories_of(tok, prompts: list[str], prompt_BxP, valid_BxP, samples: sampler.Samples):
    """(full stories, continuations) as text. Prompt and continuation are decoded together so the space
    between them survives (SentencePiece drops a leading space when a piece list is decoded alone)."""
    tokens, mask = np.asarray(samples.tokens_BxN), np.asarray(samples.mask_BxN)
    rows = [[int(t) for t, v in zip(p, pv) if v] + [int(t) for t, m in zip(r, k) if m and t != tok.eos_id]
            for p, pv, r, k in zip(np.asarray(prompt_BxP), np.asarray(valid_BxP), tokens, mask)]
    stories = tok.decode(rows)
    return stories, [s[len(p):] for s, p in zip(stories, prompts)]


def make_sample_fn(config, model_cfg, tok):
    def sample(params, prompt_BxP, valid_BxP, rng):
        return sampler.sample(model_cfg, params, jnp.asarray(prompt_BxP), jnp.asarray(valid_BxP), rng,
                              jnp.float32(config.sampling.temperature), jnp.int32(config.sampling.top_k),
                              jnp.float32(config.sampling.top_p), max_new_tokens=config.sampling.max_new_tokens,
                              eos_id=tok.eos_id, pad_id=tok.pad_id)
    return sample


def sample_stories(sample, params, tok, prompts: list[str], rng_for_chunk, batch: int):
    """Stories for `prompts` in chunks of `batch`: (full stories, continuations, surprisal_B, new tokens_B).

    `rng_for_chunk(start)` gives the key of the chunk starting at prompt `start`.
    """
    full, texts, surprisal, n_tokens = [], [], [], []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        toks, valid = encode_prompts(tok, chunk)
        out = sample(params, toks, valid, rng_for_chunk(start))
        s, t = stories_of(tok, chunk, toks, valid, out)
        full += s
        texts += t
        surprisal += list(-np.asarray(out.logprobs_BxN).sum(1))
        n_tokens += list(np.asarray(out.mask_BxN).sum(1))
    return full, texts, np.asarray(surprisal), np.asarray(n_tokens, np.float64)


def grade(teacher, prompts: list[str], stories: list[str], shard: bool = False) -> Optional[Grades]:
    """The teacher's grades on every process, or None on every process when grading was cancelled
    (SIGTERM) on any of them. With several processes (each has sampled the same stories from the same
    parameters and key), every story is graded once: by process 0, which broadcasts the scores (the raw
    answers stay with process 0, which logs them), or, with `shard`, each process grades its contiguous
    share with its own teacher (e.g. a teacher server per host) and all scores and answers are gathered
    everywhere."""
    if jax.process_count() == 1:
        return _grade_or_none(teacher, prompts, stories)
    if shard:
        return _grade_sharded(teacher, prompts, stories)
    grades = _grade_or_none(teacher, prompts, stories) if teacher is not None else None
    cancelled = distributed.is_primary() and grades is None
    if bool(np.asarray(distributed.broadcast(np.float32([cancelled])))[0]):
        return None
    mine = grades.scores_Bx3 if grades is not None else np.zeros((len(stories), 3), np.float32)
    scores = np.asarray(distributed.broadcast(np.asarray(mine, np.float32)))
    return grades if grades is not None else Grades(scores, [""] * len(stories))


def _grade_or_none(teacher, prompts: list[str], stories: list[str]) -> Optional[Grades]:
    try:
        return teacher.grade_batch(prompts, stories)
    except GradingCancelled:
        return None


def _grade_sharded(teacher, prompts: list[str], stories: list[str]) -> Optional[Grades]:
    n, P = len(stories), jax.process_count()
    per = -(-n // P)
    lo = min(n, jax.process_index() * per)
    hi = min(n, lo + per)
    mine = _grade_or_none(teacher, prompts[lo:hi], stories[lo:hi]) if hi > lo else Grades(np.zeros((0, 3)), [])
    if distributed.allgather(np.float32([mine is None])).any():
        return None
    # Every process contributes `per` rows (NaN/"" past the end) so the gathered arrays have one shape.
    scores_Px3 = np.full((per, 3), np.nan, np.float32)
    scores_Px3[:hi - lo] = mine.scores_Bx3
    answers = list(mine.answers) + [""] * (per - (hi - lo))
    scores_Bx3 = distributed.allgather(scores_Px3).reshape(P * per, 3)[:n]
    all_answers = [a for shard in distributed.allgather_strings(answers) for a in shard][:n]
    return Grades(scores_Bx3, all_answers)


def heldout_score(config, sample, params, tok, teacher, judge=None) -> dict:
    """Mean grades of stories continuing the held-out openings (same RNG before and after), from the
    training teacher and, beside it, from the judge (`storyjax.judge`), each with its 95% interval."""
    openings = list(HELDOUT_OPENINGS[:config.heldout.num_openings]) * config.heldout.stories_per_opening
    if not openings:
        return {}
    stories, _, _, _ = sample_stories(sample, params, tok, openings, lambda _: jax.random.key(config.seed + 1),
                                      batch=len(openings))
    grades = grade(teacher, openings, stories, config.teacher.shard_across_hosts)
    independent = not judge_lib.is_teacher(config)
    judged = grade(judge, openings, stories, False) if independent else grades
    if grades is None or judged is None:
        raise preemption.Preempted("SIGTERM while the held-out stories were being graded; rerun to resume.")
    return {**_mean_grades(grades.scores_Bx3), "stories": len(stories),
            "judge": {"name": judge_lib.describe(config), "independent": independent,
                      **_mean_grades(judged.scores_Bx3)}}


def _heldout_words(held: dict) -> str:
    judge = held["judge"]
    return (f"teacher {stats.score_ci(held)} of 9 over {held['stories']} stories; judge "
            + ("(the teacher itself)" if not judge["independent"] else f"{judge['name']} {stats.score_ci(judge)}"))


def _mean_grades(scores_Bx3) -> dict:
    scored = np.isfinite(scores_Bx3).all(1)
    total = stats.mean_ci(scores_Bx3[scored].sum(1))
    return {"score": total["mean"], "score_ci95": total["ci95"],
            **{c: float(scores_Bx3[scored, i].mean()) if scored.any() else float("nan")
               for i, c in enumerate(CRITERIA)},
            "unscorable": int((~scored).sum())}


def milestone_eval(config, model_cfg, sample, params, tok, teacher, judge=None) -> dict:
    """The evaluations `config.milestone_eval` asks for at a milestone: held-out stories, BLiMP."""
    from storyjax import evaluate
    record = {}
    if config.milestone_eval.heldout and config.heldout.num_openings:  # every process takes part (broadcast)
        held = heldout_score(config, sample, params, tok, teacher, judge)
        record.update({"heldout_score": held["score"], **{c: held[c] for c in CRITERIA},
                       "heldout_unscorable": held["unscorable"], "judge_score": held["judge"]["score"]})
    record.update(evaluate.blimp_record(model_cfg, params, tok, config.milestone_eval.blimp_dir))
    return record


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    prompt_words = tokenizer_lib.count_words(config.prompt)
    ledger = ledger_lib.InteractiveLedger(
        budget_words=config.budget_words, prompt_words=prompt_words, charge_prompt=config.charge_prompt,
        generated_cap=config.generated_words_cap, milestone_every=config.milestone_every_words)
    B = config.batch_size
    ledger.check_first_batch(B)
    if config.ledger_only:
        ledger_lib.dry_run(ledger, B)
        summary = {"job": "interactive", "ledger_only": True, "steps": ledger.steps, "stories": ledger.stories,
                   "input_words": ledger.input_words, "budget_words": ledger.budget_words,
                   "milestones": [ledger_lib.milestone_name(m) for m in ledger.due_milestones()]}
        run_outputs.write_summary(workdir, summary)
        return summary

    from storyjax.evaluate import check_blimp_dir
    check_blimp_dir(config.milestone_eval.blimp_dir)
    # Fails here, before any work, if the teacher is unusable. Several processes: process 0 grades for all,
    # or each process its share of every batch (teacher.shard_across_hosts).
    shard = config.teacher.shard_across_hosts and jax.process_count() > 1
    teacher = (make_teacher(config.teacher, workdir, jax.process_index())
               if shard or distributed.is_primary() else None)
    teacher_name = teacher.name if teacher is not None else config.teacher.name
    judge = judge_lib.make(config, workdir, teacher, distributed.is_primary())
    source_dir, milestone = student_source(config, workdir)
    meta = ckpt_lib.read_run_meta(source_dir)
    tok = tokenizer_lib.load(os.path.join(source_dir, "tokenizer"))
    model_cfg = model_lib.ModelConfig(**{**meta["model"], "dropout": 0.0,
                                         "compute_dtype": config.compute_dtype}).validate()
    init_params, _ = ckpt_lib.load_params(source_dir, milestone)
    expected = jax.eval_shape(lambda: model_lib.init_params(model_cfg, jax.random.key(0)))
    if jax.tree.structure(expected) != jax.tree.structure(init_params):
        raise ValueError(f"{source_dir} does not hold parameters of the model its run_meta.json describes.")
    ref_params = jax.tree.map(jnp.asarray, init_params)

    prompt_toks, prompt_valid = encode_prompts(tok, [config.prompt] * B)
    sampler.check_lengths(model_cfg, prompt_toks.shape[1], config.sampling.max_new_tokens)
    if config.heldout.num_openings:  # checked now, not when the held-out score is due after the run
        longest = max(len(ids) for ids in tok.encode(list(HELDOUT_OPENINGS[:config.heldout.num_openings])))
        sampler.check_lengths(model_cfg, longest, config.sampling.max_new_tokens)
    run_meta = {"student": meta["model"], "tokenizer_sha256": tok.sha256, "init": os.path.abspath(source_dir),
                "init_milestone": milestone, "prompt": config.prompt, "batch_size": B, "seed": config.seed}
    distributed.primary_first("run meta", lambda: ckpt_lib.check_run_meta(workdir, run_meta))

    optimizer = reinforce.make_optimizer(config.rl)
    rl_step = reinforce.make_step(model_cfg, config.rl, optimizer)
    sample = make_sample_fn(config, model_cfg, tok)
    health = teacher_health.TeacherHealth.from_config(config.teacher)
    ckpts = ckpt_lib.Checkpoints(workdir, keep=2)
    # Several processes each hold their own single-device copy: checkpoint host copies (orbax then writes
    # them from process 0) rather than arrays that look like shards of one global array.
    saved = (lambda tree: tree) if jax.process_count() == 1 else jax.device_get
    state = reinforce.init_state(ref_params, optimizer, config.rl)
    logs = bar = None
    preempted = preemption.SigtermWatch(on_signal=teacher.cancel if teacher is not None else None)
    try:
        restored = ckpts.restore_latest(jax.eval_shape(lambda: state))
        logs = RunLogs(workdir)
        jsonl = os.path.join(workdir, "ledger.jsonl")
        if restored is None:
            step, extra = 0, {"heldout_start": heldout_score(config, sample, ref_params, tok, teacher, judge)}
            if extra["heldout_start"]:
                logging.info("Held-out score before learning: %s", _heldout_words(extra["heldout_start"]))
            logs.truncate_after(0)
            ledger_lib.append_jsonl(jsonl, "start", ledger)
        else:
            step, state, ledger_dict, extra = restored
            ledger = ledger_lib.InteractiveLedger.from_dict(ledger_dict)
            logs.truncate_after(step)  # rows past the checkpoint are rewritten identically by the resumed steps
            ledger_lib.append_jsonl(jsonl, "resume", ledger, step=step)
            logging.info("Resumed interactive learning at step %d (%d counted words).", step, ledger.input_words)

        weights = tuple(config.reward.weights)
        max_steps = config.max_steps or None
        bar = tqdm(total=config.budget_words, initial=ledger.input_words, unit="word", dynamic_ncols=True,
                   desc="counted input words",
                   disable=not (config.progress_bar and distributed.is_primary()))
        t0 = time.time()
        clock = PhaseClock()

        def save_latest_once():
            if ckpts.latest_step() != step:
                ckpts.save_latest(step, saved(state), ledger.to_dict(), extra)

        while ledger.can_afford(B) and not preempted and (max_steps is None or step < max_steps):
            clock.start()
            rng = jax.random.fold_in(jax.random.key(config.seed), step)
            out = sample(state.params, prompt_toks, prompt_valid, rng)
            stories, texts = stories_of(tok, [config.prompt] * B, prompt_toks, prompt_valid, out)
            clock.lap("sample")  # stories_of waited for the device
            grades = grade(teacher, [config.prompt] * B, stories, config.teacher.shard_across_hosts)
            clock.lap("grade")
            if grades is None:  # SIGTERM during grading: this batch is neither charged nor applied
                break
            scored = np.isfinite(grades.scores_Bx3).all(1)
            unhealthy = health.after_batch(scored)
            if unhealthy:  # this batch is neither charged nor applied; a rerun redoes it
                save_latest_once()
                ckpts.wait()
                last = getattr(teacher, "last_problem", "") if teacher is not None else ""
                ledger_lib.append_jsonl(jsonl, "teacher_unhealthy", ledger, step=step, reason=unhealthy)
                raise teacher_health.TeacherUnhealthy(
                    f"{unhealthy}; last teacher status: {last or 'answers that are not three grades 0-3'}. "
                    f"Checkpoint of step {step} written and nothing charged for the failed batch. Fix the teacher "
                    f"(teacher.base_url={config.teacher.base_url}, teacher.model, the server's log; see "
                    f"{workdir}/answers.jsonl) and rerun the same command to resume.")
            words = np.asarray([tokenizer_lib.count_words(t) for t in texts], np.float32)
            before = ledger.input_words
            ledger.charge(B, int(scored.sum()), int(words.sum()))
            scores = np.where(scored[:, None], grades.scores_Bx3, np.nan)
            rewards = np.asarray(reinforce.story_rewards(jnp.asarray(scores), jnp.asarray(words), weights,
                                                         config.reward.length_bonus, config.reward.length_norm))
            tokens = jnp.concatenate([prompt_toks, out.tokens_BxN], 1)
            valid = jnp.concatenate([prompt_valid, out.mask_BxN], 1)
            response = jnp.concatenate([jnp.zeros_like(prompt_valid), out.mask_BxN], 1)
            state, metrics = rl_step(state, ref_params, tokens, valid, response, jnp.asarray(rewards))
            step += 1
            m = {k: float(v) for k, v in jax.device_get(metrics).items()}
            clock.lap("update")
            if not (math.isfinite(m["loss"]) and m.pop("state_finite")):
                raise ckpt_lib.diverged(ckpts, workdir, step, math.isfinite(m["loss"]), "--config.rl.lr")
            norm = config.reward.length_norm
            bonus = config.reward.length_bonus * np.minimum(words, norm) / norm
            surprisal = -np.asarray(out.logprobs_BxN).sum(1)
            row = logs.write_step(step, config.prompt, stories, grades, rewards, words, bonus, scored, m,
                                  np.asarray(out.mask_BxN).sum(1), surprisal, ledger, weights)
            bar.update(ledger.input_words - before)
            bar.set_postfix(step=step, reward=f"{row['reward_mean']:.3f}", teacher=f"{row['teacher_sum_mean']:.2f}/9")
            if step % config.log_every == 0 or step == 1:
                logs.tensorboard(step, {**row, **clock.last()})
                if not config.progress_bar:  # no bar: a line every log_every steps instead
                    logging.info("step %d: %s of %s counted words, teacher %.2f/9, reward %.3f, KL %.3f", step,
                                 f"{ledger.input_words:,}", f"{config.budget_words:,}", row["teacher_sum_mean"],
                                 row["reward_mean"], m.get("kl", float("nan")))
                ledger_lib.append_jsonl(jsonl, "step", ledger, step=step, reward=row["reward_mean"])
            due = ledger.due_milestones()
            if due or step % config.checkpoint_every_steps == 0 or preempted:
                for words_done in due:
                    ledger.milestones_done.append(words_done)
                    name = ledger_lib.milestone_name(words_done)
                    ckpts.save_milestone(name, saved(state), ledger.to_dict(), {**extra, "step": step})
                    if config.export_hf and distributed.is_primary():
                        from storyjax import export
                        export.export_milestone(workdir, name, model_cfg, jax.device_get(state.params), tok,
                                         os.path.join(source_dir, "tokenizer"))
                    if config.milestone_eval.heldout or config.milestone_eval.blimp_dir:
                        from storyjax import evaluate
                        record = milestone_eval(config, model_cfg, sample, state.params, tok, teacher, judge)
                        evaluate.log_milestone_eval(workdir, logs.writer, ledger, step, name, words_done, record)
                    ledger_lib.append_jsonl(jsonl, "milestone", ledger, step=step, name=name)
                ckpts.save_latest(step, saved(state), ledger.to_dict(), extra)
            clock.lap("rest")  # tables, logs, checkpoints, milestone evaluations
        if step == 0 and not preempted:
            raise ValueError("no interactive step ran; check budget_words and max_steps.")
        save_latest_once()
        ckpts.wait()
        if preempted:
            ledger_lib.append_jsonl(jsonl, "preempted", ledger, step=step)
            raise preemption.Preempted(f"SIGTERM: checkpoint of step {step} written to {workdir}/latest; "
                                       "rerun the same command to resume.")
        heldout_end = heldout_score(config, sample, state.params, tok, teacher, judge)
        if heldout_end:
            logging.info("Held-out score after learning: %s", _heldout_words(heldout_end))
    finally:
        if bar is not None:
            bar.close()
        preempted.close()
        ckpts.close()
        if logs is not None:
            logs.close()
        if teacher is not None:
            teacher.close()
        if judge is not None and judge is not teacher:
            judge.close()

    params = jax.device_get(state.params)
    ledger_lib.append_jsonl(jsonl, "end", ledger, step=step)
    distributed.barrier("logs written")  # process 0's last rows are in before anyone reads them
    history = logs.read_batch_stats()
    summary = {
        "job": "interactive", "steps": step, "stories": ledger.stories, "input_words": ledger.input_words,
        "generated_words": ledger.generated_words, "unscorable": ledger.unscorable,
        "budget_words": ledger.budget_words, "teacher": teacher_name,
        "heldout_score_start": extra["heldout_start"].get("score"), "heldout_score_end": heldout_end.get("score"),
        "heldout_start": extra["heldout_start"], "heldout_end": heldout_end,
        "judge": judge_lib.describe(config),
        "judge_score_start": extra["heldout_start"].get("judge", {}).get("score"),
        "judge_score_end": heldout_end.get("judge", {}).get("score"),
        "train_teacher_sum_first10": float(np.mean([r["teacher_sum_mean"] for r in history[:10]])),
        "train_teacher_sum_last10": float(np.mean([r["teacher_sum_mean"] for r in history[-10:]])),
        "checkpoints": ckpts.milestones(), "seconds": time.time() - t0,
        # Where a step's wall-clock went (this invocation's steps): what overlapping the teacher with device
        # work could at most save is the smaller of "grade" and "sample" + "update".
        "seconds_per_step": clock.means(),
        "param_checksum": run_outputs.param_checksum(params),
    }
    run_outputs.write_summary(workdir, summary)
    return summary



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
                        " Only an independent judge (--config.judge.weights=...) tells storytelling from "
                        "learning the teacher's blind spots."))
    lines.append(f"Outputs in {workdir}: summary.json, generated.csv (every story with its grades), "
                 f"batch_stats.csv, milestones/. Plots: python -m storyjax.report --workdir={workdir} "
                 f"--out={workdir}/report")
    return "\n".join(lines)
