"""The grading job: any teacher grades a JSONL of (prompt, story) lines, or judges a JSONL of
(prompt, a, b) pairs, or (`mode=likelihood`) a `jax` teacher's model scores each continuation's likelihood as
a reference language model; see configs/grade.py.

Rerunning the same command continues: the lines already in grades.jsonl (pairs.jsonl) are kept and
grading resumes after them (the teacher's own cache makes the `openai` teacher's repeats free).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
from tqdm import tqdm

from storyjax import run_outputs, settings_record
from storyjax.atomic import atomic_file
from storyjax.stats import mean_ci, position_bias, win_rate
from storyjax.teachers import kinds, make_teacher, reference_lm
from storyjax.teachers.grader_settings import GraderSettings
from storyjax.teachers.settings import parse as parse_grader
from storyjax.grades import CRITERIA, scored

MODES = ("grades", "likelihood")


def _read_jsonl(path: str, keys: tuple, what: str, config_key: str) -> list[tuple]:
    """The string fields `keys` of every line of a JSONL file, with the line named when one is not."""
    shape = "{" + ", ".join(f'"{k}": ...' for k in keys) + "}"
    if not path or not os.path.isfile(path):
        raise ValueError(f"{config_key}={path!r} is not a file; give a .jsonl of {shape} lines.")
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                row = tuple(rec[k] for k in keys)
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}, line {n}: not a JSON object with " + " and ".join(
                    f'"{k}"' for k in keys) + ".") from None
            if not all(isinstance(x, str) for x in row):
                raise ValueError(f"{path}, line {n}: " + " and ".join(f'"{k}"' for k in keys) + " must be strings.")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no {what}.")
    return rows


def read_stories(path: str) -> tuple[list[str], list[str]]:
    prompts, stories = zip(*_read_jsonl(path, ("prompt", "story"), "stories", "stories"))
    return list(prompts), list(stories)


def read_pairs(path: str) -> tuple[list[str], list[str], list[str]]:
    """(prompts, stories a, stories b) of a JSONL of {"prompt", "a", "b"}: two stories from one opening."""
    prompts, a, b = zip(*_read_jsonl(path, ("prompt", "a", "b"), "pairs", "pairs"))
    return list(prompts), list(a), list(b)


@dataclasses.dataclass(frozen=True)
class GradeSettings:
    """configs/grade.py, parsed at the job's entry."""
    stories: str = ""
    pairs: str = ""
    mode: str = "grades"
    order_test: bool = True
    batch: int = 64
    teacher: GraderSettings = GraderSettings()
    progress_bar: bool = True


def parse(config) -> GradeSettings:
    """The job's settings as a checked record, refused before any work in one line naming what is wrong."""
    values = {k: v for k, v in settings_record.as_dict(config).items() if k != "job"}
    teacher = parse_grader(values.pop("teacher", GraderSettings()), "teacher")
    config = dataclasses.replace(settings_record.parse(GradeSettings, values, ""), teacher=teacher)
    if config.batch < 1:
        raise ValueError(f"batch={config.batch}: grade at least 1 story at a time.")
    if config.mode not in MODES:
        raise ValueError(f"mode={config.mode!r}: choose 'grades' (the teacher grades each story, or judges pairs) "
                         "or 'likelihood' (a jax teacher's model scores each continuation as a reference LM).")
    if config.mode == "likelihood" and (config.teacher.name != "jax" or config.pairs):
        raise ValueError("mode=likelihood reads a language model's log-probabilities: give --config.teacher.name=jax "
                         "--config.teacher.jax.weights=MODEL (a .gguf file or Hugging Face folder) and "
                         "--config.stories=FILE.jsonl (not pairs).")
    if bool(config.stories) == bool(config.pairs):
        raise ValueError("give one of --config.stories=FILE.jsonl (grade each story) or --config.pairs=FILE.jsonl "
                         "(judge which of two stories is the better), not " + ("both." if config.stories else
                                                                                 "neither."))
    if config.stories:
        read_stories(config.stories)
        return config
    read_pairs(config.pairs)
    if config.teacher.name not in kinds.pairwise():
        raise ValueError(f"teacher.name={config.teacher.name!r} cannot judge pairs of stories: use "
                         "teacher.name=jax (an instruct model; its preference is read from its logits) or rubric "
                         "(the larger sum of grades).")
    return config


def run(config, workdir: str) -> dict:
    """The job's entry (configs/grade.py): its settings parsed, then `run_settings`."""
    return run_settings(parse(config), workdir)


