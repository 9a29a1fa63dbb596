"""The registry of teacher kinds: one line per kind, each defined in a file of its own (kinds/kind.py says
what a kind holds). Everything that depends on what a teacher is reads it from here."""

from __future__ import annotations

import os

import ml_collections

from storyjax.teachers.answer_log import answers_file
from storyjax.teachers.kinds import jax_kind, openai_kind, replay_kind, rubric_kind, tales_kind
from storyjax.teachers.kinds.kind import Kind

KINDS = {k.name: k for k in (
    rubric_kind.KIND,
    tales_kind.KIND,
    openai_kind.KIND,
    jax_kind.KIND,
    replay_kind.KIND,
)}


# the settings every kind reads, at the top of a teacher section; each kind's own live in its sub-section
SHARED = ("name", "template", "temperature", "seed", "shard_across_hosts", "max_failed_batches",
          "max_unscorable_rate", "health_window")


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


def resolve(cfg: ml_collections.ConfigDict) -> str:
    """The kind a section names; a judge's "auto" is the in-process jax teacher when it has weights, else
    the rubric."""
    if cfg.name == "auto":
        return "jax" if cfg.jax.weights else "rubric"
    return cfg.name


def flat(cfg: ml_collections.ConfigDict, name: str | None = None) -> ml_collections.ConfigDict:
    """The settings a teacher of kind `name` (default: `cfg.name`) reads: the shared ones and its sections'."""
    name = name or cfg.name
    merged = {k: cfg[k] for k in SHARED if k in cfg}
    for section in KINDS[name].reads if name in KINDS else ():
        merged.update(cfg[section].to_dict() if section in cfg else {})
    merged["name"] = name
    return ml_collections.ConfigDict(merged)


def make_teacher(cfg: ml_collections.ConfigDict, workdir: str = "", process_index: int = 0):
    """Builds the configured teacher; one that cannot work is refused here, before any other work.

    It logs to `answers_file(process_index)` in `workdir` and remembers the answers of all the run's logs,
    so a resumed run gets every answer it already had, whichever process asked. `cfg` is a teacher section
    (storyjax/teachers/config.py); each kind reads its shared and own settings."""
    log_path = os.path.join(workdir, answers_file(process_index)) if workdir else ""
    return get(cfg.name).make(flat(cfg), log_path)
