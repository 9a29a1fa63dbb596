"""Orbax checkpoints: the rolling `latest/` for resume and named word milestones.

Layout under the workdir:
  latest/<step>/{state,ledger,extra}   async, last `keep` kept, for resume
  milestones/chck_2M/{state,ledger,extra}  one per word milestone, never deleted
  run_meta.json                         model shape + tokenizer hash the workdir belongs to

Orbax writes into a temporary folder and renames it when complete, so a
process killed mid-save (SIGKILL) leaves the previous checkpoint intact. A
checkpoint that still fails to restore (a disk fault, a truncated copy) is
moved to set_aside/ and the previous one is used; so is every checkpoint
written after the last finite loss when a run diverges. Non-finite states are
never written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from typing import Any, Optional

import orbax.checkpoint as ocp
from absl import logging

from storyjax import model as model_lib
from storyjax import run_outputs
from storyjax.atomic import atomic_file

META_FILE = "run_meta.json"
SET_ASIDE = "set_aside"


class NonFiniteState(FloatingPointError):
    """A state with NaN/inf parameters or optimizer moments was about to be checkpointed."""


def check_finite(state, what: str) -> None:
    """Parameters and optimizer moments only: other fields may be NaN by design (the EMA baseline before
    the first graded batch)."""
    fields = state._asdict() if hasattr(state, "_asdict") else state if isinstance(state, dict) else {"state": state}
    if not bool(model_lib.all_finite([fields[k] for k in ("params", "opt_state", "state") if k in fields])):
        raise NonFiniteState(f"refusing to checkpoint {what}: its parameters or optimizer state are not finite.")


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
        check_finite(state, f"step {step}")
        self.latest.save(step, args=self._save_args(state, ledger, extra), force=True)

    def milestone_path(self, name: str) -> str:
        return os.path.join(self.workdir, "milestones", name)

    def save_milestone(self, name: str, state, ledger: dict, extra: dict) -> str:
        path = self.milestone_path(name)
        if os.path.exists(path):  # a rerun after a crash reached the same milestone: keep the first one
            return path
        check_finite(state, f"milestone {name}")
        self._milestone_writer.save(path, args=self._save_args(state, ledger, extra))
        return path

    def milestones(self) -> list[str]:
        root = os.path.join(self.workdir, "milestones")
        if not os.path.isdir(root):
            return []
        # Only finished checkpoints: a save cut short leaves an orbax temporary folder beside them.
        names = (n for n in os.listdir(root) if re.fullmatch(r"chck_\d+[KM]?", n))
        return sorted(names, key=milestone_words)

    def latest_step(self) -> Optional[int]:
        return self.latest.latest_step()

    def restore_latest(self, abstract_state, set_aside: bool = True) -> Optional[tuple[int, Any, dict, dict]]:
        """The newest checkpoint that restores; one that does not is skipped with one warning line (and, with
        `set_aside`, moved to set_aside/: a run's own workdir) and the previous one is tried. None when there
        is none; an error when none restores."""
        steps = sorted(self.latest.all_steps(), reverse=True)
        for step in steps:
            try:
                out = self.latest.restore(step, args=self._restore_args(abstract_state))
            except Exception as e:  # noqa: BLE001 — orbax raises many kinds for a damaged folder
                where = f"; moved to {self.set_aside(step, 'unreadable')}" if set_aside else ""
                logging.warning("Checkpoint latest/%d does not restore (%s: %s)%s; trying the one before it "
                                "(workdir %s).", step, type(e).__name__, _first_line(e), where, self.workdir)
                continue
            return step, out.state, out.ledger, out.extra
        if steps:
            moved = f", each moved to {self.workdir}/{SET_ASIDE}/" if set_aside else ""
            raise ValueError(f"no checkpoint in {self.workdir}/latest restores (steps {steps}{moved}, the reasons "
                             "logged above). Rerunning starts the run over; or copy a good checkpoint back into "
                             "latest/, or name a milestone (RUN/milestones/chck_N).")
        return None

    def set_aside(self, step: int, why: str) -> str:
        """Moves latest/<step> out of orbax's sight (to set_aside/<why>_<step>_<time>), keeping its files.
        Process 0 moves (the workdir is shared by all processes of a run)."""
        self.latest.wait_until_finished()
        dst = self._move(os.path.join(self.workdir, "latest", str(step)), f"{why}_{step}")
        self.latest.reload()
        return dst

    def _move(self, src: str, name: str) -> str:
        dst = os.path.join(self.workdir, SET_ASIDE, f"{name}_{int(time.time())}")
        if run_outputs.is_writer() and os.path.exists(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.move(src, dst)
        return dst

    def discard_from(self, step: int, why: str) -> list[str]:
        """Sets aside every checkpoint, latest or milestone, of a step at or after `step` (e.g. written after
        a run began to diverge): a resumed run reaches those milestones again and must write them anew."""
        moved = [self.set_aside(s, why) for s in sorted(self.latest.all_steps()) if s >= step]
        moved += [self._move(self.milestone_path(name), f"{why}_{name}") for name in self.milestones()
                  if self.milestone_step(name) >= step]
        return moved

    def milestone_step(self, name: str) -> int:
        """The step a milestone was written at (read from its `extra`, without loading its arrays); -1 when
        that cannot be read."""
        try:
            out = self._milestone_writer.restore(self.milestone_path(name),
                                                 args=ocp.args.Composite(extra=ocp.args.JsonRestore()))
        except Exception:  # noqa: BLE001 — a damaged milestone is left where it is
            return -1
        return int(out.extra.get("step", -1))

    def restore_milestone(self, name: str, abstract_state) -> tuple[Any, dict, dict]:
        out = self._milestone_writer.restore(self.milestone_path(name), args=self._restore_args(abstract_state))
        return out.state, out.ledger, out.extra

    def wait(self) -> None:
        self.latest.wait_until_finished()

    def close(self) -> None:
        try:
            self.latest.wait_until_finished()
        finally:
            self.latest.close()

    def __enter__(self) -> "Checkpoints":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


def diverged(ckpts: Checkpoints, workdir: str, update: int, loss_finite: bool, fix: str,
             detail: str = "") -> FloatingPointError:
    """After update `update` gave a non-finite loss (measured on the state before it) or a non-finite state,
    sets aside the checkpoints that hold such states and returns the error that says how to go on."""
    first_bad = update if loss_finite else update - 1
    moved = ckpts.discard_from(first_bad, "diverged")
    good = ckpts.latest_step()
    what = "non-finite parameters after the update" if loss_finite else "a non-finite loss"
    kept = (f"the last good checkpoint is step {good} in {workdir}/latest" if good is not None else
            "no checkpoint from before it is left, so a rerun starts over (or start from a milestone)")
    aside = f" Checkpoints from step {first_bad} on were moved to {workdir}/{SET_ASIDE}/." if moved else ""
    return FloatingPointError(f"{what} at step {update}{detail}: stopped.{aside} {kept}. Lower {fix} (or check "
                              "the data) and rerun the same command to resume from it.")


def milestone_words(name: str) -> int:
    """'chck_20M' → 20_000_000, 'chck_50K' → 50_000, 'chck_1500' → 1500 (ValueError for other names)."""
    if not re.fullmatch(r"chck_\d+[KM]?", name):
        raise ValueError(f"{name!r} is not a milestone name (chck_N, chck_NK or chck_NM).")
    n = name.removeprefix("chck_")
    scale = {"M": 1_000_000, "K": 1_000}.get(n[-1:], 1)
    return int(n.rstrip("MK")) * scale


def check_run_meta(workdir: str, meta: dict, partial: bool = False) -> None:
    """Refuses a workdir that holds a different run (another corpus, model, tokenizer, prompt, seed or
    starting point), naming each difference; records `meta` otherwise. A setting the workdir's file
    predates is added to it, not refused. `partial`: compare only the keys of `meta` and write nothing (an
    early check, before the rest of the run's identity is known)."""
    path = os.path.join(workdir, META_FILE)
    old = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        diffs = [f"{k}: workdir has {old[k]!r}, config gives {meta.get(k)!r}"
                 for k in sorted(old) if old[k] != meta.get(k) and (k in meta or not partial)]
        if diffs:
            raise ValueError(f"workdir {workdir} holds a different run (" + "; ".join(diffs) + "). Use a new "
                             "--workdir, or the settings that made this one. Nothing in the workdir was changed.")
    if partial or (old and set(meta) <= set(old)):
        return
    os.makedirs(workdir, exist_ok=True)
    with atomic_file(path) as f:
        json.dump({**old, **meta}, f, indent=2, sort_keys=True)


def read_run_meta(workdir: str) -> dict:
    path = os.path.join(workdir, META_FILE)
    if not os.path.exists(path):
        raise ValueError(f"{workdir} holds no storyjax run ({META_FILE} missing); point init_checkpoint at a "
                         "pretraining --workdir.")
    with open(path) as f:
        return json.load(f)


def check_student_path(path: str) -> tuple[str, str]:
    """`split_milestone(path)`, the run's meta read on the way (a wrong path: "holds no storyjax run"), for a
    job's validation; a bucket path (gs://, s3://) is taken as given."""
    if path.startswith(("gs://", "s3://")):
        return path, ""
    run_dir, milestone = split_milestone(path)
    read_run_meta(run_dir)
    return run_dir, milestone


def split_milestone(path: str) -> tuple[str, str]:
    """(run folder, milestone) a student path names: RUN (its latest checkpoint, milestone "") or
    RUN/milestones/chck_N."""
    path = os.path.abspath(path)
    if os.path.basename(os.path.dirname(path)) == "milestones":
        return os.path.dirname(os.path.dirname(path)), os.path.basename(path)
    return path, ""


def load_params(workdir: str, milestone: str = "") -> tuple[Any, dict]:
    """Parameters of a run's milestone (e.g. 'chck_20M') or, with none named, of its latest checkpoint that
    restores (a damaged newest one is skipped with a warning, and left where it is: the run is not ours)."""
    read_run_meta(workdir)
    with Checkpoints(workdir) as ckpts:
        if milestone:
            if milestone not in ckpts.milestones():
                raise ValueError(f"{workdir} has no milestone {milestone!r}; it has {ckpts.milestones()}.")
            state, ledger, _ = ckpts.restore_milestone(milestone, None)
        else:
            restored = ckpts.restore_latest(None, set_aside=False)  # another run's workdir: moved nothing
            if restored is None:
                raise ValueError(f"{workdir} has no checkpoint yet; finish or resume its pretraining first.")
            _, state, ledger, _ = restored
    return params_of(state), ledger


def params_of(state) -> Any:
    """The parameters of a checkpoint state restored without its type (another run's: its optimizer is not
    ours to rebuild). Orbax gives a NamedTuple back as a dict, or as a list in field order; every state a
    run saves (pretrain_step.TrainState, reinforce.RLState) has `params` as its first field."""
    return state["params"] if isinstance(state, dict) else state[0]
