"""One run per workdir: a second process is refused naming the holder; a killed holder never blocks."""

import os
import signal
import subprocess
import sys
import time

import pytest

from storyjax.workdir_lock import WorkdirBusy, WorkdirLock
from test_main import run_main

HOLD = "import sys, time; from storyjax.workdir_lock import WorkdirLock; WorkdirLock(sys.argv[1]).acquire(); " \
       "print('held', flush=True); time.sleep(600)"
LEDGER_ONLY = ["--config=configs/interactive.py:paper", "--config.ledger_only=True"]


def hold(workdir) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_is_exclusive_and_released(tmp_path):
    with WorkdirLock(tmp_path):
        with pytest.raises(WorkdirBusy, match=rf"in use by another run \(PID {os.getpid()} on "):
            WorkdirLock(tmp_path).acquire()
    with WorkdirLock(tmp_path):  # released on exit: taken again
        pass


def test_a_second_run_is_refused_and_a_killed_holder_does_not_block(tmp_path):
    holder = hold(tmp_path)
    try:
        proc = run_main(LEDGER_ONLY, tmp_path)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert f"is in use by another run (PID {holder.pid} on" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not os.path.exists(tmp_path / "summary.json")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert os.path.exists(tmp_path / ".lock")  # the killed holder's file stays; its lock does not
    t0 = time.time()
    proc = run_main(LEDGER_ONLY, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.exists(tmp_path / "summary.json") and time.time() - t0 < 120
