"""Where device time and memory go: run a function under `jax.profiler` and sum the trace by op kind;
the memory XLA plans for a compiled step.

A kind is an op or kernel name less its instance number ("fusion.12", "loop_add_fusion_3" → "fusion",
"loop_add_fusion"), so a 12-layer model's twelve copies of one fusion count as one line.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
from collections import Counter

import jax


def traced_top(trace_dir: str, fn, top: int = 12) -> list[dict]:
    """Runs `fn()` (which must wait for its results) under the profiler, writing the trace (TensorBoard +
    Perfetto) to `trace_dir`, and returns that trace's `top` op kinds."""
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        fn()
    return top_kinds(trace_dir, top)


def top_kinds(trace_dir: str, top: int = 12) -> list[dict]:
    """The `top` op kinds of a `jax.profiler.trace` folder by total duration, on the accelerator's streams
    (on CPU, XLA's host threads), each with its milliseconds and its share of that total."""
    paths = sorted(glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "perfetto_trace.json.gz")))
    if not paths:
        return []
    with gzip.open(paths[-1]) as f:
        events = json.load(f)["traceEvents"]
    names = {(e["pid"], e.get("tid")): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e["name"] in ("process_name", "thread_name")}
    devices = {pid for (pid, tid), name in names.items() if tid is None and name.startswith("/device:")}
    if devices:
        keep = lambda e: e["pid"] in devices
    else:
        keep = lambda e: names.get((e["pid"], e.get("tid")), "").startswith("tf_XLA")
    totals = Counter()
    for e in events:
        if e.get("ph") == "X" and keep(e) and "::" not in e["name"]:  # runtime frames wrap the ops on CPU
            totals[re.sub(r"[._]\d+$", "", e["name"])] += e.get("dur", 0.0)
    whole = sum(totals.values()) or 1.0
    return [{"name": name[:120], "ms": us / 1e3, "share": us / whole} for name, us in totals.most_common(top)]


def describe(label: str, entries: list[dict]) -> str:
    return f"profile {label}: " + "; ".join(f"{e['name'][:60]} {100 * e['share']:.0f}%" for e in entries)


def planned_bytes(compiled) -> int | None:
    """Device memory XLA plans for one call of a compiled step: arguments + outputs + temporaries, less
    donated (aliased) buffers. Per configuration, unlike the process-wide peak."""
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)
    except Exception:  # noqa: BLE001 - a backend without memory analysis: the row just lacks the figure
        return None


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith(field + ":"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        return None


class HostPeak:
    """`with HostPeak() as peak: ...` then `peak.bytes`: the most resident host memory the block added above
    what the process held when it began (Linux: the kernel's high-water mark, reset through
    /proc/self/clear_refs; None where that is not available). Counts everything the process maps, a
    memory-mapped file's read pages included."""

    bytes: int | None = None

    def __enter__(self) -> "HostPeak":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.before = _status_bytes("VmRSS")
        except OSError:
            self.before = None
        return self

    def __exit__(self, *exc) -> None:
        peak = _status_bytes("VmHWM")
        self.bytes = None if self.before is None or peak is None else peak - self.before
