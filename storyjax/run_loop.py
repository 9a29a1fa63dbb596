"""The skeleton both training loops run in: resume, checkpoints, SIGTERM, progress bar, outputs, audit
ledger, word milestones, the preemption exit and the summary.

A loop opens a `Run`, asks it for the state to start from (`start`: a fresh run or the newest checkpoint
that restores, with its ledger), and around each step lets it save (`save_latest`), reach milestones
(`reach_milestones`: save, then the loop's own exports and evaluations, then an audit line) and see
SIGTERM (`preempted`). `finish` waits for the last checkpoint and turns a SIGTERM into `Preempted` (exit
143; rerunning resumes). What differs between the loops (the step, what a milestone evaluates) stays in
the loop.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

from tqdm import tqdm

from storyjax import checkpoint as ckpt_lib
from storyjax import ledger as ledger_lib
from storyjax import preemption, run_outputs


class Start(NamedTuple):
    step: int
    state: Optional[Any]  # None for a fresh run: the loop builds its initial state
    ledger: Any
    extra: dict           # what the loop saved beside the state (JSON)


class Run:
    def __init__(self, workdir: str, keep: int, on_sigterm: Optional[Callable[[], None]] = None):
        self.workdir = workdir
        self.bar = self.out = self.sigterm = None
        self.ckpts = ckpt_lib.Checkpoints(workdir, keep=keep)
        try:
            self.out = run_outputs.RunWriter(workdir)
            self.sigterm = preemption.SigtermWatch(on_signal=on_sigterm)
        except BaseException:
            self.close()  # an open manager's threads would bury the error under asyncio tracebacks at exit
            raise

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def preempted(self) -> bool:
        return bool(self.sigterm)

    def start(self, abstract_state, fresh_ledger, **audit) -> Start:
        """The newest checkpoint that restores, or step 0 with `fresh_ledger`; one audit line either way."""
        restored = self.ckpts.restore_latest(abstract_state)
        if restored is None:
            self.out.audit("start", fresh_ledger, **audit)
            return Start(0, None, fresh_ledger, {})
        step, state, ledger_dict, extra = restored
        ledger = type(fresh_ledger).from_dict(ledger_dict)
        self.out.audit("resume", ledger, step=step, **audit)
        return Start(step, state, ledger, extra)

    def progress(self, *, total: int, initial: int, unit: str, desc: str, enabled: bool) -> tqdm:
        self.bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True,
                        disable=not (enabled and run_outputs.is_writer()))
        return self.bar

    def save_latest(self, step: int, state, ledger, extra: dict) -> None:
        self.ckpts.save_latest(step, state, ledger.to_dict(), extra)

    def reach_milestones(self, step: int, ledger, due: list[int], state, extra: dict,
                         after_save: Callable[[str, int], None]) -> None:
        """Each due milestone: recorded in the ledger, saved (never overwritten), then `after_save(name,
        words)` (the loop's exports and evaluations), then its audit line."""
        for words in due:
            ledger.milestones_done.append(words)
            name = ledger_lib.milestone_name(words)
            self.ckpts.save_milestone(name, state, ledger.to_dict(), {**extra, "step": step})
            after_save(name, words)
            self.out.audit("milestone", ledger, step=step, name=name)

    def diverged(self, step: int, loss_finite: bool, fix: str, detail: str = "") -> FloatingPointError:
        return ckpt_lib.diverged(self.ckpts, self.workdir, step, loss_finite, fix, detail)

    def finish(self, step: int, ledger) -> None:
        """Waits for the checkpoints in flight; after SIGTERM, says where the run stopped and raises."""
        self.ckpts.wait()
        if self.preempted:
            self.out.audit("preempted", ledger, step=step)
            raise preemption.Preempted(f"SIGTERM: checkpoint of step {step} written to {self.workdir}/latest; "
                                       "rerun the same command to resume.")

    def end(self, ledger, summary: dict, **audit) -> dict:
        """The last audit line and summary.json."""
        self.out.audit("end", ledger, **audit)
        run_outputs.write_summary(self.workdir, summary)
        return summary

    def close(self) -> None:
        for part in (self.bar, self.sigterm, self.out, self.ckpts):  # checkpoints last: closing waits for them
            if part is not None:
                part.close()