def run_settings(config: GradeSettings, workdir: str) -> dict:
    """Grades, judged pairs or likelihoods, as the parsed settings ask."""
    if config.pairs:
        return run_pairs(config, workdir)
    if config.mode == "likelihood":
        return run_likelihood(config, workdir)
    prompts, stories = read_stories(config.stories)
    os.makedirs(workdir, exist_ok=True)
    teacher = make_teacher(config.teacher, workdir)

    def ask(part: slice) -> list[dict]:
        grades = teacher.grade_batch(prompts[part], stories[part])
        details = grades.details or [{}] * len(grades.answers)
        return [{"index": part.start + i, "scores": None if np.isnan(row).any() else [float(x) for x in row],
                 "answer": grades.answers[i], **details[i]} for i, row in enumerate(grades.scores_Bx3)]

    done, rate = _resumable(os.path.join(workdir, "grades.jsonl"), len(stories), config, teacher, ask, "story")
    scores = np.asarray([d["scores"] if d["scores"] is not None else [np.nan] * 3 for d in done], np.float64)
    ok = scored(scores)
    summary = {"job": "grade", "teacher": teacher.name, "stories": len(done), "unscorable": int((~ok).sum()),
               "sum": mean_ci(scores[ok].sum(1)), **{c: mean_ci(scores[ok, j]) for j, c in enumerate(CRITERIA)},
               "stories_per_s": rate}
    run_outputs.write_summary(workdir, summary)
    return summary


def run_pairs(config: GradeSettings, workdir: str) -> dict:
    """Judges every pair and writes DIR/pairs.jsonl (per pair: `p_a`, the judge's probability that a is the
    better story averaged over both orders, null when unscorable, and the two orders' values) and
    DIR/summary.json (the win rate of a with its 95% interval clustered by opening, and position bias)."""
    prompts, stories_a, stories_b = read_pairs(config.pairs)
    os.makedirs(workdir, exist_ok=True)
    teacher = make_teacher(config.teacher, workdir)
    finite = lambda x: None if not np.isfinite(x) else float(x)

    def ask(part: slice) -> list[dict]:
        prefs = teacher.prefer(prompts[part], stories_a[part], stories_b[part])
        details = prefs.details or [{}] * len(prefs.p_a_B)
        orders = zip(prefs.p_a_B, prefs.p_a_first_B, prefs.p_a_second_B)
        return [{"index": part.start + i, "p_a": finite(p), "p_a_first": finite(f), "p_a_second": finite(s),
                 **details[i]} for i, (p, f, s) in enumerate(orders)]

    done, rate = _resumable(os.path.join(workdir, "pairs.jsonl"), len(prompts), config, teacher, ask, "pair")
    column = lambda key: np.asarray([np.nan if d[key] is None else d[key] for d in done], np.float64)
    p_a = column("p_a")
    summary = {"job": "grade", "mode": "pairwise", "teacher": teacher.name, "pairs": len(done),
               "unscorable": int((~np.isfinite(p_a)).sum()),
               "a_wins": win_rate(p_a, [prompts[d["index"]] for d in done]),
               "position": position_bias(column("p_a_first"), column("p_a_second")),
               "pairs_per_s": rate}
    run_outputs.write_summary(workdir, summary)
    return summary


