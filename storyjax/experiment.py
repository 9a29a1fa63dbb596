"""The paper's experiment end to end (configs/experiment.py): does interactive learning from a teacher
help a student as much as more pretraining would?

Phases, each resumable (a finished phase leaves its summary.json and is not run again; an unfinished one
resumes from its own checkpoints):
  1. pretraining with word milestones (WORKDIR/pretrain), unless `init_checkpoint` names a run;
  2. every pretraining milestone evaluated (WORKDIR/eval/pretrain/chck_N): the pretraining-only curve;
  3. interactive learning from each of `experiment.milestones` × `experiment.seeds`, same word budget
     (WORKDIR/rl/chck_N_sS), each then evaluated (WORKDIR/eval/rl/chck_N_sS);
  4. the table, the plot and the headline figure: for each RL'd student, the pretraining words at which
     the pretraining-only curve reaches its held-out score (linear interpolation on log words; "not
     reached" outside the curve's range).
Every student's held-out stories are graded by the judge (storyjax.judge), not by the teacher it learned
from; the training teacher's own view (its grades over the first and last 10 batches) sits beside it.
"""

from __future__ import annotations

import json
import math
import os

import ml_collections
import numpy as np
from absl import logging

from storyjax import checkpoint as ckpt_lib
from storyjax import ledger as ledger_lib
from storyjax.atomic import atomic_file
from storyjax import evaluate, interactive, judge as judge_lib, pretrain, run_outputs
from storyjax.interactive_logs import read_batch_stats

FIRST_LAST = 10  # batches averaged at the start and end of learning, as the paper reports


def validate(config: ml_collections.ConfigDict) -> None:
    ex = config.experiment
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
    interactive.validate(_rl_config(config, ex.milestones[0], ex.seeds[0], "."))


def pretraining_milestones(config) -> list[str]:
    words = config.pretrain.ledger.milestones or ledger_lib.BABYLM_MILESTONES  # (): BabyLM's schedule
    return [ledger_lib.milestone_name(int(w)) for w in words]


def _done(workdir: str) -> bool:
    return os.path.exists(os.path.join(workdir, "summary.json"))


