"""A teacher section's settings checked before any work: every enumerated value and number, and for the
in-process teacher its weights (there, and a .gguf file that is GGUF). Teachers check again when built; this
is what a job calls from its `validate`, so a bad value is refused before pretraining or a tokenizer starts.
"""

from __future__ import annotations

import os

import ml_collections

from storyjax.setting_checks import count, finite
from storyjax.teachers import config as teacher_config
from storyjax.teachers import lm_weights
from storyjax.teachers.jax_teacher import GRADINGS
from storyjax.teachers.lm_passes import CPU_KERNELS
from storyjax.teachers.openai_teacher import CONSTRAINTS
from storyjax.teachers.prompt_templates import load_template

NAMES = ("rubric", "tales", "openai", "replay", "jax")
COMPUTE_DTYPES = ("", "float32", "bfloat16")


def _count(least: int):
    return lambda x: count(x, least)


# (section, setting, acceptable, the fix): every enumerated and numeric setting of a teacher section
RULES = (
    ("", "temperature", lambda x: finite(x) and x >= 0, "use a temperature >= 0 (paper: 0.2)"),
    ("", "seed", _count(-1), "use -1 (none sent) or a seed >= 0"),
    ("", "max_failed_batches", _count(0), "use 0 (never stop for this) or a number of batches"),
    ("", "health_window", _count(1), "use 1 batch or more"),
    ("", "max_unscorable_rate", lambda x: finite(x) and 0 <= x <= 1, "must be in 0..1 (1: never stop for this)"),
    ("openai", "base_url", lambda x: str(x).startswith(("http://", "https://")),
     "give the server's URL, e.g. http://127.0.0.1:8000/v1"),
    ("jax", "grading", lambda x: x in GRADINGS, f"choose one of {GRADINGS}"),
    ("jax", "cpu_kernels", lambda x: x in CPU_KERNELS, f"choose one of {CPU_KERNELS}"),
    ("jax", "compute_dtype", lambda x: x in COMPUTE_DTYPES,
     f"choose one of {COMPUTE_DTYPES} ('' = float32 on CPU, bfloat16 elsewhere)"),
    ("jax", "min_digit_mass", lambda x: finite(x) and 0 <= x < 1, "use a share in [0, 1), e.g. 0.1"),
    ("jax", "batch_size", _count(0), "use 1 or more stories a pass, or 0 (as many as the device's memory allows)"),
    ("jax", "memory_gb", lambda x: finite(x) and x >= 0, "use 0 (what the device reports) or its memory in GiB"),
    ("jax", "devices", _count(0), "use 0 (all) or a device count"),
    ("jax", "model_parallel", _count(1), "use 1 or more devices"),
    ("openai", "constrain", lambda x: x in CONSTRAINTS, f"choose one of {sorted(CONSTRAINTS)}"),
    ("openai", "concurrency", _count(1), "use 1 or more requests"),
    ("openai", "timeout_s", lambda x: finite(x) and x > 0, "use a positive number of seconds"),
    ("openai", "retries", _count(0), "use 0 or more"),
    ("openai", "backoff_s", lambda x: finite(x) and x >= 0, "use 0 or more seconds"),
    ("openai", "max_tokens", _count(1), "use 1 or more (paper: 6)"),
)


def check(cfg: ml_collections.ConfigDict, key: str = "teacher", weights: bool = True) -> None:
    """Refuses, in one line naming `key.setting`, the value and the fix, whatever no teacher could use;
    `weights=False` (a dry run, which reports what is missing) leaves the weights file alone."""
    names = NAMES + ("auto",) * (key == "judge")
    problems = [] if cfg.get("name") in names else [f"{key}.name={cfg.get('name')!r}: choose one of {names}"]
    for section, name, ok, fix in RULES:
        where = cfg[section] if section else cfg
        if name in where and not ok(where[name]):
            problems.append(f"{key}.{section + '.' if section else ''}{name}={where[name]!r}: {fix}")
    if problems:
        raise ValueError("; ".join(problems) + ".")
    load_template(cfg.template, f"{key}.template")  # a missing file, or one without {prompt} and {story}
    if cfg.jax.pairwise_template:
        load_template(cfg.jax.pairwise_template, f"{key}.jax.pairwise_template")
    kind = teacher_config.kind(cfg)
    if kind == "jax" and weights:
        path = cfg.jax.weights
        if not path:
            raise ValueError(f"{key}.name=jax needs --config.{key}.jax.weights=PATH (a Hugging Face folder or a "
                             ".gguf).")
        if not os.path.exists(path):
            raise ValueError(f"{key}.jax.weights={path!r} does not exist; give a Hugging Face folder or a .gguf file.")
        if os.path.isfile(path) and path.endswith(".gguf"):
            lm_weights.check_gguf_magic(path)
    if kind == "replay" and weights and not os.path.isfile(cfg.replay.answers):
        raise ValueError(f"{key}.replay.answers={cfg.replay.answers!r} is not a file: give a run's answers.jsonl.")
