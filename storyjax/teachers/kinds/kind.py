"""What a kind of teacher is, in one record that every part of storyjax reads: the factory builds it, the
settings check applies its rules, the judge asks it what model it is and when two graders grade alike,
the experiment's dry run asks what model it needs, and a run whose teacher stopped grading asks how to fix
it. A new kind is one file defining its `Kind` plus its line in `storyjax.teachers.kinds`."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import re
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Kind:
    """The callables below take a parsed teacher section (storyjax.teachers.grader_settings.GraderSettings),
    read as `cfg.jax.weights`, and where they say so the key it sits under ("teacher", "judge")."""
    name: str
    # (its parsed section, read as `cfg.jax.weights`; where its log goes) → a Teacher;
    # or "module:function" naming it, imported when a teacher of this kind is built (the registry loads no
    # teacher's code: the rubric's run never imports the in-process LLM's)
    build: Callable[..., object] | str
    section: str = ""                 # its own settings' sub-section ("": it has none)
    settings: type | None = None      # that sub-section's frozen record: its settings, types and defaults
    reads: tuple = ()                 # the sub-sections it reads (its own, and any it shares with another kind)
    # (sub-section, setting, acceptable, the fix): its enumerated and numeric settings, checked before any work
    rules: tuple = ()
    # the settings that, equal in two graders of this kind, make them grade alike (the judge then reuses the
    # teacher's grades); () for a kind without settings: any two grade alike
    grades_alike: tuple = ()
    # what names the model behind a grader of this kind (a judge sharing one with the teacher is the teacher)
    identity: Callable[..., set] = lambda cfg: set()
    model: Callable[..., str] = lambda cfg: ""  # the model it reads, in a word
    # (section, its key) → what a dry run reports the kind needs ("not set" / "not on this machine": missing)
    needs: Callable[..., str] | None = None
    # (section, its key): refuses, in one line, what its rules cannot say (a template file it would read)
    check_settings: Callable[..., None] = lambda cfg, key: None
    # (section, its key): refuses, in one line, files it reads that are missing (weights, a replayed log)
    check_files: Callable[..., None] = lambda cfg, key: None
    # (section, its key) → what to look at when a teacher of this kind stops grading
    fix_dead: Callable[..., str] = lambda cfg, key: "the teacher's settings"
    pairwise: bool = False            # can say which of two stories is the better (Teacher.prefer)
    # whether these settings reward the student with the teacher's output distribution (not BabyLM-compliant)
    rewards_distribution: Callable[..., bool] = lambda cfg: False

    @property
    def defaults(self) -> dict:
        """Its sub-section's settings and their defaults (what the config files start from)."""
        return dataclasses.asdict(self.settings()) if self.settings else {}

    def make(self, cfg, log_path: str = ""):
        """A teacher of this kind from its parsed section; a kind that reads no settings (the offline graders)
        is built from none and keeps no log."""
        build = self.build
        if isinstance(build, str):
            module, _, name = build.partition(":")
            build = getattr(importlib.import_module(module), name)
        return build(cfg, log_path) if self.reads else build()

    def needed(self, cfg, key: str) -> str:
        return self.needs(cfg, key) if self.needs else self.name


def model_name(name: str) -> str:
    """A model's name as a hub id, folder or file would say it: "meta-llama/Llama-3.1-8B-Instruct",
    "/w/Llama-3.1-8B-Instruct/" and "Llama-3.1-8B-Instruct.Q4_K_M.gguf" are all "llama-3.1-8b-instruct"."""
    base = os.path.basename(str(name).rstrip("/")).lower()
    base = re.sub(r"\.gguf$", "", base)
    return re.sub(r"[.-](q\d\w*|f16|f32|bf16|fp16)$", "", base)


def fingerprint(path: str) -> str:
    """A content fingerprint of a weights file (its size and first and last 4 MiB; hashing every byte of an
    8B model would take a minute) or of a folder's config and weight index, so a copy elsewhere matches."""
    path = os.path.realpath(path)
    if os.path.isdir(path):
        parts = [os.path.join(path, f) for f in ("config.json", "model.safetensors.index.json")]
        parts = [p for p in parts if os.path.isfile(p)] or sorted(
            os.path.join(path, f) for f in os.listdir(path) if f.endswith((".safetensors", ".gguf")))[:1]
        return "|".join(fingerprint(p) for p in parts) or path
    if not os.path.isfile(path):
        return path
    digest, size = hashlib.sha256(), os.path.getsize(path)
    with open(path, "rb") as f:
        digest.update(f.read(4 << 20))
        if size > 8 << 20:
            f.seek(size - (4 << 20))
            digest.update(f.read())
    return f"{size}:{digest.hexdigest()[:16]}"
