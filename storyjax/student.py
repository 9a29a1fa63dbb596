"""A student, built or restored the one way every job does it:

- `fresh(model_cfg, seed)`: new parameters (pretraining from scratch);
- `from_run(path)`: a storyjax run's latest checkpoint, or one of its milestones (`RUN/milestones/chck_N`,
  or `milestone=` beside the run), pretraining or interactive, with the tokenizer it was trained with;
- `from_hf(folder)`: a transformers GPT-2 folder (safetensors weights, tokenizer.json), e.g. the paper's
  released checkpoints or a storyjax export;
- `load(checkpoint=..., init_from_hf=...)`: one of the two, as a job's config names it.

Whatever the route, a student is its model config, its parameters (device arrays), its tokenizer and
where it came from; parameters that do not match the model the run describes are refused here.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional

import jax

from storyjax import checkpoint as ckpt_lib
from storyjax import hf_format
from storyjax import model as model_lib
from storyjax import tokenizer as tokenizer_lib


class Student(NamedTuple):
    model_cfg: model_lib.ModelConfig
    params: Any
    tok: Any
    source: str                       # the run folder or transformers folder it came from
    milestone: str = ""               # the run's milestone ("" = its latest checkpoint, or a transformers folder)
    tok_dir: str = ""                 # a run's tokenizer folder (exported with milestones)
    tokenizer_json: Optional[bytes] = None  # a transformers folder's tokenizer.json


def fresh_params(model_cfg: model_lib.ModelConfig, seed: int):
    """New parameters for a student of this shape (the same for the same seed, on any device count)."""
    return model_lib.init_params(model_cfg, jax.random.key(seed))


def from_run(path: str, milestone: str = "", compute_dtype: str = "float32") -> Student:
    """A pretraining or interactive run's latest checkpoint, or one of its milestones (named in `path`, as
    `RUN/milestones/chck_2M`, or by `milestone`); parameters that do not match the model its run_meta.json
    describes are refused."""
    run_dir, named = ckpt_lib.split_milestone(path)
    if named and milestone and named != milestone:
        raise ValueError(f"{path} names milestone {named} but milestone {milestone} was asked for: give one.")
    milestone = named or milestone
    meta = ckpt_lib.read_run_meta(run_dir)
    shape = meta.get("model") or meta.get("student")  # a pretraining run | an interactive run
    tok_dir = os.path.join(run_dir if "model" in meta else meta["init"], "tokenizer")
    model_cfg = model_lib.ModelConfig(**{**shape, "dropout": 0.0, "compute_dtype": compute_dtype}).validate()
    params, _ = ckpt_lib.load_params(run_dir, milestone)
    if jax.tree.structure(jax.eval_shape(lambda: fresh_params(model_cfg, 0))) != jax.tree.structure(params):
        raise ValueError(f"{run_dir} does not hold parameters of the model its run_meta.json describes.")
    return Student(model_cfg, jax.tree.map(jax.numpy.asarray, params), tokenizer_lib.load(tok_dir), run_dir,
                   milestone, tok_dir)


def from_hf(folder: str, compute_dtype: str = "float32", dropout: float = 0.0) -> Student:
    """A transformers GPT-2 folder, its shape and tokenizer included."""
    model_cfg, params, tok, tokenizer_json = hf_format.load_hf(folder, compute_dtype, dropout)
    return Student(model_cfg, params, tok, os.path.abspath(folder), tokenizer_json=tokenizer_json)


def load(checkpoint: str = "", init_from_hf: str = "", compute_dtype: str = "float32") -> Student:
    """The one student a job's config names: `checkpoint` (a run or one of its milestones) or
    `init_from_hf` (a transformers folder)."""
    if bool(checkpoint) == bool(init_from_hf):
        raise ValueError("give one student: --config.checkpoint=RUN_WORKDIR (or RUN_WORKDIR/milestones/chck_N), "
                         "or --config.init_from_hf=HF_MODEL_DIR.")
    return from_run(checkpoint, compute_dtype=compute_dtype) if checkpoint else from_hf(init_from_hf, compute_dtype)
