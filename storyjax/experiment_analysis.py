"""The experiment's analysis (storyjax.experiment runs it): from every student's judged held-out stories to
the table, the headline and its interval, the reward-hacking monitor and the pre-registered gates.

Every student is evaluated from the same held-out openings with the same sampling keys, so story i of one
student and story i of another are a pair: differences are taken per story. One run's intervals are clustered
by opening (stats.clustered_mean); a row's, over its seeds, come from a two-way bootstrap over openings and
seeds (stats.two_way_bootstrap), since every seed shares the openings, keys and before-stories.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional

import numpy as np

from storyjax import instruments, monitor, stats
from storyjax.checkpoint import milestone_words

RUN_KINDS = ("rl", "grades_permuted", "reward_permuted", "length_only", "positive")
CONTROL = "grades_permuted"  # the pre-registered comparison: RL's gain over learning from permuted grades


@dataclasses.dataclass
class Student:
    """One evaluated student: its held-out stories (eval/stories.jsonl, in the shared order) and figures."""
    records: list[dict]
    row: dict                         # the evaluation's figures (judge mean, perplexity, BLiMP, ...)
    pairwise: Optional[dict] = None   # the judge's preferences against the reference student, if asked
    teacher_sums_N: Optional[np.ndarray] = None  # the training teacher's grade sums of the same stories
    lm_logprobs: Optional[list] = None  # the reference LM's per-token log-probs of each continuation

    # Derived once from `records`, which a student never changes: every run from a milestone reads that
    # milestone's sums and story metrics again.
    @functools.cached_property
    def sums_N(self) -> np.ndarray:
        return np.asarray([sum(r["scores"]) if r["scores"] is not None else np.nan for r in self.records],
                          np.float64)

    @functools.cached_property
    def openings_N(self) -> list[str]:
        return [r["prompt"] for r in self.records]

    @functools.cached_property
    def clusters_N(self) -> list:
        """What intervals resample: the opening of each story, or, where every story continues one opening
        (the training prompt), each story's own sampling key."""
        return self.openings_N if len(set(self.openings_N)) > 1 else list(range(len(self.records)))

    @functools.cached_property
    def metrics(self) -> dict:
        return monitor.story_metrics(self.records)


@dataclasses.dataclass
class Run:
    """One interactive-learning run (a kind, a milestone, a seed) and its evaluated student."""
    kind: str
    milestone: str
    milestone_words: int
    seed: int
    summary: dict
    kl_per_step: list[float]
    student: Student


