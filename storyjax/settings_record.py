"""A config section parsed into a frozen, typed record, once, at a job's entry.

The ml_collections files are the user's surface (`--config.KEY=VALUE` on the command line); code below a
job's entry reads frozen dataclasses, whose `__post_init__` refuses what no run can use. `parse` maps a
section onto such a record by field name, recursing into fields that are records themselves, and refuses,
in one line naming the key, a setting the record does not have or one it needs and was not given. Sequences
become tuples, so a record holds nothing mutable and two runs' records compare equal when their settings do.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Mapping

import ml_collections


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _record_type(hint) -> type | None:
    """The dataclass a field holds (also `Record | None`), or None for a plain value."""
    for t in (hint, *typing.get_args(hint)):
        if isinstance(t, type) and dataclasses.is_dataclass(t):
            return t
    return None


def frozen(value: Any) -> Any:
    """Lists and tuples (nested too) as tuples: what a frozen record may hold."""
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    return value


def as_dict(section: Any) -> dict:
    """A section's settings as a plain dict (nested sections as dicts)."""
    if hasattr(section, "to_dict"):
        return section.to_dict()
    if isinstance(section, Mapping):
        return dict(section)
    raise ValueError(f"expected a config section, got {type(section).__name__}: {section!r}")


def parse(cls: type, section: Any, key: str, skip: tuple = ()):
    """`cls` built from `section` (a ConfigDict or dict; a record of `cls` passes through). Keys in `skip`
    belong to the job's entry (its name, the recipe it starts with) and are not read here."""
    if isinstance(section, cls):
        return section
    values = {k: v for k, v in as_dict(section).items() if k not in skip}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{key or 'the config'} has settings this job does not read: {unknown}; remove them "
                         f"(its settings are {sorted(fields)}).")
    kwargs = {}
    for name, field in fields.items():
        where = f"{key}.{name}" if key else name
        if name not in values:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ValueError(f"{where} is missing: give --config.{where}=VALUE.")
            continue
        record = _record_type(_hints(cls)[name])
        value = values[name]
        kwargs[name] = _nested(record, value, where) if record and value is not None else frozen(value)
    return cls(**kwargs)


def _nested(record: type, value: Any, key: str):
    """A field's record: through its own `from_config` where it has one (its checks live there), given the
    record's defaults for any setting the section leaves out."""
    if isinstance(value, record) or not hasattr(record, "from_config"):
        return parse(record, value, key)
    given = as_dict(value)
    names = [f.name for f in dataclasses.fields(record) if f.init]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f"{key} has settings this job does not read: {unknown}; its settings are {sorted(names)}.")
    defaults = dataclasses.asdict(record()) if all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(record)) else {}
    return record.from_config(ml_collections.ConfigDict({**defaults, **given}))


def problems(checks) -> None:
    """Raises one ValueError listing every `(ok, why)` in `checks` that failed, or returns."""
    failed = [why for ok, why in checks if not ok]
    if failed:
        raise ValueError("; ".join(failed) + ".")
