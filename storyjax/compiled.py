"""What a compiled XLA program costs, read without running it: FLOPs and bytes from XLA's cost analysis,
top-level fusions, copies of state-sized buffers at entry, the memory plan, and whether the same program
lowers for CUDA. Any host can read these at the real shapes from abstract inputs (`jax.ShapeDtypeStruct`),
so a GPU run is planned, and the speed work is guarded by tests, on a CPU.

XLA's cost analysis counts a loop's body once, whatever its trip count. `unrolled_scans()` lowers every
`jax.lax.scan` called by that name fully unrolled, so a layer scan's FLOPs count every layer; other loops
are costed by their callers as their parts times their trip counts (the sampler: its prefill plus
N - 1 decode steps, each lowered alone).
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterable

import jax
import numpy as np

_OP = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(\S+)\s+([\w\-]+)\(")
_SHAPE = re.compile(r"^[a-z]\w*\[([\d,]*)\]")


def entry_lines(hlo_text: str) -> list[str]:
    """The instructions of the optimized module's entry computation (what the host launches)."""
    start = hlo_text.index("\nENTRY ")
    end = hlo_text.find("\n}", start)
    return hlo_text[start:end].splitlines()[1:]


def entry_ops(hlo_text: str) -> list[tuple[str, str]]:
    """(result type, opcode) of each entry instruction, e.g. ("f32[768,3072]{1,0}", "copy")."""
    found = (_OP.match(line) for line in entry_lines(hlo_text))
    return [(m.group(1), m.group(2)) for m in found if m]


def dims_of(result_type: str) -> tuple | None:
    m = _SHAPE.match(result_type)
    if m is None:
        return None
    return tuple(int(d) for d in m.group(1).split(",") if d)


def state_copies(hlo_text: str, state_shapes: Iterable[tuple], min_elements: int = 1024) -> int:
    """Entry copies whose result has the shape of a state leaf (a parameter or an optimizer moment) of at
    least `min_elements`: each one is a whole buffer read and written every call."""
    shapes = {tuple(s) for s in state_shapes if int(np.prod(s)) >= min_elements}
    return sum(1 for result, op in entry_ops(hlo_text) if op in ("copy", "copy-start") and dims_of(result) in shapes)


def entry_results(hlo_text: str, dtype: str, dims: tuple) -> int:
    """Entry instructions (buffers the program materializes) whose result is `dtype[dims]`, e.g. the float32
    logits of a whole batch."""
    return sum(1 for result, _ in entry_ops(hlo_text)
               if result.startswith(dtype + "[") and dims_of(result) == tuple(dims))


def top_level_fusions(hlo_text: str) -> int:
    """Fusions launched from the entry computation: on a GPU roughly one kernel each."""
    return sum(1 for _, op in entry_ops(hlo_text) if op == "fusion")


def cost(compiled) -> dict:
    """FLOPs and bytes accessed as XLA's cost analysis reads the compiled module (loop bodies once)."""
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return {"flops": float(analysis.get("flops", 0.0)), "bytes_accessed": float(analysis.get("bytes accessed", 0.0))}


def memory(compiled) -> dict:
    stats = compiled.memory_analysis()
    if stats is None:
        return {"temp_bytes": None, "argument_bytes": None, "output_bytes": None, "alias_bytes": None}
    return {"temp_bytes": int(stats.temp_size_in_bytes), "argument_bytes": int(stats.argument_size_in_bytes),
            "output_bytes": int(stats.output_size_in_bytes), "alias_bytes": int(stats.alias_size_in_bytes)}


def leaf_shapes(tree) -> list[tuple]:
    return [tuple(x.shape) for x in jax.tree.leaves(tree)]


@contextlib.contextmanager
def unrolled_scans():
    """Inside: every `jax.lax.scan` traced is fully unrolled, so XLA's cost analysis counts each iteration.
    For costing only: an unrolled program compiles slower and may be scheduled differently."""
    original = jax.lax.scan

    def scan(f, init, xs=None, length=None, reverse=False, unroll=1, _split_transpose=False):
        return original(f, init, xs, length=length, reverse=reverse, unroll=True)

    jax.lax.scan = scan
    try:
        yield
    finally:
        jax.lax.scan = original


def lowers_for(platform: str, fn, *args, **kwargs) -> tuple[bool, str]:
    """Whether jitted `fn` lowers to StableHLO for `platform` ("cuda", "rocm", "tpu") from this host, with
    the reason when not. Lowering runs every platform-specific rule (cuDNN's fused attention included);
    compiling for a GPU would need its driver."""
    jitted = fn if hasattr(fn, "trace") else jax.jit(fn)
    try:
        jitted.trace(*args, **kwargs).lower(lowering_platforms=(platform,))
        return True, ""
    except Exception as e:  # noqa: BLE001 - any refusal is the answer, said in one line
        return False, f"{type(e).__name__}: {e}".splitlines()[0][:400]


def summary(compiled, state_shapes: Iterable[tuple] = ()) -> dict:
    """The compile-only figures of one program (`compiled`: `jit(f).lower(...).compile()`)."""
    text = compiled.as_text()
    return {**cost(compiled), "fusions": top_level_fusions(text),
            "param_copies": state_copies(text, state_shapes), **memory(compiled)}