def kl_in_band(kl_per_step: list[float], target: float, band: float):
    """Share of the second half of a run's steps whose KL to the start model lies within target·(1 ± band):
    how well the adaptive controller held the KL where it was asked to (the first half is its settling
    time). None without a target (a fixed KL coefficient)."""
    late = [k for k in kl_per_step[len(kl_per_step) // 2:] if math.isfinite(k)]
    if target <= 0 or not late:
        return None
    return float(np.mean([abs(k - target) <= band * target for k in late]))


def reached_words(curve: list[tuple[float, float]], score):
    """Pretraining words at which the pretraining-only curve [(words, held-out score)] first reaches
    `score`, interpolated linearly in log words; None when the curve never gets there (or starts above)."""
    pts = sorted(curve)
    if not pts or score is None or not math.isfinite(score) or score < pts[0][1]:
        return None
    if score == pts[0][1]:
        return float(pts[0][0])
    for (w0, s0), (w1, s1) in zip(pts, pts[1:]):
        if s0 < score <= s1:
            t = (score - s0) / (s1 - s0)
            return float(round(10 ** (math.log10(w0) + t * (math.log10(w1) - math.log10(w0)))))
    return None


def _side(curve, score) -> str:
    """Which side of the curve an unreached score lies on: "above" its best or "below" its first point."""
    return "above" if score > sorted(curve)[0][1] else "below"


def equivalence(curve: list[tuple[float, float]], score) -> str:
    """`reached_words` in words, saying which side of the curve an unreached score lies on."""
    w = reached_words(curve, score)
    if w is not None:
        return words_text(w)
    if score is None or not curve or not math.isfinite(score):
        return "—"
    pts = sorted(curve)
    return (f"not reached (above the curve's best, {fmt(max(s for _, s in pts))})" if _side(pts, score) == "above"
            else f"not reached (below the first milestone's {fmt(pts[0][1])})")


def headline_interval(curve_words_M, curve_sums_MxN, after_sums_SxN, openings_N, reps: int = 2000,
                      seed: int = 0) -> tuple:
    """A 95% bootstrap interval of the pretraining words the curve needs to reach the RL'd students' mean
    held-out score: openings resampled (every student's stories from a drawn opening come along, so the curve
    and the students move together) and seeds resampled. A replicate whose score the curve never reaches
    counts as beyond that end; such an end of the interval is "below" or "above" instead of a number."""
    curve_sums_MxN = np.asarray(curve_sums_MxN, np.float64)
    after_sums_SxN = np.asarray(after_sums_SxN, np.float64)
    keys, which_N = np.unique(np.asarray(openings_N), return_inverse=True)
    rng = np.random.default_rng(seed)
    counts_RxK = rng.multinomial(len(keys), np.full(len(keys), 1 / len(keys)), size=reps)
    seeds_RxS = rng.integers(0, len(after_sums_SxN), (reps, len(after_sums_SxN)))
    w_RxN = counts_RxK[:, which_N].astype(np.float64)

    def weighted_mean(w_RxN, x_N):
        ok = np.isfinite(x_N)
        return (w_RxN[:, ok] * x_N[ok]).sum(1) / np.maximum(w_RxN[:, ok].sum(1), 1e-12)

    curve_RxM = np.stack([weighted_mean(w_RxN, x) for x in curve_sums_MxN], 1)
    seed_RxS = np.stack([weighted_mean(w_RxN, x) for x in after_sums_SxN], 1)
    after_R = np.take_along_axis(seed_RxS, seeds_RxS, 1).mean(1)
    values = []
    for r in range(reps):
        curve = list(zip(curve_words_M, curve_RxM[r]))
        w = reached_words(curve, after_R[r])
        values.append(w if w is not None else (math.inf if _side(curve, after_R[r]) == "above" else -math.inf))
    lo, hi = np.quantile(np.asarray(values), [0.025, 0.975], method="inverted_cdf")
    named = lambda v: "below" if v == -math.inf else "above" if v == math.inf else float(v)
    return named(lo), named(hi)


def run_figures(run: Run, start: Student, limits, corpus: Optional[dict] = None) -> dict:
    """One run's figures against its starting milestone: paired delta (clustered by opening), win rate,
    teacher gain, the monitor's metrics and flags."""
    s = run.summary
    paired = stats.paired_delta(run.student.sums_N, start.sums_N, run.student.clusters_N)
    teacher_gain = s["train_teacher_sum_last10"] - s["train_teacher_sum_first10"]
    view = (stats.paired_delta(run.student.teacher_sums_N, start.teacher_sums_N, run.student.clusters_N)
            if run.student.teacher_sums_N is not None and start.teacher_sums_N is not None else {})
    before_m, after_m = start.metrics, run.student.metrics
    return {"run": run.kind, "milestone": run.milestone, "seed": run.seed, "steps": s["steps"],
            "input_words": s["input_words"], "teacher_first10": s["train_teacher_sum_first10"],
            "teacher_last10": s["train_teacher_sum_last10"], "teacher_gain": teacher_gain,
            "heldout": run.student.row["heldout"], "heldout_ci95": run.student.row["heldout_ci95"],
            "paired_delta": paired["mean"], "paired_ci95": paired["ci95"],
            "teacher_heldout_delta": view.get("mean"), "teacher_heldout_ci95": view.get("ci95"),
            "win_rate": (run.student.pairwise or {}).get("win_rate"),
            "win_ci95": (run.student.pairwise or {}).get("ci95"),
            **{f"{k}_before": v for k, v in before_m.items()}, **{f"{k}_after": v for k, v in after_m.items()},
            **{f"{k}_corpus": v for k, v in (corpus or {}).items() if k in ("distinct_2", "shared_skeleton")},
            "flags": monitor.hacking_flags(teacher_gain, paired, before_m, after_m, limits, corpus)}


def rows(curve: list[tuple[int, float]], pretrain: dict[str, Student], runs: list[Run], config,
         corpus_texts=None) -> tuple:
    """(table rows, per-run rows): one table row per run kind and milestone, with seed-aware intervals;
    `corpus_texts` (prompts, stories) of the corpus's own, for the monitor's reference."""
    ex = config.experiment
    corpus = {m: monitor.corpus_reference(corpus_texts, s.records) for m, s in pretrain.items()}
    per_run = {id(r): run_figures(r, pretrain[r.milestone], ex.monitor, corpus[r.milestone]) for r in runs}
    curve_M = sorted(curve)
    by_words = {milestone_words(m): m for m in pretrain}
    curve_sums_MxN = [pretrain[by_words[w]].sums_N for w, _ in curve_M]
    table = []
    for kind in RUN_KINDS:
        for m in dict.fromkeys(r.milestone for r in runs if r.kind == kind):
            group = [r for r in runs if r.kind == kind and r.milestone == m]
            figs = [per_run[id(r)] for r in group]
            table.append(_row(kind, m, group, figs, pretrain[m], curve_M, curve_sums_MxN, config))
    for row in table:  # the gain column: each run kind against the grades-permuted control, openings x seeds
        row.update(_against(row, runs, pretrain[row["milestone"]], ex.bootstrap))
    extra = [n for n in ex.instruments if n != "judge"]
    table += [_instrument_row(row, name, runs, pretrain[row["milestone"]], config) for name in extra
              for row in table]
    return table, [per_run[id(r)] for r in runs]


def _instrument_row(row: dict, name: str, runs: list[Run], start: Student, config) -> dict:
    """`row` (the judge's) as another instrument measures it: its paired Δ and gain over the grades-permuted
    control; the judge's win rate and the headline (read on the judge's curve) do not carry over."""
    ex = config.experiment
    group = [r for r in runs if r.kind == row["run"] and r.milestone == row["milestone"]]
    paired = stats.two_way_bootstrap(_deltas_SxN(group, start, name, ex.reference_lm.cap), start.clusters_N,
                                     reps=ex.bootstrap)
    out = {**row, "instrument": instruments.label(config, name), "measured_by": name,
           "paired_delta": _num(paired["mean"]),
           "paired_ci95": _half(paired), "paired_ci95_low": _num(paired["ci95_low"]),
           "paired_ci95_high": _num(paired["ci95_high"]), "win_rate": None, "win_ci95": None,
           "win_consistency": None, "first_slot": None, "headline_words": None, "headline_extra_words": None,
           "headline_ci95_low": None, "headline_ci95_high": None, "equivalent": "—"}
    out.update(_against(out, runs, start, ex.bootstrap, name, ex.reference_lm.cap))
    if name == "reference_lm":
        out["too_short"] = int(sum(instruments.too_short(r.student, start, ex.reference_lm.cap) for r in group))
    return out


def _deltas_SxN(group: list[Run], start: Student, name: str = "judge", cap: int = 0) -> np.ndarray:
    """Per seed, per held-out story: how much better the story after learning is than the one before (same
    opening and key) under instrument `name` (storyjax.instruments)."""
    return np.stack([instruments.paired_deltas(name, r.student, start, cap) for r in group])


def _against(row: dict, runs: list[Run], start: Student, reps: int, name: str = "judge", cap: int = 0) -> dict:
    """The row's paired Δ minus the grades-permuted control's from the same milestone, with its two-way
    bootstrap interval; None where there is no such control (or the row is the control)."""
    none = {"gain_vs_grades_permuted": None, "gain_ci95_low": None, "gain_ci95_high": None}
    group = lambda kind: [r for r in runs if r.kind == kind and r.milestone == row["milestone"]]
    if row["run"] == CONTROL or not group(CONTROL):
        return none
    gain = stats.two_way_bootstrap((_deltas_SxN(group(row["run"]), start, name, cap),
                                    _deltas_SxN(group(CONTROL), start, name, cap)),
                                   start.clusters_N, reps=reps)
    return dict(zip(none, (_num(gain["mean"]), _num(gain["ci95_low"]), _num(gain["ci95_high"]))))


def _num(x):
    return None if x is None or not math.isfinite(x) else float(x)


def _over_seeds(figs: list[dict], key: str, ci_key: str) -> tuple:
    """(mean, 95% half-width) of a per-seed figure: with one seed, its own interval (clustered by opening);
    with more, the t-interval over the seeds' values; (None, None) when no seed has the figure."""
    have = [f for f in figs if f.get(key) is not None]
    if not have:
        return None, None
    seeds = stats.across_seeds([f[key] for f in have])
    return _num(seeds["mean"]), _num(have[0][ci_key] if len(figs) == 1 else seeds["ci95"])


def _row(kind: str, m: str, group: list[Run], figs: list[dict], start: Student, curve_M, curve_sums_MxN,
         config) -> dict:
    ex = config.experiment
    mean = lambda k: _num(float(np.mean([f[k] for f in figs if f.get(k) is not None]))) if any(
        f.get(k) is not None for f in figs) else None
    paired = stats.two_way_bootstrap(_deltas_SxN(group, start), start.clusters_N, reps=ex.bootstrap)
    after, after_ci = _over_seeds(figs, "heldout", "heldout_ci95")
    wins = _wins(group, start, ex.bootstrap)
    view, view_ci = _over_seeds(figs, "teacher_heldout_delta", "teacher_heldout_ci95")
    words = milestone_words(m)
    reached = reached_words(curve_M, after)
    low, high = headline_interval([w for w, _ in curve_M], curve_sums_MxN, [r.student.sums_N for r in group],
                                  start.clusters_N, reps=ex.bootstrap, seed=0) if curve_M else (None, None)
    flags = sorted({x for f in figs for x in f["flags"]})
    kl_end = [float(np.mean(r.kl_per_step[-10:])) for r in group if r.kl_per_step]
    return {
        "run": kind, "milestone": m, "milestone_words": words, "seeds": len(group),
        "input_words": int(np.mean([f["input_words"] for f in figs])),
        "teacher_first10": mean("teacher_first10"), "teacher_last10": mean("teacher_last10"),
        "teacher_gain": mean("teacher_gain"),
        "heldout_before": start.row["heldout"], "heldout_before_ci95": start.row["heldout_ci95"],
        # with one seed an interval is that seed's, clustered by opening; with more, the t-interval over seeds
        "heldout_after": after, "heldout_after_ci95": after_ci,
        "instrument": instruments.label(config), "measured_by": "judge",
        "paired_delta": _num(paired["mean"]), "paired_ci95": _half(paired),
        "paired_ci95_low": _num(paired["ci95_low"]), "paired_ci95_high": _num(paired["ci95_high"]), **wins,
        # filled in by `rows` once every row exists: this row against the grades-permuted control
        "gain_vs_grades_permuted": None, "gain_ci95_low": None, "gain_ci95_high": None,
        # the training teacher's view of the same held-out pairs (experiment.teacher_view): not evidence
        "teacher_heldout_delta": view, "teacher_heldout_ci95": view_ci,
        "headline_words": reached, "headline_extra_words": None if reached is None else reached - words,
        "headline_ci95_low": low, "headline_ci95_high": high, "equivalent": equivalence(curve_M, after),
        "kl_end": _num(float(np.mean(kl_end))) if kl_end else None,
        "kl_in_band": mean_of([kl_in_band(r.kl_per_step, config.interactive.rl.kl_target, ex.kl_band) for r in group]),
        "words_per_story_before": figs[0]["mean_words_before"], "words_per_story_after": mean("mean_words_after"),
        "ppl_per_word_before": start.row["ppl_per_word"],
        "ppl_per_word_after": mean_of([r.student.row["ppl_per_word"] for r in group]),
        "blimp_before": start.row["blimp"], "blimp_after": mean_of([r.student.row["blimp"] for r in group]),
        "distinct_2_before": figs[0]["distinct_2_before"], "distinct_2_after": mean("distinct_2_after"),
        "repeated_sentences_before": figs[0]["repeated_sentences_before"],
        "repeated_sentences_after": mean("repeated_sentences_after"),
        "shared_skeleton_before": figs[0]["shared_skeleton_before"], "shared_skeleton_after": mean("shared_skeleton_after"),
        "distinct_2_corpus": figs[0].get("distinct_2_corpus"),
        "shared_skeleton_corpus": figs[0].get("shared_skeleton_corpus"),
        "flag": "; ".join(flags),
        **{f"{k}_{when}": v for k, v in _probes(start, group).items() for when, v in (("before", v[0]), ("after", v[1]))},
    }


def _probes(start: Student, group: list[Run]) -> dict:
    """Each probe figure of the students (storyjax.experiment's probes): the starting student's and the
    runs' mean."""
    keys = [k for k in start.row if k.endswith(("_empty", "_words", "_tales")) and k.split("_")[0] in
            ("corpus", "heldout")]
    return {k: (start.row[k], mean_of([r.student.row.get(k) for r in group])) for k in keys}


def _half(interval: dict):
    """The half-width of a two-way interval, for the "± x" the table prints (the interval may be skewed:
    its ends are columns of their own)."""
    low, high = interval["ci95_low"], interval["ci95_high"]
    return _num((high - low) / 2) if low is not None and high is not None else None


def _wins(group: list[Run], start: Student, reps: int) -> dict:
    """The row's pairwise figures: the after-story's rate of consistent wins over its before-story (a pair
    won in one order and lost in the other counts 1/2) with a two-way interval, and the judge's position
    bias: how often both orders agreed, and how often the story shown first won."""
    verdicts = [(r.student.pairwise or {}).get("verdicts") for r in group]
    if any(v is None for v in verdicts):
        return {"win_rate": None, "win_ci95": None, "win_consistency": None, "first_slot": None}
    verdicts_SxN = np.asarray([[np.nan if v is None else v for v in seed] for seed in verdicts], np.float64)
    wins = stats.two_way_bootstrap(verdicts_SxN, start.clusters_N, reps=reps)
    position = [r.student.pairwise["position"] for r in group]
    return {"win_rate": _num(wins["mean"]), "win_ci95": _half(wins),
            "win_consistency": mean_of([p["consistency"] for p in position]),
            "first_slot": mean_of([p["first_slot"] for p in position])}


def mean_of(values):
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def curve_check(pretrain: dict[str, Student]) -> dict:
    """The judge's pretraining curve, paired: the last milestone's stories against the first's (same
    openings and keys), the paired difference of judge sums and, with a pairwise judge, the win rate."""
    names = sorted(pretrain, key=milestone_words)
    first, last = pretrain[names[0]], pretrain[names[-1]]
    paired = stats.paired_delta(last.sums_N, first.sums_N, first.clusters_N)
    view = (stats.paired_delta(last.teacher_sums_N, first.teacher_sums_N, first.clusters_N)
            if last.teacher_sums_N is not None and first.teacher_sums_N is not None else {})
    return {"first": names[0], "last": names[-1], "paired_delta": _num(paired["mean"]),
            "teacher_paired_delta": _num(view.get("mean")), "teacher_paired_ci95": _num(view.get("ci95")),
            "paired_ci95": _num(paired["ci95"]), "win_rate": (last.pairwise or {}).get("win_rate"),
            "win_ci95": (last.pairwise or {}).get("ci95")}


def primary_row(table: list[dict], control_milestone: str) -> Optional[dict]:
    """The pre-registered primary comparison's row: RL from the controls' milestone (where RL and its
    controls start from the same student), else the first RL row."""
    rl = [r for r in table if r["run"] == "rl" and r.get("measured_by", "judge") == "judge"]
    return next((r for r in rl if r["milestone"] == control_milestone), rl[0] if rl else None)


def gates(curve: dict, table: list[dict], control_milestone: str) -> dict:
    """The experiment's pre-registered gates (configs/experiment.py), each True, False or None (not measured):
    1. the judge's pretraining curve rises by more than its interval (last vs first milestone, paired; and
       the pairwise win rate above 1/2 where asked); 2. the primary row's (`primary_row`) paired after − before
       interval lies above 0; 3. the same row's gain over the grades-permuted control lies above 0; 4. no row
    is flagged. Gates 2 and 3 read one row, so they cannot pass on different ones. Beside them: whether the
    judge saw the positive control teach (its paired interval above 0; None without one): where it did not,
    a null from the real teacher says nothing."""
    def above(x, ci, zero=0.0):
        return None if x is None or ci is None else bool(x - ci > zero)
    curve_ok = above(curve["paired_delta"], curve["paired_ci95"])
    if curve_ok is not None and curve.get("win_rate") is not None:
        curve_ok = curve_ok and bool(above(curve["win_rate"], curve["win_ci95"], 0.5))
    row = primary_row(table, control_milestone) or {}
    positive = next((r for r in table if r["run"] == "positive" and r.get("measured_by", "judge") == "judge"), None)
    low_above_0 = lambda r, key: None if r is None or r.get(key) is None else bool(r[key] > 0)
    return {"curve_rises": curve_ok, "paired_excludes_0": low_above_0(row, "paired_ci95_low"),
            "beats_grades_permuted": low_above_0(row, "gain_ci95_low"),
            "positive_control_seen": low_above_0(positive, "paired_ci95_low"),
            "no_flag": not any(r["flag"] for r in table)}


def fmt(x, spec=".2f") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def words_text(w) -> str:
    if isinstance(w, str):
        return w
    return f"{w / 1e6:.3g}M" if abs(w) >= 1e6 else f"{w / 1e3:.3g}K"