def run_likelihood(config: GradeSettings, workdir: str) -> dict:
    """Writes DIR/likelihood.jsonl (per story, in order: `nll_per_token` of its continuation given its opening
    and the continuation's `tokens`; with `order_test`, `shuffled_nll_per_token` of the same continuation with
    its sentences reordered, null when it has fewer than two) and DIR/summary.json (the mean NLL per token and
    the order margin, shuffled − told, with 95% intervals)."""
    prompts, stories = read_stories(config.stories)
    os.makedirs(workdir, exist_ok=True)
    model = make_teacher(config.teacher, workdir)

    def ask(part: slice) -> list[dict]:
        told = [reference_lm.continuation(p, s) for p, s in zip(prompts[part], stories[part])]
        logps = reference_lm.token_logprobs(model, prompts[part], told)
        lines = [{"index": part.start + i, "nll_per_token": _finite(reference_lm.nll_per_token(lp)),
                  "tokens": len(lp)} for i, lp in enumerate(logps)]
        if config.order_test:
            shuffles = [reference_lm.shuffled(t, part.start + i) for i, t in enumerate(told)]
            have = [i for i, t in enumerate(shuffles) if t is not None]
            shuffled_logps = reference_lm.token_logprobs(model, [prompts[part][i] for i in have],
                                                         [shuffles[i] for i in have])
            for line in lines:
                line["shuffled_nll_per_token"] = None
            for i, lp in zip(have, shuffled_logps):
                lines[i]["shuffled_nll_per_token"] = _finite(reference_lm.nll_per_token(lp))
        return lines

    done, rate = _resumable(os.path.join(workdir, "likelihood.jsonl"), len(stories), config, model, ask, "story")
    column = lambda key: np.asarray([np.nan if d.get(key) is None else d[key] for d in done], np.float64)
    nll = column("nll_per_token")
    margin = column("shuffled_nll_per_token") - nll
    summary = {"job": "grade", "mode": "likelihood", "model": config.teacher.jax.weights, "stories": len(done),
               "empty": int((~np.isfinite(nll)).sum()), "nll_per_token": mean_ci(nll[np.isfinite(nll)]),
               "order_margin": mean_ci(margin[np.isfinite(margin)]) if config.order_test else None,
               "tokens": int(sum(d["tokens"] for d in done)), "stories_per_s": rate}
    run_outputs.write_summary(workdir, summary)
    return summary


def _finite(x: float):
    return float(x) if np.isfinite(x) else None


def _resumable(out: str, n: int, config: GradeSettings, teacher, ask, unit: str) -> tuple[list[dict], float | None]:
    """Runs `ask` on the items `out` does not hold yet, `config.batch` at a time, appending its lines to
    `out` as each batch ends (a killed job loses at most one batch); (every line, items per second)."""
    done = _done(out)
    seconds, asked = 0.0, 0
    try:
        bar = tqdm(total=n, initial=len(done), unit=unit, disable=not config.progress_bar)
        for start in range(len(done), n, config.batch):
            t0 = time.perf_counter()
            lines = ask(slice(start, min(n, start + config.batch)))
            seconds += time.perf_counter() - t0
            asked += len(lines)
            with open(out, "a") as f:
                f.writelines(json.dumps(line) + "\n" for line in lines)
            done += lines
            bar.update(len(lines))
        bar.close()
    finally:
        teacher.close()
    return done, (asked / seconds if seconds else None)


def _done(path: str) -> list[dict]:
    """The lines a killed run already wrote (a torn last line is dropped and regraded)."""
    if not os.path.exists(path):
        return []
    lines = []
    with open(path) as f:
        for line in f:
            try:
                lines.append(json.loads(line))
            except ValueError:
                break
    with atomic_file(path) as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    return lines


def closing_words(summary: dict, workdir: str) -> str:
    """What the grading did, in words, and where its outputs are."""
    if summary.get("mode") == "likelihood":
        nll, margin = summary["nll_per_token"], summary["order_margin"]
        return (f"Scored {summary['stories']} continuations ({summary['tokens']:,} tokens; {summary['empty']} empty) "
                f"with {summary['model']} as a reference LM: {nll['mean']:.3f} ± {nll['ci95']:.3f} nats per token "
                "(95% interval)"
                + (f"; their sentences shuffled cost {margin['mean']:.3f} ± {margin['ci95']:.3f} more" if margin else "")
                + f".\nOutputs in {workdir}: likelihood.jsonl (each story's NLL per token and tokens), summary.json.")
    if summary.get("mode") == "pairwise":
        wins, position = summary["a_wins"], summary["position"]
        return (f"Judged {summary['pairs']} pairs with the {summary['teacher']} teacher ({summary['unscorable']} "
                f"unscorable): a was the better in {wins['win_rate']:.2f} ± {wins['ci95']:.2f} of them (95% interval "
                f"over {wins['clusters']} openings; 0.5 = no preference). The same story won in both orders of "
                f"showing in {position['consistency']:.2f} of the pairs; the story shown first won "
                f"{position['first_slot']:.2f}."
                f"\nOutputs in {workdir}: pairs.jsonl (p_a per pair and per order), summary.json.")
    total = summary["sum"]
    return (f"Graded {summary['stories']} stories with the {summary['teacher']} teacher ({summary['unscorable']} "
            f"unscorable): mean grade sum {total['mean']:.2f} ± {total['ci95']:.2f} of 9 (95% interval).\n"
            f"Outputs in {workdir}: grades.jsonl (each story's grades and the teacher's answer), summary.json.")
