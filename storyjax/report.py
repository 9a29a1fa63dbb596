"""Plotted reports of runs: `python -m storyjax.report --workdir=DIR [--workdir=DIR2 ...] --out=OUT`.

Interactive runs (their `batch_stats.csv`) are drawn against counted input words, as the paper draws its
figures: the teacher's grade per criterion, the sum out of 9, story length, KL to the start model, the
student's entropy per word of its own stories, and the reward; held-out scores measured at milestones
(`milestone_eval.jsonl`) are drawn too. Pretraining runs (their `ledger.jsonl`) give the training loss
against words seen. Several workdirs share the axes (e.g. students pretrained on different amounts).
`OUT/report.md` links the PNGs and tables start and end values: means over the first and last 10 batches,
the paper's summary.
"""

from __future__ import annotations

import json
import os

import numpy as np

from storyjax.atomic import write_text
from storyjax.interactive_logs import read_batch_stats as read_rows
from storyjax.stats import score_ci

FIRST_LAST = 10
# (file stem, title, [(batch_stats column, label)], y label)
INTERACTIVE_FIGURES = [
    ("scores", "Teacher grade per criterion", [("readability_mean", "readability"), ("coherence_mean", "coherence"),
                                               ("creativity_mean", "creativity")], "mean grade (0-3)"),
    ("teacher_sum", "Teacher grade sum", [("teacher_sum_mean", "sum")], "mean sum of grades (0-9)"),
    ("length", "Story length", [("mean_words", "words")], "words per story"),
    ("kl", "KL to the start model", [("kl", "KL")], "nats per story"),
    ("entropy_per_word", "Entropy per word", [("entropy_per_word", "entropy")], "nats per word"),
    ("reward", "Reward", [("reward_mean", "reward")], "mean reward"),
]
TABLE = [("teacher_sum_mean", "teacher sum /9"), ("readability_mean", "readability"),
         ("coherence_mean", "coherence"), ("creativity_mean", "creativity"), ("mean_words", "words/story"),
         ("kl", "KL"), ("entropy_per_word", "entropy/word"), ("reward_mean", "reward"),
         ("unscorable_rate", "unscorable")]


def read_batch_stats(workdir: str) -> dict[str, np.ndarray]:
    """batch_stats.csv as one array per column."""
    rows = read_rows(os.path.join(workdir, "batch_stats.csv"))
    if not rows:
        raise ValueError(f"{workdir}/batch_stats.csv has no steps yet; run the interactive job first.")
    return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}


def read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def milestone_evals(workdir: str) -> list[dict]:
    """One record per milestone (a rerun that evaluated a milestone again keeps the latest record)."""
    by_name = {r["name"]: r for r in read_jsonl(os.path.join(workdir, "milestone_eval.jsonl"))}
    return sorted(by_name.values(), key=lambda r: r["words"])


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last `window` finite values (NaN batches, with nothing graded, are skipped)."""
    out = np.full_like(y, np.nan, dtype=np.float64)
    for i in range(len(y)):
        part = y[max(0, i - window + 1):i + 1]
        part = part[np.isfinite(part)]
        if len(part):
            out[i] = part.mean()
    return out


def _kind(workdir: str) -> str:
    if os.path.exists(os.path.join(workdir, "batch_stats.csv")):
        return "interactive"
    if os.path.exists(os.path.join(workdir, "ledger.jsonl")):
        return "pretrain"
    raise ValueError(f"{workdir} holds neither an interactive run (batch_stats.csv) nor a pretraining run "
                     "(ledger.jsonl); pass the --workdir of a storyjax run.")


def _figure(path: str, title: str, ylabel: str, xlabel: str, series) -> None:
    """`series`: (label, x, y raw or None, y smoothed, marker?[, 95% half-widths]) per line."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for n, (label, x, raw, line, marker, *err) in enumerate(series):
        color = f"C{n % 10}"
        if raw is not None:
            ax.plot(x, raw, color=color, alpha=0.2, linewidth=0.8)
        ax.plot(x, line, color=color, label=label, linewidth=1.8, marker=marker)
        if err and err[0] is not None:
            ax.errorbar(x, line, yerr=[e or 0 for e in err[0]], fmt="none", ecolor=color, capsize=3)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _label(workdir: str, labels: list[str], i: int) -> str:
    return labels[i] if i < len(labels) else os.path.basename(os.path.normpath(workdir))


