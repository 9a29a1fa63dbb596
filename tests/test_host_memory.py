"""Host memory kept for reuse: a large block freed and asked for again is not faulted in again."""

import json
import os
import platform
import subprocess
import sys

import pytest

from storyjax import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Allocates, fills and frees a 200 MB array 20 times on a second thread (where XLA's runtime allocates),
# after one warm-up, and prints the page faults and seconds those 20 took.
_PROBE = """
import json, resource, threading, time
import numpy as np
from storyjax import host_memory
applied = host_memory.keep_for_reuse()
def work(out):
    np.ones(50_000_000, np.float32)
    faults, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    for _ in range(20):
        np.ones(50_000_000, np.float32)
    out.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults, time.perf_counter() - t))
out = []
thread = threading.Thread(target=work, args=(out,))
thread.start()
thread.join()
print(json.dumps({"applied": applied, "faults": out[0][0], "seconds": out[0][1]}))
"""


def _probe(choice: str) -> dict:
    env = dict(os.environ, STORYJAX_HOST_MALLOC=choice)
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    kept, system = _probe("reuse"), _probe("system")
    assert kept["applied"] and not system["applied"]
    # glibc's defaults map each 200 MB block afresh (thousands of faults even with transparent huge pages);
    # kept for reuse, the same block comes back from the heap with its pages already there.
    assert system["faults"] > 1000, system
    assert kept["faults"] < system["faults"] / 10, (kept, system)


def test_choice_is_checked_and_system_keeps_defaults(monkeypatch):
    monkeypatch.setenv(host_memory.ENV, "bogus")
    with pytest.raises(ValueError, match="STORYJAX_HOST_MALLOC='bogus'.*'auto'.*'reuse'.*'system'"):
        host_memory.keep_for_reuse()
    monkeypatch.setenv(host_memory.ENV, "system")
    assert host_memory.keep_for_reuse() is False


def test_cpu_only_follows_jax_platforms(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert host_memory.cpu_only()
    monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
    assert not host_memory.cpu_only()
