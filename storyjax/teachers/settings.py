"""A teacher section's settings checked before any work: every enumerated value and number (the shared
rules here, each kind's in its Kind), and the files the chosen kind reads (the in-process teacher's weights,
a replayed log). Teachers check again when built; this is what a job calls from its `validate`, so a bad
value is refused before pretraining or a tokenizer starts.
"""

from __future__ import annotations

from storyjax.setting_checks import count, finite
from storyjax.teachers import kinds
from storyjax.teachers.grader_settings import JUDGE_MODES, GraderSettings
from storyjax.teachers.prompt_templates import load_template


def _count(least: int):
    return lambda x: count(x, least)


# (section, setting, acceptable, the fix): the settings every kind shares; each kind adds its own (Kind.rules)
SHARED_RULES = (
    ("", "temperature", lambda x: finite(x) and x >= 0, "use a temperature >= 0 (paper: 0.2)"),
    ("", "seed", _count(-1), "use -1 (none sent) or a seed >= 0"),
    ("", "max_failed_batches", _count(0), "use 0 (never stop for this) or a number of batches"),
    ("", "health_window", _count(1), "use 1 batch or more"),
    ("", "max_unscorable_rate", lambda x: finite(x) and 0 <= x <= 1, "must be in 0..1 (1: never stop for this)"),
)


def rules() -> tuple:
    """Every rule of a teacher section: the shared ones, then each kind's (a section holds every kind's
    settings, so each is checked whichever kind is chosen)."""
    return SHARED_RULES + tuple(rule for k in kinds.KINDS.values() for rule in k.rules)


def parse(section, key: str = "teacher", weights: bool = True) -> GraderSettings:
    """A teacher or judge section (a ConfigDict, or a record already parsed) as its checked record: each kind's
    sub-section parsed into that kind's settings record, then `check`."""
    section = kinds.record(section, key)
    check(section, key, weights)
    return section


def check(cfg: GraderSettings, key: str = "teacher", weights: bool = True) -> None:
    """Refuses, in one line naming `key.setting`, the value and the fix, whatever no teacher could use;
    `weights=False` (a dry run, which reports what is missing) leaves the files a kind reads alone."""
    names = kinds.names() + ("auto",) * (key == "judge")
    problems = [] if cfg.name in names else [f"{key}.name={cfg.name!r} is unknown; choose one of {names}"]
    if cfg.mode not in JUDGE_MODES:
        problems.append(f"{key}.mode={cfg.mode!r}: choose 'absolute' (grades on 0-3) or 'pairwise' (which of two "
                        "stories is the better)")
    for section, name, ok, fix in rules():
        where = cfg.section(section) if section else cfg
        if where is not None and hasattr(where, name) and not ok(getattr(where, name)):
            problems.append(f"{key}.{section + '.' if section else ''}{name}={getattr(where, name)!r}: {fix}")
    if problems:
        raise ValueError("; ".join(problems) + ".")
    load_template(cfg.template, f"{key}.template")  # a missing file, or one without {prompt} and {story}
    for kind in kinds.KINDS.values():
        kind.check_settings(cfg, key)
    if weights:
        kinds.get(cfg.kind, key).check_files(cfg, key)
