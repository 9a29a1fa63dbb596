"""An instruct LLM inside the program (storyjax/teachers/jax_teacher.py): a Hugging Face folder or a .gguf
file, its grades read off its logits."""

from __future__ import annotations

import dataclasses
import os

from storyjax.setting_checks import count, finite
from storyjax.teachers.gguf_file import check_gguf_magic
from storyjax.teachers.kinds.kind import Kind, fingerprint, model_name
from storyjax.teachers.prompt_templates import load_template

GRADINGS = ("expected", "greedy", "sample")  # how a grade is read off the logits (JaxSettings below)
CPU_KERNELS = ("auto", "xla", "ynnpack")     # the matmul kernels on CPU (teachers/lm_passes.py)
COMPUTE_DTYPES = ("", "float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class JaxSettings:
    weights: str = ""                # a Hugging Face folder or a .gguf file
    # Grades are read off its logits: sample (a digit drawn at `temperature`: the paper's teacher) |
    # greedy | expected (the mean of its distribution over 0-3: the teacher's output distribution as
    # the reward, which BabyLM's rules forbid; a training teacher refuses it unless
    # allow_distribution_reward=True, and the run's summary then says so; a judge may use it).
    grading: str = "sample"
    allow_distribution_reward: bool = False
    min_digit_mass: float = 0.1      # less of its probability on the digits 0-3 at any grade: unscorable
    batch_size: int = 32             # stories per teacher pass; 0: as many of an opening's as the device's
                                     # memory plan allows (accelerators; 32 on CPU)
    memory_gb: float = 0.0           # the device memory that plan may fill (0: what the device reports)
    compute_dtype: str = ""          # "" = float32 on CPU, bfloat16 elsewhere
    devices: int = 0                 # local devices the stories are split over (0: all accelerators, or one CPU)
    model_parallel: int = 1          # devices each weight matrix is split over (a teacher larger than one)
    cpu_kernels: str = "auto"        # auto | xla | ynnpack: the matmul kernels on CPU (teachers/lm_passes.py)
    pairwise_template: str = ""      # for pairs: "" = templates/pairwise_prompt.txt


RULES = (
    ("jax", "grading", lambda x: x in GRADINGS, f"choose one of {GRADINGS}"),
    ("jax", "cpu_kernels", lambda x: x in CPU_KERNELS, f"choose one of {CPU_KERNELS}"),
    ("jax", "compute_dtype", lambda x: x in COMPUTE_DTYPES,
     f"choose one of {COMPUTE_DTYPES} ('' = float32 on CPU, bfloat16 elsewhere)"),
    ("jax", "min_digit_mass", lambda x: finite(x) and 0 <= x < 1, "use a share in [0, 1), e.g. 0.1"),
    ("jax", "batch_size", lambda x: count(x, 0),
     "use 1 or more stories a pass, or 0 (as many as the device's memory allows)"),
    ("jax", "memory_gb", lambda x: finite(x) and x >= 0, "use 0 (what the device reports) or its memory in GiB"),
    ("jax", "devices", lambda x: count(x, 0), "use 0 (all) or a device count"),
    ("jax", "model_parallel", lambda x: count(x, 1), "use 1 or more devices"),
)


def check_files(cfg, key: str) -> None:
    path = cfg.jax.weights
    if not path:
        raise ValueError(f"{key}.name=jax needs --config.{key}.jax.weights=PATH (a Hugging Face folder or a .gguf).")
    if not os.path.exists(path):
        raise ValueError(f"{key}.jax.weights={path!r} does not exist; give a Hugging Face folder or a .gguf file.")
    if os.path.isfile(path) and path.endswith(".gguf"):
        check_gguf_magic(path)


def check_settings(cfg, key: str) -> None:
    if cfg.section("jax") is not None and cfg.jax.pairwise_template:
        load_template(cfg.jax.pairwise_template, f"{key}.jax.pairwise_template")


def needs(cfg, key: str) -> str:
    weights = cfg.jax.weights
    if not weights:
        return f"in-process jax, {key}.jax.weights not set"
    size = (f", {os.path.getsize(weights) / 2**30:.2f} GiB on disk" if os.path.isfile(weights) else
            ", a folder" if os.path.isdir(weights) else ", not on this machine")
    return f"in-process jax: {weights}{size}"


def identity(cfg) -> set:
    weights = cfg.jax.weights
    return {f"weights {fingerprint(weights)}", f"model {model_name(weights)}"} if weights else set()


KIND = Kind(
    name="jax", build="storyjax.teachers.jax_teacher:JaxTeacher", section="jax", settings=JaxSettings,
    reads=("jax",), rules=RULES, grades_alike=("weights", "template", "grading", "min_digit_mass", "temperature"),
    identity=identity, model=lambda cfg: cfg.jax.weights, needs=needs, check_settings=check_settings,
    check_files=check_files, pairwise=True,
    fix_dead=lambda cfg, key: (f"{key}.jax.weights={cfg.jax.weights} (an instruct model that answers in digits) "
                               f"and {key}.jax.min_digit_mass={cfg.jax.min_digit_mass}"),
    rewards_distribution=lambda cfg: cfg.jax.grading == "expected")
