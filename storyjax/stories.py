"""Stories: the student writes them (jitted sampler, in chunks), they are decoded to text, a teacher grades
them, and held-out openings measure a student the same way before and after learning.

Shared by interactive learning (its batches and its held-out score) and evaluation (the story report).
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from storyjax import distributed, preemption, rollout, sampler, stats
from storyjax import judge as judge_lib
from storyjax import model as model_lib
from storyjax.prompts import heldout_openings
from storyjax.teachers import make_teacher
from storyjax.teachers.base import CRITERIA, Grades, GradingCancelled


def encode_prompts(tok, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded prompt ids and their validity mask."""
    ids = tok.encode(prompts)
    P = max(map(len, ids))
    toks, valid = np.full((len(ids), P), tok.pad_id, np.int32), np.zeros((len(ids), P), bool)
    for b, row in enumerate(ids):
        toks[b, P - len(row):], valid[b, P - len(row):] = row, True
    return toks, valid


def decode(tok, prompts: list[str], prompt_BxP, valid_BxP, samples: sampler.Samples):
    """(full stories, continuations) as text. Prompt and continuation are decoded together so the space
    between them survives (SentencePiece drops a leading space when a piece list is decoded alone)."""
    tokens, mask = np.asarray(samples.tokens_BxN), np.asarray(samples.mask_BxN)
    rows = [[int(t) for t, v in zip(p, pv) if v] + [int(t) for t, m in zip(r, k) if m and t != tok.eos_id]
            for p, pv, r, k in zip(np.asarray(prompt_BxP), np.asarray(valid_BxP), tokens, mask)]
    stories = tok.decode(rows)
    return stories, [s[len(p):] for s, p in zip(stories, prompts)]


def make_sample_fn(config: ml_collections.ConfigDict, model_cfg: model_lib.ModelConfig, tok) -> Callable:
    """sample(params, prompt_BxP, valid_BxP, rng) → sampler.Samples at the config's sampling settings."""
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
        s, t = decode(tok, chunk, toks, valid, out)
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
    openings = heldout_openings(config.heldout.num_openings, (config.prompt,)) * config.heldout.stories_per_opening
    if not openings:
        return {}
    full, _, _, _ = sample_stories(sample, params, tok, openings, lambda _: jax.random.key(config.seed + 1),
                                   batch=len(openings))
    grades = grade(teacher, openings, full, config.teacher.shard_across_hosts)
    independent = not judge_lib.same_model(config)
    judged = grade(judge, openings, full, False) if independent else grades
    if grades is None or judged is None:
        raise preemption.Preempted("SIGTERM while the held-out stories were being graded; rerun to resume.")
    return {**mean_grades(grades.scores_Bx3), "stories": len(full),
            "judge": {"name": judge_lib.describe(config), "independent": independent,
                      **mean_grades(judged.scores_Bx3)},
            "texts": full}  # for judge.mode=pairwise: the same openings' stories after learning meet these


def heldout_pairwise(config, judge, start: dict, end: dict) -> Optional[dict]:
    """judge.mode=pairwise: for each held-out story, which is the better, the one written after learning or
    the one from the same opening and the same sampling key before it; the after-stories' win rate with a
    95% interval clustered by opening, and how much the order of showing moved the judge. None where there
    is nothing to compare (another mode, no held-out stories, or a process that holds no judge)."""
    if config.judge.get("mode", "absolute") != "pairwise" or judge is None:
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
    ok = rollout.scored(scores_Bx3)
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


def distinct_n(texts: list[str], n: int) -> float:
    grams = [tuple(w[i:i + n]) for w in (t.split() for t in texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of a story's word n-grams that already occurred earlier in the same story."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def report(config, cfg, params, tok, workdir: str) -> dict:
    """Held-out openings (ours plus the paper's prompt), k stories each, graded by the configured teacher:
    means with 95% intervals, length, diversity, repetition and the student's own surprisal."""
    openings = heldout_openings(config.stories.num_openings, config.stories.get("exclude", ()))
    prompts = [o for o in openings for _ in range(config.stories.per_opening)]
    check_openings_fit(cfg, tok, openings, config.sampling.max_new_tokens)
    sample = make_sample_fn(config, cfg, tok)
    teacher = make_teacher(config.teacher, workdir)
    try:
        full, texts, surprisal, n_tokens = sample_stories(
            sample, params, tok, prompts, lambda start: jax.random.fold_in(jax.random.key(config.seed), start),
            config.stories.batch)
        grades = teacher.grade_batch(prompts, full)
    finally:
        teacher.close()
    scores = grades.scores_Bx3
    ok = rollout.scored(scores)
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
        "examples": [{"prompt": p, "story": f, "answer": a} for p, f, a in list(zip(prompts, full, grades.answers))[:8]],
        # Every story, in prompt order (evaluate writes them to eval/stories.jsonl, not into the summary): two
        # students evaluated with the same seed wrote story i from the same opening and sampling key.
        "records": [{"prompt": p, "story": f, "continuation": t,
                     "scores": [float(x) for x in row] if okay else None, "answer": a}
                    for p, f, t, row, okay, a in zip(prompts, full, texts, scores, ok, grades.answers)],
    }
