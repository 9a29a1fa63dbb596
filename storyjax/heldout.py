"""Held-out stories: a student measured on openings it never trains on, the same way before and after
learning (the same openings and sampling keys), by the training teacher and, beside it, the judge; and the
evaluation's story report (grades with intervals, length, diversity, the student's own surprisal).
"""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np

from storyjax import preemption, sampler, stats
from storyjax import judge as judge_lib
from storyjax import model as model_lib
from storyjax.diversity import distinct_n, repetition_rate
from storyjax.prompts import heldout_openings, story_openings
from storyjax.stories import grade, make_sample_fn, sample_stories
from storyjax.teachers import make_teacher
from storyjax.grades import CRITERIA, GradingCancelled, scored


def heldout_score(config, sample, params, tok, teacher, judge=None) -> dict:
    """Mean grades of stories continuing the held-out openings (same RNG before and after), from the
    training teacher and, beside it, from the judge (`storyjax.judge`), each with its 95% interval."""
    openings = heldout_openings(config.heldout.num_openings, (config.prompt,)) * config.heldout.stories_per_opening
    if not openings:
        return {}
    full, _, _, _ = sample_stories(sample, params, tok, openings, lambda _: jax.random.key(config.seed + 1),
                                   batch=len(openings))
    grades = grade(teacher, openings, full, config.teacher.shard_across_hosts)
    independent = not judge_lib.same_model(config.judge, config.teacher)
    judged = grade(judge, openings, full, False) if independent else grades
    if grades is None or judged is None:
        raise preemption.Preempted("SIGTERM while the held-out stories were being graded; rerun to resume.")
    return {**mean_grades(grades.scores_Bx3), "stories": len(full),
            "judge": {"name": judge_lib.describe(config.judge, config.teacher), "independent": independent,
                      **mean_grades(judged.scores_Bx3)},
            "texts": full}  # for judge.mode=pairwise: the same openings' stories after learning meet these


def heldout_pairwise(config, judge, start: dict, end: dict) -> Optional[dict]:
    """judge.mode=pairwise: for each held-out story, which is the better, the one written after learning or
    the one from the same opening and the same sampling key before it; the after-stories' win rate with a
    95% interval clustered by opening, and how much the order of showing moved the judge. None where there
    is nothing to compare (another mode, no held-out stories, or a process that holds no judge)."""
    if config.judge.mode != "pairwise" or judge is None:
        return None
    before, after = start.get("texts") or [], end.get("texts") or []
    if not before or len(before) != len(after):
        return None
    openings = heldout_openings(config.heldout.num_openings, (config.prompt,)) * config.heldout.stories_per_opening
    try:
        prefs = judge.prefer(openings, after, before)
    except GradingCancelled:
        raise preemption.Preempted("SIGTERM while the held-out pairs were being judged; rerun to resume.") from None
    return {"after_wins": stats.win_rate(prefs.p_a_B, openings),
            "position": stats.position_bias(prefs.p_a_first_B, prefs.p_a_second_B),
            "unscorable": int((~np.isfinite(prefs.p_a_B)).sum()),
            "pairs": [{"opening": o, "before": b, "after": a, "p_after": None if not np.isfinite(p) else float(p)}
                      for o, b, a, p in zip(openings, before, after, prefs.p_a_B)]}


def heldout_words(held: dict) -> str:
    judge = held["judge"]
    return (f"teacher {stats.score_ci(held)} of 9 over {held['stories']} stories; judge "
            + ("(the teacher itself)" if not judge["independent"] else f"{judge['name']} {stats.score_ci(judge)}"))


def mean_grades(scores_Bx3) -> dict:
    ok = scored(scores_Bx3)
    total = stats.mean_ci(scores_Bx3[ok].sum(1))
    return {"score": total["mean"], "score_ci95": total["ci95"],
            **{c: float(scores_Bx3[ok, i].mean()) if ok.any() else float("nan") for i, c in enumerate(CRITERIA)},
            "unscorable": int((~ok).sum())}


def check_openings_fit(model_cfg: model_lib.ModelConfig, tok, openings: list[str], max_new_tokens: int) -> None:
    """Every opening plus `max_new_tokens` fits the student's context; checked before any work (a run checks
    its held-out openings when it starts, not when their score is due after it)."""
    if openings:
        longest = max(len(ids) for ids in tok.encode(list(openings)))
        sampler.check_lengths(model_cfg, longest, max_new_tokens)


def report(config, cfg, params, tok, workdir: str) -> dict:
    """Held-out openings (ours plus the paper's prompt), k stories each, graded by the configured teacher:
    means with 95% intervals, length, diversity, repetition and the student's own surprisal."""
    openings = story_openings(config.stories.openings, config.stories.num_openings, config.stories.exclude,
                              config.stories.prompt)
    prompts = [o for o in openings for _ in range(config.stories.per_opening)]
    check_openings_fit(cfg, tok, openings, config.sampling.max_new_tokens)
    sample = make_sample_fn(config.sampling, cfg, tok)
    teacher = make_teacher(config.teacher, workdir)
    try:
        full, texts, surprisal, n_tokens = sample_stories(
            sample, params, tok, prompts, lambda start: jax.random.fold_in(jax.random.key(config.seed), start),
            config.stories.batch)
        grades = teacher.grade_batch(prompts, full)
    finally:
        teacher.close()
    scores = grades.scores_Bx3
    ok = scored(scores)
    words = np.asarray([len(t.split()) for t in texts], np.float64)
    has_words = words > 0
    return {
        "teacher": teacher.name, "stories": len(prompts), "openings": len(openings),
        "sum": stats.mean_ci(scores[ok].sum(1)), **{c: stats.mean_ci(scores[ok, i]) for i, c in enumerate(CRITERIA)},
        "unscorable_rate": float(1 - ok.mean()), "mean_words": float(words.mean()),
        "mean_tokens": float(n_tokens.mean()), "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
        "repetition_rate": float(np.mean([repetition_rate(t) for t in texts])),
        # The paper's "entropy per word": the student's surprisal of its own stories per whitespace word.
        "entropy_per_word": float(surprisal[has_words].sum() / words[has_words].sum()) if has_words.any() else None,
        "entropy_per_token": float(surprisal.sum() / max(n_tokens.sum(), 1)),
        "examples": [{"prompt": p, "story": f, "answer": a}
                     for p, f, a in list(zip(prompts, full, grades.answers))[:8]],
        # Every story, in prompt order (evaluate writes them to eval/stories.jsonl, not into the summary): two
        # students evaluated with the same seed wrote story i from the same opening and sampling key.
        "records": [{"prompt": p, "story": f, "continuation": t,
                     "scores": [float(x) for x in row] if okay else None, "answer": a}
                    for p, f, t, row, okay, a in zip(prompts, full, texts, scores, ok, grades.answers)],
    }
