"""Orbax checkpoints: the rolling `latest/` for resume and named word milestones.

Layout under the workdir:
  latest/<step>/{state,ledger,extra}   async, last `keep` kept, for resume
  milestones/chck_2M/{state,ledger,extra}  one per word milestone, never deleted
  run_meta.json                         model shape + tokenizer hash the workdir belongs to

Orbax writes into a temporary folder and renames it when complete, so a
process killed mid-save (SIGKILL) leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

META_FILE = "run_meta.json"


class Checkpoints:
    def __init__(self, workdir: str, keep: int = 2):
        self.workdir = os.path.abspath(workdir)
        self.latest = ocp.CheckpointManager(
            os.path.join(self.workdir, "latest"),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True))
        self._milestone_writer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())

    @staticmethod
    def _save_args(state, ledger: dict, extra: dict) -> ocp.args.Composite:
        return ocp.args.Composite(state=ocp.args.StandardSave(state), ledger=ocp.args.JsonSave(ledger),
                                  extra=ocp.args.JsonSave(extra))

    @staticmethod
    def _restore_args(abstract_state) -> ocp.args.Composite:
        return ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), ledger=ocp.args.JsonRestore(),
                                  extra=ocp.args.JsonRestore())

    def save_latest(self, step: int, state, ledger: dict, extra: dict) -> None:
        self.latest.save(step, args=self._save_args(state, ledger, extra), force=True)

    def milestone_path(self, name: str) -> str:
        return os.path.join(self.workdir, "milestones", name)

    def save_milestone(self, name: str, state, ledger: dict, extra: dict) -> str:
        path = self.milestone_path(name)
        if os.path.exists(path):  # a rerun after a crash reached the same milestone: keep the first one
            return path
        self._milestone_writer.save(path, args=self._save_args(state, ledger, extra))
        return path

    def milestones(self) -> list[str]:
        root = os.path.join(self.workdir, "milestones")
        if not os.path.isdir(root):
            return []
        # Only finished checkpoints: a save cut short leaves an orbax temporary folder beside them.
        names = (n for n in os.listdir(root) if re.fullmatch(r"chck_\d+[KM]?", n))
        return sorted(names, key=_milestone_words)

    def latest_step(self) -> Optional[int]:
        return self.latest.latest_step()

    def restore_latest(self, abstract_state) -> Optional[tuple[int, Any, dict, dict]]:
        step = self.latest.latest_step()
        if step is None:
            return None
        out = self.latest.restore(step, args=self._restore_args(abstract_state))
        return step, out.state, out.ledger, out.extra

    def restore_milestone(self, name: str, abstract_state) -> tuple[Any, dict, dict]:
        out = self._milestone_writer.restore(self.milestone_path(name), args=self._restore_args(abstract_state))
        return out.state, out.ledger, out.extra

    def wait(self) -> None:
        self.latest.wait_until_finished()

    def close(self) -> None:
        self.latest.wait_until_finished()
        self.latest.close()


def _milestone_words(name: str) -> int:
    n = name.removeprefix("chck_")
    scale = {"M": 1_000_000, "K": 1_000}.get(n[-1:], 1)
    return int(n.rstrip("MK")) * scale


def check_run_meta(workdir: str, meta: dict) -> None:
    """Refuses a workdir that belongs to another model shape or tokenizer; records it otherwise."""
    path = os.path.join(workdir, META_FILE)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        diffs = [f"{k}: workdir has {old.get(k)!r}, config gives {meta.get(k)!r}"
                 for k in sorted(set(old) | set(meta)) if old.get(k) != meta.get(k)]
        if diffs:
            raise ValueError(f"workdir {workdir} holds a run of a different model or tokenizer ("
                             + "; ".join(diffs) + "). Use a new --workdir, or the config that made this one. "
                             "Nothing in the workdir was changed.")
        return
    os.makedirs(workdir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def unreplicate(tree):
    """Host copy of device 0's replica. Reads the buffer directly: indexing (`x[0]`) would dispatch one
    small XLA program per leaf, which on fake CPU devices can starve the collectives of a step in flight."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)).reshape(x.shape[1:]), tree)


def read_run_meta(workdir: str) -> dict:
    path = os.path.join(workdir, META_FILE)
    if not os.path.exists(path):
        raise ValueError(f"{workdir} holds no storyjax run ({META_FILE} missing); point init_checkpoint at a "
                         "pretraining --workdir.")
    with open(path) as f:
        return json.load(f)


def resolve_student(path: str, compute_dtype: str = "float32"):
    """(model config, params, tokenizer, tokenizer dir) of a pretraining or interactive run, or of one of
    its milestones (`RUN/milestones/chck_2M`)."""
    from storyjax import model as model_lib
    from storyjax import tokenizer as tokenizer_lib
    path = os.path.abspath(path)
    milestone = ""
    if os.path.basename(os.path.dirname(path)) == "milestones":
        path, milestone = os.path.dirname(os.path.dirname(path)), os.path.basename(path)
    meta = read_run_meta(path)
    shape = meta.get("model") or meta.get("student")  # pretraining | interactive run
    tok_dir = os.path.join(path, "tokenizer") if "model" in meta else os.path.join(meta["init"], "tokenizer")
    cfg = model_lib.ModelConfig(**{**shape, "dropout": 0.0, "compute_dtype": compute_dtype}).validate()
    params, _ = load_params(path, milestone)
    return cfg, jax.tree.map(jax.numpy.asarray, params), tokenizer_lib.load(tok_dir), tok_dir


def load_params(workdir: str, milestone: str = "") -> tuple[Any, dict]:
    """Parameters of a run's milestone (e.g. 'chck_20M') or, with none named, of its latest checkpoint."""
    read_run_meta(workdir)
    ckpts = Checkpoints(workdir)
    try:
        raw = ocp.args.Composite(state=ocp.args.StandardRestore(), ledger=ocp.args.JsonRestore(),
                                 extra=ocp.args.JsonRestore())
        if milestone:
            if milestone not in ckpts.milestones():
                raise ValueError(f"{workdir} has no milestone {milestone!r}; it has {ckpts.milestones()}.")
            out = ckpts._milestone_writer.restore(ckpts.milestone_path(milestone), args=raw)
        else:
            step = ckpts.latest_step()
            if step is None:
                raise ValueError(f"{workdir} has no checkpoint yet; finish or resume its pretraining first.")
            out = ckpts.latest.restore(step, args=raw)
    finally:
        ckpts.close()
    state = out.state
    return (state["params"] if isinstance(state, dict) else state[0]), out.ledger
