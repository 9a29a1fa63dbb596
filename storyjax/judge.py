"""The judge: the grader of held-out stories, which should not be the teacher the student trains on.

A score that rises under the grader the student learned from can be reward hacking: the student learns
that grader's blind spots, not storytelling. Held-out stories are therefore graded twice, by the
training teacher and by the judge (`config.judge`, the same shape as `config.teacher`), and both are
reported side by side; the gap between them is the hacking made visible.

`judge.name="auto"` (the default): the in-process `jax` teacher when `judge.jax.weights` names an instruct
model, else the offline `rubric`. A judge that is the training teacher's own model (both the rubric; the
same weights file by content fingerprint; the same Hugging Face folder; the same server and model name;
or, across kinds, the same model name) is refused, before any work, unless `judge.allow_same=True` or the
judge was left unchosen (`auto` with no judge weights: the offline quickstart, whose rubric both teaches and
judges); either way every summary, table and report says "judge = teacher" where its figures stand. A judge grading with exactly the
teacher's settings is not asked twice: the teacher's grades are reused. Both questions are answered here
and nowhere else: `same_model` (is it the teacher's model?) and `is_teacher` (does it grade as the teacher?).
"""

from __future__ import annotations

import hashlib
import os
import re

import ml_collections

from storyjax.teachers import config as teacher_config
from storyjax.teachers import make_teacher


def resolved(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The judge's teacher settings with `name` decided."""
    judge = ml_collections.ConfigDict(config.judge.to_dict())
    judge.name = teacher_config.kind(judge)
    return judge


def _teacher(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The training teacher: `config.teacher` (an interactive run) or `config.interactive.teacher` (an experiment)."""
    return config.teacher if "teacher" in config else config.interactive.teacher


def is_teacher(config: ml_collections.ConfigDict) -> bool:
    """Whether the judge grades exactly as the training teacher does (then the teacher's grades are reused)."""
    judge, teacher = teacher_config.flat(resolved(config)), teacher_config.flat(_teacher(config))
    if judge.name != teacher.name:
        return False
    if judge.name in ("rubric", "tales"):  # no settings: one of each
        return True
    keys = {"openai": ("base_url", "model", "template", "temperature", "constrain"),
            "jax": ("weights", "template", "grading", "min_digit_mass", "temperature"),
            "replay": ("answers",)}.get(judge.name, tuple(judge.keys()))
    return all(judge.get(k) == teacher.get(k) for k in keys)


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


def _model_name(name: str) -> str:
    """A model's name as a hub id, folder or file would say it: "meta-llama/Llama-3.1-8B-Instruct",
    "/w/Llama-3.1-8B-Instruct/" and "Llama-3.1-8B-Instruct.Q4_K_M.gguf" are all "llama-3.1-8b-instruct"."""
    base = os.path.basename(str(name).rstrip("/")).lower()
    base = re.sub(r"\.gguf$", "", base)
    return re.sub(r"[.-](q\d\w*|f16|f32|bf16|fp16)$", "", base)


def _identity(cfg: ml_collections.ConfigDict) -> set[str]:
    """What names the model behind a grader."""
    if cfg.name == "rubric":
        return {"the offline rubric"}
    if cfg.name == "tales":
        return {"the tales grammar"}
    if cfg.name == "jax" and cfg.jax.weights:
        return {f"weights {fingerprint(cfg.jax.weights)}", f"model {_model_name(cfg.jax.weights)}"}
    if cfg.name == "openai":
        server = cfg.openai
        return {f"server {str(server.base_url).rstrip('/')} model {server.model}", f"model {_model_name(server.model)}"}
    if cfg.name == "replay":
        return {f"replayed answers {os.path.realpath(cfg.replay.answers)}"}
    return set()


def same_model(config: ml_collections.ConfigDict) -> str:
    """Why the judge is the training teacher's own model ("" when it is not)."""
    shared = _identity(resolved(config)) & _identity(_teacher(config))
    return f"both are {sorted(shared)[0]}" if shared else ""


def chosen(config: ml_collections.ConfigDict) -> bool:
    """Whether the user chose the judge (a kind, or weights for `auto`), rather than leaving it to fall back
    on the offline rubric."""
    return config.judge.name != "auto" or bool(config.judge.jax.weights)


def check(config: ml_collections.ConfigDict) -> None:
    """Refuses a judge the user chose that is the training teacher's model, unless `judge.allow_same` says to
    run it anyway. A judge left at `auto` with no weights falls back on the rubric, and is let through (and
    labelled judge = teacher) when the rubric is also the teacher: there is nothing else offline."""
    why = same_model(config)
    if why and chosen(config) and not config.judge.allow_same:
        raise ValueError(f"the judge is the training teacher ({why}), so its scores cannot tell learning from "
                         "reward hacking: give a judge of another model (--config.judge.jax.weights=..., another "
                         "family is best), or set --config.judge.allow_same=True to report it as judge = teacher.")


def make(config: ml_collections.ConfigDict, workdir: str, teacher, primary: bool = True):
    """The judge for a run whose training teacher is `teacher`: that teacher itself when the judge is the
    same, else (on the primary process only; the others receive its grades) a teacher of its own logging
    under WORKDIR/judge, whose answers never mix with, or answer for, the training teacher's."""
    if is_teacher(config):
        return teacher
    if not primary:
        return None
    judge_dir = os.path.join(workdir, "judge")
    os.makedirs(judge_dir, exist_ok=True)
    return make_teacher(resolved(config), judge_dir)


def describe(config: ml_collections.ConfigDict) -> str:
    judge = resolved(config)
    what = {"jax": judge.jax.weights, "openai": judge.openai.model, "replay": judge.replay.answers}.get(judge.name, "")
    name = f"{judge.name} ({os.path.basename(str(what).rstrip('/'))})" if what else judge.name
    return name + (" — judge = teacher: the training teacher's own model, not an independent judge"
                   if same_model(config) else "")
