"""The registry of teacher kinds: one line per kind, each defined in a file of its own (kinds/kind.py says
what a kind holds). Everything that depends on what a teacher is reads it from here."""

from __future__ import annotations

import dataclasses
import os

from storyjax import settings_record
from storyjax.teachers import grader_settings
from storyjax.teachers.answer_log import answers_file
from storyjax.teachers.grader_settings import GraderSettings
from storyjax.teachers.kinds import jax_kind, openai_kind, replay_kind, rubric_kind, tales_kind
from storyjax.teachers.kinds.kind import Kind

KINDS = {k.name: k for k in (
    rubric_kind.KIND,
    tales_kind.KIND,
    openai_kind.KIND,
    jax_kind.KIND,
    replay_kind.KIND,
)}


def names() -> tuple:
    return tuple(KINDS)


def get(name: str, key: str = "teacher") -> Kind:
    """The kind `name`, or a one-line refusal naming `key.name` and the kinds there are."""
    if name not in KINDS:
        raise ValueError(f"{key}.name={name!r} is unknown; choose one of {names()}.")
    return KINDS[name]


def pairwise() -> tuple:
    """The kinds that can say which of two stories is the better."""
    return tuple(name for name, k in KINDS.items() if k.pairwise)


def setting(cfg: GraderSettings, name: str):
    """A setting a grader of its kind reads, by its name in a section: a shared one, or one of the sub-sections
    its kind reads (`weights` of a jax teacher is `cfg.jax.weights`); None where it has none."""
    if name in grader_settings.SHARED_FIELDS:
        return getattr(cfg, name)
    sections = [cfg.section(s) for s in (KINDS[cfg.kind].reads if cfg.kind in KINDS else ())]
    return next((getattr(s, name) for s in sections if s is not None and hasattr(s, name)), None)


def record(section, key: str = "teacher") -> GraderSettings:
    """A teacher or judge section (a ConfigDict or dict; a record passes through) as its record, each kind's
    sub-section parsed into that kind's settings record; its values are checked by
    `storyjax.teachers.settings.parse`, which a job calls at its entry."""
    if isinstance(section, GraderSettings):
        return section
    values = settings_record.as_dict(section)
    subs = {k.section: k.settings for k in KINDS.values() if k.section}
    sections = tuple((name, settings_record.parse(record, values.get(name, {}), f"{key}.{name}"))
                     for name, record in subs.items())
    top = {k: v for k, v in values.items() if k not in subs}
    return dataclasses.replace(settings_record.parse(GraderSettings, top, key), sections=sections)


def make_teacher(cfg: GraderSettings, workdir: str = "", process_index: int = 0):
    """Builds the configured teacher; one that cannot work is refused here, before any other work.

    It logs to `answers_file(process_index)` in `workdir` and remembers the answers of all the run's logs,
    so a resumed run gets every answer it already had, whichever process asked. `cfg` is a parsed teacher
    section (`storyjax.teachers.settings.parse`, or `teachers.config.configured` in code)."""
    if not isinstance(cfg, GraderSettings):
        raise TypeError(f"make_teacher takes a parsed teacher section (storyjax.teachers.settings.parse), not "
                        f"{type(cfg).__name__}.")
    log_path = os.path.join(workdir, answers_file(process_index)) if workdir else ""
    return get(cfg.kind).make(dataclasses.replace(cfg, name=cfg.kind), log_path)
