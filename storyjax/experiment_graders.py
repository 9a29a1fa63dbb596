"""What grades every student of the experiment besides its judge's absolute grades: the judge comparing two
students' stories in both orders, the training teacher's own view of them, and the reference LM. Each is
loaded on first use, and each answer is written beside the student's evaluation once and read back on a
rerun."""

from __future__ import annotations

import json
import os
from typing import NamedTuple, Optional

import numpy as np

from storyjax import instruments, preemption, run_outputs, stats
from storyjax import experiment_analysis as analysis
from storyjax import judge as judge_lib
from storyjax.teachers import make_teacher
from storyjax.grades import GradingCancelled


def _read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


class PairwiseJudge:
    """judge.mode=pairwise: the judge, loaded once on first use, asked which of two students' stories from
    the same opening and key is the better (both orders); each comparison is written once (pairwise.json and
    pairwise.jsonl beside the student's evaluation) and read back on a rerun."""

    def __init__(self, config, workdir: str):
        self.config, self.workdir, self.judge = config, workdir, None
        self.on = config.judge.mode == "pairwise"

    def compare(self, student: analysis.Student, reference: analysis.Student, out: str):
        if not self.on:
            return None
        path = os.path.join(out, "pairwise.json")
        if os.path.exists(path):
            return _read(path)
        if [r["prompt"] for r in student.records] != [r["prompt"] for r in reference.records]:
            raise ValueError(f"{out}: the two students' held-out stories do not pair up (different openings); "
                             "evaluate both with the same evaluate.stories settings.")
        openings = student.openings_N
        try:
            prefs = self.teacher().prefer(openings, [r["story"] for r in student.records],
                                      [r["story"] for r in reference.records])
        except GradingCancelled:
            raise preemption.Preempted("SIGTERM while stories were being judged in pairs; rerun to resume.") from None
        # Consistent hard wins (a pair whose two orders disagree counts 1/2): a judge that always picks one
        # slot then sits at 0.5 with its inconsistency in plain view, not at 0.5 from averaged probabilities.
        verdicts = stats.hard_wins(prefs.p_a_first_B, prefs.p_a_second_B)
        result = {**stats.win_rate(verdicts, student.clusters_N),
                  "soft_win_rate": stats.win_rate(prefs.p_a_B, student.clusters_N)["win_rate"],
                  "position": stats.position_bias(prefs.p_a_first_B, prefs.p_a_second_B),
                  "verdicts": [_json_float(v) for v in verdicts]}
        number = lambda x: _json_float(float(x))
        run_outputs.write_text(os.path.join(out, "pairwise.jsonl"), "".join(
            json.dumps({"opening": o, "a": r["story"], "b": b["story"], "p_a": number(p), "p_a_first": number(f),
                        "p_a_second": number(g), "verdict": _json_float(v)}) + "\n"
            for o, r, b, p, f, g, v in zip(openings, student.records, reference.records, prefs.p_a_B,
                                           prefs.p_a_first_B, prefs.p_a_second_B, verdicts)))
        run_outputs.write_json(path, result)
        return result

    def teacher(self):
        """The judge, loaded on first use (gate 0 grades with it too)."""
        if self.judge is None:
            os.makedirs(os.path.join(self.workdir, "judge"), exist_ok=True)
            self.judge = make_teacher(judge_lib.resolved(self.config.judge), os.path.join(self.workdir, "judge"))
        return self.judge

    def close(self):
        if self.judge is not None:
            self.judge.close()


def _json_float(x):
    """A float for JSON, None for NaN (unscorable)."""
    return float(x) if x == x else None


class TeacherView:
    """`experiment.teacher_view`: the training teacher's own grades of every student's held-out stories
    (teacher_view.json beside its evaluation; loaded once, on first use). The student learned this grader, so
    a rise under it is no evidence of better stories; beside the judge's it tells a blind judge (both flat
    where the stories changed) from a hacked teacher (the teacher's up, the judge's down)."""

    def __init__(self, config, workdir: str):
        self.config, self.workdir, self.teacher = config, workdir, None
        self.on = bool(config.experiment.teacher_view)

    def sums(self, student: analysis.Student, out: str):
        if not self.on:
            return None
        path = os.path.join(out, "teacher_view.json")
        if not os.path.exists(path):
            if self.teacher is None:
                os.makedirs(os.path.join(self.workdir, "teacher_view"), exist_ok=True)
                self.teacher = make_teacher(self.config.interactive.teacher, os.path.join(self.workdir, "teacher_view"))
            try:
                grades = self.teacher.grade_batch(student.openings_N, [r["story"] for r in student.records])
            except GradingCancelled:
                raise preemption.Preempted("SIGTERM while the teacher graded held-out stories; rerun to resume.") from None
            run_outputs.write_json(path, {"teacher": self.teacher.name, "sums": [
                float(row.sum()) if np.isfinite(row).all() else None for row in grades.scores_Bx3]})
        return np.asarray([np.nan if x is None else x for x in _read(path)["sums"]], np.float64)

    def close(self):
        if self.teacher is not None:
            self.teacher.close()


class Graders(NamedTuple):
    """What grades every evaluated student besides the judge's absolute grades, each loaded on first use."""
    pairs: PairwiseJudge
    view: TeacherView
    lm: instruments.ReferenceLM


def measured(student: analysis.Student, reference: Optional[analysis.Student], out: str,
              graders: Graders) -> analysis.Student:
    """`student` with what the graders say of it: pairwise against `reference`, the training teacher's view,
    the reference LM's log-probs."""
    student.pairwise = graders.pairs.compare(student, reference, out) if reference is not None else None
    student.teacher_sums_N = graders.view.sums(student, out)
    student.lm_logprobs = graders.lm.logprobs(student, out)
    return student