def _read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _rl_config(config, milestone: str, seed: int, pretrain_dir: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(config.interactive.to_dict())
    c.init_checkpoint, c.init_milestone, c.seed = pretrain_dir, milestone, int(seed)
    c.progress_bar, c.judge = config.progress_bar, config.judge
    return c


def _evaluate(config, checkpoint: str, out: str) -> dict:
    """One student's evaluation (judge-graded held-out stories, perplexity, BLiMP), run once."""
    if not _done(out):
        c = ml_collections.ConfigDict(config.evaluate.to_dict())
        c.checkpoint, c.init_from_hf, c.progress_bar = checkpoint, "", False
        c.teacher = judge_lib.resolved(config)
        c.data = config.pretrain.data
        evaluate.run(c, out)
    return _read(os.path.join(out, "summary.json"))


def _student_row(summary: dict) -> dict:
    st = summary.get("stories") or {}
    return {"heldout": (st.get("sum") or {}).get("mean"), "heldout_ci95": (st.get("sum") or {}).get("ci95"),
            "heldout_n": (st.get("sum") or {}).get("n"), "words_per_story": st.get("mean_words"),
            "distinct_2": st.get("distinct_2"), "repetition": st.get("repetition_rate"),
            "ppl_per_word": (summary.get("perplexity") or {}).get("ppl_per_word"),
            "blimp": (summary.get("blimp") or {}).get("overall")}


def kl_in_band(kl_per_step: list[float], target: float, band: float):
    """Share of the second half of a run's steps whose KL to the start model lies within target·(1 ± band):
    how well the adaptive controller held the KL where it was asked to (the first half is its settling
    time). None without a target (a fixed KL coefficient)."""
    late = [k for k in kl_per_step[len(kl_per_step) // 2:] if math.isfinite(k)]
    if target <= 0 or not late:
        return None
    return float(np.mean([abs(k - target) <= band * target for k in late]))


def reached_words(curve: list[tuple[float, float]], score: float):
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


def equivalence(curve: list[tuple[float, float]], score) -> str:
    """`reached_words` in words, saying which side of the curve an unreached score lies on."""
    w = reached_words(curve, score)
    if w is not None:
        return _words(w)
    if score is None or not curve:
        return "—"
    pts = sorted(curve)
    return (f"not reached (above the curve's best, {_fmt(max(s for _, s in pts))})" if score > pts[0][1]
            else f"not reached (below the first milestone's {_fmt(pts[0][1])})")


def _pooled(rows: list[dict], key: str):
    """Mean over seeds and the 95% half-width of that mean from each seed's own interval."""
    vals = [(r[key], r.get(f"{key}_ci95")) for r in rows if r.get(key) is not None]
    if not vals:
        return None, None
    mean = float(np.mean([v for v, _ in vals]))
    cis = [c for _, c in vals if c is not None and math.isfinite(c)]
    return mean, (float(math.sqrt(sum(c * c for c in cis)) / len(cis)) if cis else None)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
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

    logging.info("Experiment 2/4: evaluating the %d pretraining milestones (the pretraining-only curve), "
                 "held-out stories graded by the judge: %s", len(milestones), judge_lib.describe(config))
    before = {}
    for m in milestones:
        before[m] = _student_row(_evaluate(config, os.path.join(pretrain_dir, "milestones", m),
                                           os.path.join(workdir, "eval", "pretrain", m)))
        logging.info("  %s: held-out %s ± %s of 9", m, _fmt(before[m]["heldout"]), _fmt(before[m]["heldout_ci95"]))

    runs = [(m, s) for m in config.experiment.milestones for s in config.experiment.seeds]
    after = {}
    for i, (m, seed) in enumerate(runs):
        name = f"{m}_s{seed}"
        rl_dir = os.path.join(workdir, "rl", name)
        if not _done(rl_dir):
            logging.info("Experiment 3/4: interactive learning %d of %d, from %s with seed %d (%d counted words)",
                         i + 1, len(runs), m, seed, config.interactive.budget_words)
            interactive.run(_rl_config(config, m, seed, pretrain_dir), rl_dir)
        rl = _read(os.path.join(rl_dir, "summary.json"))
        stats = read_batch_stats(os.path.join(rl_dir, "batch_stats.csv"))
        row = _student_row(_evaluate(config, rl_dir, os.path.join(workdir, "eval", "rl", name)))
        row.update(milestone=m, seed=seed, steps=rl["steps"], input_words=rl["input_words"],
                   teacher_first10=rl["train_teacher_sum_first10"], teacher_last10=rl["train_teacher_sum_last10"],
                   kl_end=float(np.mean([r["kl"] for r in stats[-FIRST_LAST:]])) if stats else None,
                   kl_in_band=kl_in_band([r["kl"] for r in stats], config.interactive.rl.kl_target,
                                         config.experiment.kl_band))
        after[name] = row
        logging.info("  %s: held-out %s ± %s of 9 (from %s)", name, _fmt(row["heldout"]), _fmt(row["heldout_ci95"]),
                     _fmt(before[m]["heldout"]))

    logging.info("Experiment 4/4: table, plot and headline in %s", workdir)
    curve = _curve(before)
    for row in after.values():
        row["equivalent_pretraining_words"] = reached_words(curve, row["heldout"])
    table = _table(config, before, after)
    _write_table(workdir, table, judge_lib.describe(config), config)
    _plot(os.path.join(workdir, "heldout_vs_words.png"), curve,
          {ckpt_lib.milestone_words(m): r["heldout_ci95"] for m, r in before.items()}, table)
    headline = [{"milestone": r["milestone"], "pretraining_words": r["pretraining_words"],
                 "interactive_words": r["input_words"], "heldout_before": r["heldout_before"],
                 "heldout_after": r["heldout_after"], "equivalent_pretraining_words": r["equivalent_words"],
                 "per_seed": [a["equivalent_pretraining_words"] for a in after.values() if a["milestone"] == r["milestone"]],
                 "per_seed_heldout": [a["heldout"] for a in after.values() if a["milestone"] == r["milestone"]]}
                for r in table]
    run_outputs.write_json(os.path.join(workdir, "headline.json"), headline)
    summary = {"job": "experiment", "pretrain": pretrain_dir, "judge": judge_lib.describe(config),
               "teacher": config.interactive.teacher.name, "milestones": list(config.experiment.milestones),
               "seeds": list(config.experiment.seeds), "rows": table, "curve": curve,
               "outputs": [os.path.join(workdir, f) for f in ("table.md", "table.csv", "heldout_vs_words.png",
                                                               "headline.json")]}
    run_outputs.write_summary(workdir, summary)
    return summary


def _curve(before: dict) -> list[tuple[int, float]]:
    return [(ckpt_lib.milestone_words(m), r["heldout"]) for m, r in before.items() if r["heldout"] is not None]


def _table(config, before: dict, after: dict) -> list[dict]:
    rows = []
    for m in config.experiment.milestones:
        seeds = [a for a in after.values() if a["milestone"] == m]
        mean = lambda k: float(np.mean([a[k] for a in seeds if a.get(k) is not None])) if any(
            a.get(k) is not None for a in seeds) else None
        heldout_after, ci_after = _pooled(seeds, "heldout")
        rows.append({
            "milestone": m, "pretraining_words": ckpt_lib.milestone_words(m), "seeds": len(seeds),
            "input_words": int(np.mean([a["input_words"] for a in seeds])),
            "teacher_first10": mean("teacher_first10"), "teacher_last10": mean("teacher_last10"),
            "heldout_before": before[m]["heldout"], "heldout_before_ci95": before[m]["heldout_ci95"],
            "heldout_after": heldout_after, "heldout_after_ci95": ci_after,
            "kl_end": mean("kl_end"), "kl_target": float(config.interactive.rl.kl_target),
            "kl_band": float(config.experiment.kl_band),
            "kl_in_band": mean("kl_in_band"), "words_per_story_before": before[m]["words_per_story"],
            "words_per_story_after": mean("words_per_story"),
            "ppl_per_word_before": before[m]["ppl_per_word"], "ppl_per_word_after": mean("ppl_per_word"),
            "blimp_before": before[m]["blimp"], "blimp_after": mean("blimp"),
            "distinct_2_before": before[m]["distinct_2"], "distinct_2_after": mean("distinct_2"),
            "repetition_before": before[m]["repetition"], "repetition_after": mean("repetition"),
            "equivalent_words": reached_words(_curve(before), heldout_after),
            "equivalent": equivalence(_curve(before), heldout_after),
        })
    return rows


def _kl_band_words(row: dict) -> str:
    if row["kl_in_band"] is None:
        return "fixed β"
    return f"{100 * row['kl_in_band']:.0f}% in {row['kl_target']:g} ± {row['kl_band'] * row['kl_target']:g}"


def _fmt(x, spec=".2f") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _words(w) -> str:
    return f"{w / 1e6:.3g}M" if w >= 1e6 else f"{w / 1e3:.3g}K"


def _write_table(workdir: str, table: list[dict], judge: str, config) -> None:
    run_outputs.write_csv(os.path.join(workdir, "table.csv"), table)
    lines = [f"# Interactive learning from pretraining milestones ({config.preset})", "",
             f"Judge of held-out stories: {judge}. Training teacher: {config.interactive.teacher.name}. "
             f"{len(config.experiment.seeds)} seeds per milestone, {config.interactive.budget_words:,} counted "
             f"words of interaction each. Held-out: mean grade sum of 9 with 95% intervals over "
             f"{config.evaluate.stories.num_openings * config.evaluate.stories.per_opening} stories per student "
             "(after learning: the mean over seeds, its interval from each seed's story sample; each seed's "
             "score is in headline.json).", "",
             "| milestone | teacher sum first → last 10 | held-out before | held-out after | KL end (in band) | "
             "words/story "
             "| ppl/word | BLiMP | distinct-2 | repetition | RL ≈ pretraining to |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(
            f"| {r['milestone']} | {_fmt(r['teacher_first10'])} → {_fmt(r['teacher_last10'])} | "
            f"{_fmt(r['heldout_before'])} ± {_fmt(r['heldout_before_ci95'])} | "
            f"{_fmt(r['heldout_after'])} ± {_fmt(r['heldout_after_ci95'])} | {_fmt(r['kl_end'])} "
            f"({_kl_band_words(r)}) | "
            f"{_fmt(r['words_per_story_before'], '.1f')} → {_fmt(r['words_per_story_after'], '.1f')} | "
            f"{_fmt(r['ppl_per_word_before'], '.1f')} → {_fmt(r['ppl_per_word_after'], '.1f')} | "
            f"{_fmt(r['blimp_before'], '.3f')} → {_fmt(r['blimp_after'], '.3f')} | "
            f"{_fmt(r['distinct_2_before'], '.3f')} → {_fmt(r['distinct_2_after'], '.3f')} | "
            f"{_fmt(r['repetition_before'], '.3f')} → {_fmt(r['repetition_after'], '.3f')} | "
            f"{r['equivalent']} |")
    lines += ["", "RL ≈ pretraining to: the pretraining words at which the pretraining-only curve (every milestone, "
              "judged the same way) reaches the RL'd students' mean held-out score, interpolated on log words; "
              "\"not reached\" when that score lies outside the curve. KL end: the KL to the start model over the "
              "last 10 batches; in band: the share of the second half of the steps whose KL lay within "
              "rl.kl_target × (1 ± experiment.kl_band), i.e. how well the adaptive controller held it (\"fixed β\": "
              "no target, a fixed coefficient). The teacher's own grades rising while the "
              "judge's do not is the student learning the teacher, not storytelling.", "",
              "![held-out score against pretraining words](heldout_vs_words.png)", ""]
    run_outputs.write_text(os.path.join(workdir, "table.md"), "\n".join(lines))


def _plot(path: str, curve: list, curve_ci95: dict, table: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = sorted(curve)
    if pts:
        ax.errorbar([w for w, _ in pts], [s for _, s in pts], yerr=[curve_ci95.get(w) or 0 for w, _ in pts],
                    fmt="o-", capsize=3, label="pretraining only")
    for r in table:
        if r["heldout_after"] is not None:
            ax.errorbar([r["pretraining_words"]], [r["heldout_after"]], yerr=[r["heldout_after_ci95"] or 0],
                        fmt="s", capsize=4, label=f"{r['milestone']} + {r['input_words']:,} words of interaction")
    ax.set_xscale("log")
    ax.set_xlabel("pretraining words")
    ax.set_ylabel("held-out score (judge, sum of 9)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path, "wb", suffix=".tmp.png") as f:
        fig.savefig(f, dpi=120, format="png")
    plt.close(fig)


def closing_words(summary: dict, workdir: str) -> str:
    """The experiment's result in words: per milestone, the judge's held-out score before → after and the
    pretraining it is worth, and where the table is."""
    lines = [f"Judge: {summary['judge']}; training teacher: {summary['teacher']}."]
    for r in summary["rows"]:
        lines.append(f"{r['milestone']}: held-out {_fmt(r['heldout_before'])} ± {_fmt(r['heldout_before_ci95'])} → "
                     f"{_fmt(r['heldout_after'])} ± {_fmt(r['heldout_after_ci95'])} of 9 after {r['input_words']:,} "
                     f"words of interaction ({r['seeds']} seeds); pretraining-only equivalent: {r['equivalent']} "
                     f"(it starts at {_words(r['pretraining_words'])} words).")
    lines.append(f"Table: {workdir}/table.md (and table.csv, heldout_vs_words.png, headline.json).")
    return "\n".join(lines)
