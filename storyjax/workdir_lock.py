"""One run per workdir: an exclusive lock held for the run's lifetime.

Two processes appending to the same `batch_stats.csv`, `generated.csv` and `ledger.jsonl` would double
every row and make a report's numbers wrong, so a second run on a locked workdir stops at once, naming
the PID that holds it. The lock is `flock` on `WORKDIR/.lock`: the kernel drops it when its holder dies,
SIGKILL included, so a killed run never leaves a stale lock behind. The file only records who held it
last; its presence means nothing.

A multi-host run takes the lock on process 0 only (its peers share the workdir by design).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time

LOCK_FILE = ".lock"


class WorkdirBusy(ValueError):
    """Another live process holds the workdir."""


class WorkdirLock:
    def __init__(self, workdir: str):
        self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
        self._fd = None

    def acquire(self) -> "WorkdirLock":
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkdirBusy(
                f"workdir {os.path.dirname(self.path)} is in use by another run ({holder}). Wait for it to end, "
                "stop it, or use another --workdir; nothing was changed.") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except ValueError:
        info = {}
    if not info:
        return "PID unknown"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"PID {info.get('pid')} on {info.get('host')}, since {since}"
