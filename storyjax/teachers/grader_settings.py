"""A teacher or judge section as a frozen record: the settings every kind shares as fields, each kind's own
sub-section as that kind's settings record (`grader.jax.weights`). Parsed and checked once at a job's entry
(`storyjax.teachers.settings.parse`); the factory, the teachers, the judge and the kinds read this, never the
ConfigDict."""

from __future__ import annotations

import dataclasses
from typing import Any

JUDGE_MODES = ("absolute", "pairwise")


@dataclasses.dataclass(frozen=True)
class GraderSettings:
    name: str = "rubric"               # a kind (storyjax/teachers/kinds/), or "auto" for a judge
    template: str = ""                 # the rubric prompt ("" = templates/rubric_prompt.txt)
    temperature: float = 0.2           # how an LLM teacher's answer is sampled (paper: 0.2)
    seed: int = 0                      # -1 sends none to a server
    shard_across_hosts: bool = False   # several processes: each grades its share of every batch
    max_failed_batches: int = 3        # teacher health: batches in a row with nothing graded before stopping
    max_unscorable_rate: float = 0.9   # ... or this share of the last window's stories unscorable
    health_window: int = 10
    allow_same: bool = False           # a judge's own: run even when it is the training teacher's model
    mode: str = "absolute"             # a judge's own: absolute (grades 0-3) | pairwise (which is better)
    sections: tuple = ()               # ((kind section name, its settings record), ...)

    def __getattr__(self, name: str) -> Any:
        # Reached only when no field has the name: a kind's sub-section, read as `grader.jax.weights`.
        for section, record in self.__dict__.get("sections", ()):
            if section == name:
                return record
        raise AttributeError(f"a teacher section has no setting or sub-section {name!r}")

    def section(self, name: str, default: Any = None) -> Any:
        return next((record for section, record in self.sections if section == name), default)

    @property
    def kind(self) -> str:
        """The kind it grades with: a judge's "auto" is the in-process jax teacher when it has weights, else
        the rubric."""
        if self.name == "auto":
            jax_section = self.section("jax")
            return "jax" if jax_section is not None and jax_section.weights else "rubric"
        return self.name


JUDGE_ONLY = ("allow_same", "mode")
SHARED_FIELDS = tuple(f.name for f in dataclasses.fields(GraderSettings) if f.name != "sections")
SHARED = tuple(f for f in SHARED_FIELDS if f not in JUDGE_ONLY)  # a teacher section's top level

