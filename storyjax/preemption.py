"""SIGTERM (TPU preemption) handling shared by the training loops.

The handler only notes the signal; the loop finishes its step, writes the latest checkpoint and raises
`Preempted`, which `main` turns into exit code 143. Rerunning the same command resumes.
"""

from __future__ import annotations

import signal


class Preempted(SystemExit):
    """Raised after SIGTERM once the latest checkpoint is safely written."""


class SigtermWatch:
    """Truthy once SIGTERM has arrived; `close()` restores the previous handler. `on_signal` (e.g. a
    teacher's `cancel`) runs in the handler, so work that would outlast a preemption notice stops early."""

    def __init__(self, on_signal=None):
        self.raised = False
        self._on_signal = on_signal
        self._previous = signal.signal(signal.SIGTERM, self._note)

    def _note(self, *_):
        self.raised = True
        if self._on_signal is not None:
            self._on_signal()

    def __bool__(self) -> bool:
        return self.raised

    def close(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)