def _summary(workdir: str) -> dict:
    """A run's summary.json ({} while the run has not finished)."""
    path = os.path.join(workdir, "summary.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def heldout_series(workdir: str, label: str) -> list:
    """The held-out score of a run against counted words: before learning (0 words, with its interval), at
    each milestone, after (with its interval); the training teacher's, and the judge's when it is another."""
    s = _summary(workdir)
    recs = milestone_evals(workdir)
    out = []
    for who, key, pick in (("teacher", "heldout_score", lambda h: h), ("judge", "judge_score",
                                                                         lambda h: h.get("judge") or {})):
        start, end = pick(s.get("heldout_start") or {}), pick(s.get("heldout_end") or {})
        if who == "judge" and not start.get("independent", end.get("independent")):
            continue  # the teacher itself: its line is already drawn
        pts = [(0, start["score"], start.get("score_ci95"))] if start.get("score") is not None else []
        pts += [(r["words"], r[key], None) for r in recs if r.get(key) is not None]
        if end.get("score") is not None:
            pts.append((s["input_words"], end["score"], end.get("score_ci95")))
        if pts:
            out.append((f"{label}: {who}", [p[0] for p in pts], None, [p[1] for p in pts], "o", [p[2] for p in pts]))
    return out


def heldout_table(runs: list) -> list[str]:
    """Held-out stories before → after learning (summary.json), the training teacher beside the judge: a
    gain only the teacher sees is the student learning that teacher, not storytelling."""
    rows = []
    for w, label in runs:
        s = _summary(w)
        if not s:
            continue
        start, end = s.get("heldout_start") or {}, s.get("heldout_end") or {}
        rows.append(f"| {label} | {s.get('teacher', '—')} | {score_ci(start)} → {score_ci(end)} | "
                    f"{s.get('judge', '—')} | {score_ci(start.get('judge') or {})} → {score_ci(end.get('judge') or {})} |")
    if not rows:
        return []
    return ["## Held-out stories before → after (mean grade sum of 9, 95% interval)", "",
            "| run | teacher | teacher's grades | judge | judge's grades |", "|---|---|---|---|---|", *rows, ""]


def interactive_figures(interactive: list, out: str, window: int) -> list:
    """(stem, title) of each figure drawn from the interactive runs' batch statistics and held-out scores."""
    figures = []
    for stem, title, columns, ylabel in INTERACTIVE_FIGURES if interactive else []:
        series = []
        for _, label, stats in interactive:
            for column, name in columns:
                if column not in stats:
                    continue  # a run logged before this column existed
                y = stats[column]
                series.append((label if len(columns) == 1 else f"{label}: {name}", stats["input_words"], y,
                               smooth(y, window), None))
        if series:
            _figure(os.path.join(out, f"{stem}.png"), f"{title} (trailing mean of {window} batches)", ylabel,
                    "counted input words", series)
            figures.append((stem, title))
    series = [line for w, label, _ in interactive for line in heldout_series(w, label)]
    if series:
        title = "Held-out score before, at milestones, after (95% intervals)"
        _figure(os.path.join(out, "heldout_score.png"), title, "mean sum (0-9)", "counted input words", series)
        figures.append(("heldout_score", title))
    return figures


def pretrain_figures(pretrain: list, out: str, window: int) -> list:
    series = []
    for w, label in pretrain:
        steps = [e for e in read_jsonl(os.path.join(w, "ledger.jsonl")) if e.get("event") == "step"]
        if steps:
            x = np.asarray([e["words_seen"] for e in steps])
            y = np.asarray([e["loss"] for e in steps])
            series.append((label, x, y, smooth(y, max(1, window // 2)), None))
    if not series:
        return []
    _figure(os.path.join(out, "pretrain_loss.png"), "Pretraining loss", "next-token loss (nats)", "words seen", series)
    return [("pretrain_loss", "Pretraining loss")]


def start_end_table(interactive: list) -> list:
    """Markdown lines: each interactive run's columns, first batches → last batches."""
    if not interactive:
        return []
    lines = [f"## Start and end (means over the first and last {FIRST_LAST} batches)", "",
             "| run | steps | input words | " + " | ".join(name for _, name in TABLE) + " |",
             "|---|---|---|" + "---|" * len(TABLE)]
    for _, label, stats in interactive:
        cells = []
        for column, _ in TABLE:
            y = stats.get(column)
            if y is None:
                cells.append("—")
                continue
            first, last = np.nanmean(y[:FIRST_LAST]), np.nanmean(y[-FIRST_LAST:])
            cells.append(f"{first:.3g} → {last:.3g}")
        lines.append(f"| {label} | {len(stats['step'])} | {int(stats['input_words'][-1]):,} | "
                     + " | ".join(cells) + " |")
    return lines + [""]


def milestone_tables(interactive: list) -> list:
    lines = []
    for w, label, _ in interactive:
        recs = milestone_evals(w)
        if recs:
            keys = [k for k in ("heldout_score", "judge_score", "readability", "coherence", "creativity",
                                "blimp_overall")
                    if any(k in r for r in recs)]
            lines += [f"### Milestone evaluations: {label}", "", "| milestone | words | " + " | ".join(keys) + " |",
                      "|---|---|" + "---|" * len(keys)]
            lines += [f"| {r['name']} | {r['words']:,} | " + " | ".join(
                f"{r[k]:.3f}" if isinstance(r.get(k), (int, float)) else "—" for k in keys) + " |" for r in recs]
            lines.append("")
    return lines


def write_report(workdirs: list[str], out: str, labels: list[str] = (), window: int = 10) -> str:
    import matplotlib
    matplotlib.use("Agg")
    if not workdirs:
        raise ValueError("give at least one --workdir.")
    os.makedirs(out, exist_ok=True)
    runs = [(os.path.abspath(w), _label(w, list(labels), i), _kind(os.path.abspath(w))) for i, w in enumerate(workdirs)]
    interactive = [(w, label, read_batch_stats(w)) for w, label, kind in runs if kind == "interactive"]
    pretrain = [(w, label) for w, label, kind in runs if kind == "pretrain"]
    lines = ["# storyjax report", ""]
    lines += ["Runs: " + ", ".join(f"`{label}` ({kind}, {w})" for w, label, kind in runs), ""]
    for stem, title in interactive_figures(interactive, out, window) + pretrain_figures(pretrain, out, window):
        lines += [f"## {title}", "", f"![{title}]({stem}.png)", ""]
    lines += start_end_table(interactive)
    lines += heldout_table([(w, label) for w, label, _ in interactive])
    lines += milestone_tables(interactive)
    return write_text(os.path.join(out, "report.md"), "\n".join(lines))


def main(argv):
    del argv
    from absl import flags
    path = write_report(flags.FLAGS.workdir, flags.FLAGS.out, flags.FLAGS.label or [], flags.FLAGS.smooth)
    print(f"Wrote {path}")


if __name__ == "__main__":
    from absl import app, flags
    flags.DEFINE_multi_string("workdir", None, "A run's --workdir; repeat to draw several runs on the same axes.")
    flags.DEFINE_multi_string("label", None, "Legend label per --workdir, in order (default: folder names).")
    flags.DEFINE_string("out", None, "Folder for the PNGs and report.md.")
    flags.DEFINE_integer("smooth", 10, "Trailing-mean window in batches.")
    flags.mark_flags_as_required(["workdir", "out"])
    app.run(main)
