"""A teacher section's settings checked before any work: every enumerated value and number, and for the
in-process teacher its weights (there, and a .gguf file that is GGUF). Teachers check again when built; this
is what a job calls from its `validate`, so a bad value is refused before pretraining or a tokenizer starts.
"""

from __future__ import annotations

import math
import os

import ml_collections

from storyjax.teachers import lm_weights
from storyjax.teachers.jax_teacher import GRADINGS
from storyjax.teachers.lm_passes import CPU_KERNELS
from storyjax.teachers.openai_teacher import CONSTRAINTS

NAMES = ("rubric", "openai", "replay", "jax")
COMPUTE_DTYPES = ("", "float32", "bfloat16")


def check(cfg: ml_collections.ConfigDict, key: str = "teacher", weights: bool = True) -> None:
    """Refuses, in one line naming `key.setting`, the value and the fix, whatever no teacher could use;
    `weights=False` (a dry run, which reports what is missing) leaves the weights file alone."""
    get = cfg.get
    number = lambda name, ok, want: None if ok(get(name)) else f"{key}.{name}={get(name)!r}: {want}"
    finite = lambda x: isinstance(x, (int, float)) and math.isfinite(x)
    problems = [
        None if get("name") in NAMES + ("auto",) * (key == "judge") else
        f"{key}.name={get('name')!r}: choose one of {NAMES}" + (" or auto" if key == "judge" else ""),
        None if get("grading", "sample") in GRADINGS else f"{key}.grading={get('grading')!r}: choose one of {GRADINGS}",
        None if get("constrain", "none") in CONSTRAINTS else
        f"{key}.constrain={get('constrain')!r}: choose one of {sorted(CONSTRAINTS)}",
        None if get("cpu_kernels", "auto") in CPU_KERNELS else
        f"{key}.cpu_kernels={get('cpu_kernels')!r}: choose one of {CPU_KERNELS}",
        None if get("compute_dtype", "") in COMPUTE_DTYPES else
        f"{key}.compute_dtype={get('compute_dtype')!r}: choose one of {COMPUTE_DTYPES} ('' = float32 on CPU, "
        "bfloat16 elsewhere)",
        number("temperature", lambda x: x is None or (finite(x) and x >= 0), "use a temperature >= 0 (paper: 0.2)"),
        number("min_digit_mass", lambda x: x is None or (finite(x) and 0 <= x < 1), "use a share in [0, 1), e.g. 0.1"),
        number("batch_size", lambda x: x is None or (isinstance(x, int) and x >= 1), "use 1 or more stories a pass"),
        number("devices", lambda x: x is None or (isinstance(x, int) and x >= 0), "use 0 (all) or a device count"),
        number("model_parallel", lambda x: x is None or (isinstance(x, int) and x >= 1), "use 1 or more devices"),
        number("concurrency", lambda x: x is None or (isinstance(x, int) and x >= 1), "use 1 or more requests"),
        number("timeout_s", lambda x: x is None or (finite(x) and x > 0), "use a positive number of seconds"),
        number("retries", lambda x: x is None or (isinstance(x, int) and x >= 0), "use 0 or more"),
        number("max_tokens", lambda x: x is None or (isinstance(x, int) and x >= 1), "use 1 or more (paper: 6)"),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise ValueError("; ".join(problems) + ".")
    if get("name") == "jax" and weights:
        path = get("weights", "")
        if not path:
            raise ValueError(f"{key}.name=jax needs --config.{key}.weights=PATH (a Hugging Face folder or a .gguf).")
        if not os.path.exists(path):
            raise ValueError(f"{key}.weights={path!r} does not exist; give a Hugging Face folder or a .gguf file.")
        if os.path.isfile(path) and path.endswith(".gguf"):
            lm_weights.check_gguf_magic(path)
    if get("name") == "replay" and weights and not os.path.isfile(get("replay_from", "")):
        raise ValueError(f"{key}.replay_from={get('replay_from')!r} is not a file: give a run's answers.jsonl.")
