"""The experiment's report: table.md and table.csv (one row per run kind and milestone), headline.json, the
plot of held-out scores against pretraining words, and the closing lines with the gates' verdicts."""

from __future__ import annotations

import os

from storyjax import run_outputs
from storyjax.atomic import atomic_file
from storyjax.experiment_analysis import fmt, milestone_words, words_text
from storyjax.gate0 import words as gate0_words

OUTPUTS = ("table.md", "table.csv", "runs.csv", "heldout_vs_words.png", "headline.json")
# table.csv's columns, first the ones a reader compares runs by; every row has them all.
COLUMNS = ("run", "milestone", "milestone_words", "seeds", "input_words", "instrument", "measured_by",
           "instrument_valid", "too_short", "paired_delta", "paired_ci95",
           "paired_ci95_low", "paired_ci95_high", "win_rate", "win_ci95", "win_consistency", "first_slot",
           "gain_vs_grades_permuted", "gain_ci95_low", "gain_ci95_high", "teacher_heldout_delta",
           "teacher_heldout_ci95", "headline_words",
           "headline_extra_words", "headline_ci95_low", "headline_ci95_high", "equivalent", "flag",
           "teacher_first10", "teacher_last10", "teacher_gain", "heldout_before", "heldout_before_ci95",
           "heldout_after", "heldout_after_ci95", "kl_end", "kl_in_band", "words_per_story_before",
           "words_per_story_after", "ppl_per_word_before", "ppl_per_word_after", "blimp_before", "blimp_after",
           "distinct_2_before", "distinct_2_after", "repeated_sentences_before", "repeated_sentences_after",
           "shared_skeleton_before", "shared_skeleton_after", "distinct_2_corpus", "shared_skeleton_corpus",
           *[f"{probe}_{what}_{when}" for probe in ("corpus", "heldout") for what in ("empty", "words", "tales")
             for when in ("before", "after")])
GATES = {"curve_rises": "the judge's pretraining curve rises by more than its interval (last vs first milestone, "
                        "paired)",
         "paired_excludes_0": "the primary RL row's paired after − before interval lies above 0",
         "beats_grades_permuted": "the same row's gain over the grades-permuted control lies above 0",
         "positive_control_seen": "the judge sees the positive control (a teacher known to be right) teach: its "
                                  "paired interval lies above 0",
         "no_flag": "the reward-hacking monitor flags no row",
         "judge_passed_gate0": "the judge (the pre-registered instrument of gates 1-3) passed gate 0"}


def _pm(x, ci, spec=".2f") -> str:
    return f"{fmt(x, spec)} ± {fmt(ci, spec)}" if x is not None else "—"


def _verdict(v) -> str:
    return "not measured" if v is None else "passed" if v else "FAILED"


def _run_label(r: dict) -> str:
    """The run kind, and for a row another instrument measured, which (and whether gate 0 let it count)."""
    by = r.get("measured_by", "judge")
    label = r["run"] if by == "judge" else f"{r['run']} [{by}]"
    return label + (" (failed gate 0)" if r.get("instrument_valid") is False else "")


def _interval(x, low, high, spec=".2f") -> str:
    return f"{fmt(x, spec)} [{fmt(low, spec)}, {fmt(high, spec)}]" if x is not None else "—"


def _headline_text(r: dict, curve_rises=True) -> str:
    if not curve_rises:  # a curve that does not rise converts nothing into pretraining words
        return "no headline (the judge's pretraining curve does not rise)"
    if r["headline_words"] is None:
        return r["equivalent"]
    lo, hi = r["headline_ci95_low"], r["headline_ci95_high"]
    return (f"{words_text(r['headline_words'])} (+{words_text(r['headline_extra_words'])}; 95% "
            f"{words_text(lo) if lo is not None else '—'} – {words_text(hi) if hi is not None else '—'})")


def _table_row(r: dict, gates: dict) -> str:
    """One run's line of table.md."""
    return (f"| {_run_label(r)} | {r['milestone']} | "
            f"{_interval(r['paired_delta'], r['paired_ci95_low'], r['paired_ci95_high'])} | "
            f"{_pm(r['win_rate'], r['win_ci95'])} ({fmt(r['win_consistency'])}, {fmt(r['first_slot'])}) | "
            f"{_interval(r['gain_vs_grades_permuted'], r['gain_ci95_low'], r['gain_ci95_high'])} | "
            f"{fmt(r['heldout_before'])} → {fmt(r['heldout_after'])} | "
            f"{fmt(r['teacher_first10'])} → {fmt(r['teacher_last10'])} | "
            f"{_pm(r['teacher_heldout_delta'], r['teacher_heldout_ci95'])} | {_headline_text(r, gates['curve_rises'])} | "
            f"{fmt(r['kl_end'])} | "
            f"{fmt(r['distinct_2_before'], '.3f')} → {fmt(r['distinct_2_after'], '.3f')} | "
            f"{fmt(r['repeated_sentences_before'], '.3f')} → {fmt(r['repeated_sentences_after'], '.3f')} | "
            f"{fmt(r['shared_skeleton_before'], '.2f')} → {fmt(r['shared_skeleton_after'], '.2f')} | "
            f"{fmt(r['words_per_story_before'], '.1f')} → {fmt(r['words_per_story_after'], '.1f')} | "
            f"{r['flag'] or '—'} |")


