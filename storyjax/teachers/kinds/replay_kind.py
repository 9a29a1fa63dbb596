"""A run's answers.jsonl replayed (parsed as the server's answers were, so it reads the openai section too)."""

from __future__ import annotations

import dataclasses
import os

from storyjax.teachers.kinds.kind import Kind


@dataclasses.dataclass(frozen=True)
class ReplaySettings:
    answers: str = ""  # a run's answers.jsonl


def check_files(cfg, key: str) -> None:
    if not os.path.isfile(cfg.replay.answers):
        raise ValueError(f"{key}.replay.answers={cfg.replay.answers!r} is not a file: give a run's answers.jsonl.")


KIND = Kind(
    name="replay", build="storyjax.teachers.replay:from_section", section="replay",
    settings=ReplaySettings, reads=("openai", "replay"), grades_alike=("answers",),
    identity=lambda cfg: {f"replayed answers {os.path.realpath(cfg.replay.answers)}"},
    model=lambda cfg: cfg.replay.answers, check_files=check_files,
    fix_dead=lambda cfg, key: f"{key}.replay.answers={cfg.replay.answers} (stories it never graded are unscorable)")