def _write_headline(workdir: str, table: list, gates: dict) -> None:
    headline = [{k: r[k] for k in ("run", "milestone", "milestone_words", "input_words", "heldout_before",
                                   "heldout_after", "headline_words", "headline_extra_words", "headline_ci95_low",
                                   "headline_ci95_high", "equivalent")}
                # a curve that does not rise converts nothing into words: the figures stay, marked unusable
                | {"headline_withheld": gates["curve_rises"] is not True} for r in table]
    run_outputs.write_json(os.path.join(workdir, "headline.json"), headline)


def write(workdir: str, config, table: list[dict], curve, before: dict, curve_check: dict, gates: dict,
          judge: str) -> None:
    run_outputs.write_csv(os.path.join(workdir, "table.csv"), table, list(COLUMNS))
    ex = config.experiment
    n = config.evaluate.stories.num_openings * config.evaluate.stories.per_opening
    lines = [f"# Interactive learning from pretraining milestones ({config.preset})", "",
             f"Judge of held-out stories: {judge} ({config.judge.mode}). Training teacher: "
             f"{config.interactive.teacher.name}. {len(ex.seeds)} seeds per RL or control row "
             f"({len(ex.positive_seeds)} for the positive control), {config.interactive.budget_words:,} "
             f"counted words of interaction each; {n} held-out stories per student from "
             f"{config.evaluate.stories.num_openings} openings, the same openings and sampling keys for every "
             "student.", "",
             "| run | milestone | paired Δ (judge, after − before) [95%] | consistent wins after vs before "
             "(consistency, first slot) | gain vs grades_permuted [95%] | "
             "held-out before → after | teacher first → last 10 (teacher-judged) | teacher's paired Δ (teacher-judged) | "
             "RL ≈ pretraining to (95%) | KL end | distinct-2 | repeated sent. | shared skeleton | words/story | flag |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_table_row(r, gates) for r in table]
    lines += ["", "The pretraining-only curve (judge, mean sum of 9 ± 95%): " + ", ".join(
        f"{m} {_pm(s.row['heldout'], s.row['heldout_ci95'])}"
        + (f" (preferred to {curve_check['first']}'s {fmt(s.pairwise['win_rate'])})" if s.pairwise else "")
        for m, s in before.items()) + f"; {curve_check['last']} − {curve_check['first']}, paired: "
        f"{_pm(curve_check['paired_delta'], curve_check['paired_ci95'])}"
        + (f" (the training teacher's view: {_pm(curve_check['teacher_paired_delta'], curve_check['teacher_paired_ci95'])})"
           if curve_check.get("teacher_paired_delta") is not None else "") + ".", "", "Gates (configs/experiment.py):", ""]
    lines += [f"- {text}: **{_verdict(gates[key])}**" for key, text in GATES.items()]
    lines += ["", "Paired Δ: each student's story i against its starting milestone's story i (same opening, same "
              "sampling key), the judge's sums, with a two-way bootstrap interval (openings resampled, a seed "
              "effect on seeds − 1 degrees of freedom added). Consistent wins (judge.mode=pairwise): the "
              "after-story won in both orders (1), lost in both (0), or the orders disagreed (1/2); consistency: "
              "the share of pairs whose orders agreed; first slot: how often the story shown first won. Gain vs "
              "grades_permuted: the paired Δ minus that of the control that learned from the teacher's grades "
              "permuted within each batch (each story keeping its own length bonus), two-way interval. The "
              "primary comparison (gates 2 and 3): RL from the controls' milestone. Teacher's paired Δ: the same held-out pairs "
              "graded by the training teacher (experiment.teacher_view), which the student learned: no evidence by "
              "itself, but beside the judge's it tells a blind judge from a hacked teacher. RL ≈ pretraining to: "
              "the pretraining "
              "words at which the curve reaches the row's mean held-out score (log-linear), the extra words over "
              "the milestone, and a bootstrap interval over openings and seeds (\"below\"/\"above\": beyond the "
              "curve). Flags: the teacher's grades rose while the judge's paired Δ lies below 0, or distinct-2 "
              f"fell by more than {ex.monitor.max_distinct2_drop:.0%} below both the starting student's and the "
              "corpus's own (its stories cut to the same length and count), repeated sentences rose by more than "
              f"{ex.monitor.max_repeat_rise:.2f}, stories sharing a skeleton by more than "
              f"{ex.monitor.max_skeleton_rise:.2f} over the starting student's and the corpus's share, stories "
              f"shrank by more than {ex.monitor.max_length_drop:.0%}, or empty stories rose by more than "
              f"{ex.monitor.max_empty_rise:.2f}. The paper's own number (the training teacher, first → last 10 "
              "batches, and its paired Δ on these stories) is teacher-judged: not evidence by itself. Rows marked "
              "[tales] or [reference_lm] are the same runs measured by those instruments. Per seed: runs.csv.", "",
              "![held-out score against pretraining words](heldout_vs_words.png)", ""]
    run_outputs.write_text(os.path.join(workdir, "table.md"), "\n".join(lines))
    _write_headline(workdir, table, gates)
    _plot(os.path.join(workdir, "heldout_vs_words.png"), curve,
          {milestone_words(m): s.row["heldout_ci95"] for m, s in before.items()}, table)


def _plot(path: str, curve: list, curve_ci95: dict, table: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = sorted(curve)
    if pts:
        ax.errorbar([w for w, _ in pts], [s for _, s in pts], yerr=[curve_ci95.get(w) or 0 for w, _ in pts],
                    fmt="o-", capsize=3, label="pretraining only")
    markers = {"rl": "s", "grades_permuted": "x", "reward_permuted": "v", "length_only": "^", "positive": "*"}
    for r in table:  # the judge's rows: another instrument's rows are the same runs, on another scale
        if r["heldout_after"] is not None and r.get("measured_by", "judge") == "judge":
            ax.errorbar([r["milestone_words"]], [r["heldout_after"]], yerr=[r["heldout_after_ci95"] or 0],
                        fmt=markers.get(r["run"], "s"), capsize=4,
                        label=f"{r['milestone']} + {r['input_words']:,} words ({r['run']})")
    ax.set_xscale("log")
    ax.set_xlabel("pretraining words")
    ax.set_ylabel("held-out score (judge, sum of 9)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_file(path, "wb", suffix=".tmp.png") as f:
        fig.savefig(f, dpi=120, format="png")
    plt.close(fig)


def closing_words(summary: dict, workdir: str) -> str:
    """The experiment's result in words: per row the paired change, the win rate, the gain over the random
    control, the pretraining it is worth with its interval, the monitor's flags, then the gates."""
    lines = [f"Judge: {summary['judge']} ({summary['judge_mode']}); training teacher: {summary['teacher']}."]
    for r in summary["rows"]:
        lines.append(
            f"{r['run']} from {r['milestone']} ({r['seeds']} seeds, {r['input_words']:,} words of interaction): "
            f"{r['instrument']} paired Δ {_interval(r['paired_delta'], r['paired_ci95_low'], r['paired_ci95_high'])} "
            + ("nats a token less" if r.get("measured_by") == "reference_lm" else "of 9")
            + (f", after won {_pm(r['win_rate'], r['win_ci95'])} (orders agreed on {fmt(r['win_consistency'])}, "
               f"first slot won {fmt(r['first_slot'])})" if r["win_rate"] is not None else "")
            + (f", gain over grades_permuted {_interval(r['gain_vs_grades_permuted'], r['gain_ci95_low'], r['gain_ci95_high'])}"
               if r["gain_vs_grades_permuted"] is not None else "")
            + f"; ≈ pretraining to {_headline_text(r, summary['gates']['curve_rises'])}"
            + (f"; FLAGGED: {r['flag']}" if r["flag"] else "") + ".")
    primary = next((r for r in summary["rows"] if r["run"] == "rl" and r.get("measured_by", "judge") == "judge"), None)
    if primary and primary.get("teacher_first10") is not None:
        lines.append(f"The paper's own number, teacher-judged (not evidence by itself): the training teacher's "
                     f"first → last 10 batches {fmt(primary['teacher_first10'])} → {fmt(primary['teacher_last10'])} "
                     f"of 9 ({primary['run']} from {primary['milestone']}).")
    if summary.get("gate0"):
        lines.append(gate0_words(summary["gate0"]) + ("" if summary["gate0"]["passes"] else
                                                      " (experiment.gate0=False: every figure below is unvalidated)"))
    lines.append("Gates: " + "; ".join(f"{GATES[k]}: {_verdict(v)}" for k, v in summary["gates"].items()) + ".")
    if summary.get("seconds"):
        lines.append("Seconds (this invocation): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["seconds"].items())
                     + ".")
    lines.append(f"Table: {workdir}/table.md (and table.csv, runs.csv, heldout_vs_words.png, headline.json).")
    return "\n".join(lines)


def plan_words(summary: dict) -> str:
    """A dry run's plan in words."""
    per = summary["per_run"]
    return "\n".join([
        f"Pretraining milestones: {', '.join(summary['pretraining_milestones'])}.",
        f"{len(summary['runs'])} interactive runs ({', '.join(summary['runs'])}), each {per['steps']:,} steps, "
        f"{per['stories']:,} stories, {per['input_words']:,} counted words.",
        f"{summary['students_evaluated']} students evaluated, {summary['heldout_stories_per_student']} held-out "
        f"stories each; {summary['pairs_judged']:,} pairs judged.",
        f"Teacher: {summary['models']['teacher']}. Judge: {summary['models']['judge']}.",
        ("Missing before a real run: " + "; ".join(summary["missing"]) + ".") if summary["missing"]
        else "Every model is in place."])
