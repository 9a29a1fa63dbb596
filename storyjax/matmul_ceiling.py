"""`python -m storyjax.matmul_ceiling [--n=8192] [--out=FILE.json]`: the bf16 matmul ceiling of this device as
JAX reaches it (an n×n×n product, float32 accumulation), to read MFU against. XLA_FLAGS pass through, so
`XLA_FLAGS=--xla_gpu_enable_triton_gemm=false` measures cuBLAS alone beside the default GEMM choice."""

from __future__ import annotations

import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

flags.DEFINE_integer("n", 8192, "Matrix side.")
flags.DEFINE_integer("repeats", 10, "Timed products (after three warm-ups); the median is reported.")
flags.DEFINE_string("out", "", "Write the figure to this JSON file.")


def ceiling(n: int, repeats: int) -> dict:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    dot = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32).astype(jnp.bfloat16))
    for _ in range(3):
        dot(a, b).block_until_ready()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dot(a, b).block_until_ready()
        seconds.append(time.perf_counter() - t0)
    s = statistics.median(seconds)
    return {"n": n, "seconds": s, "tflops": 2 * n**3 / s / 1e12, "device": jax.devices()[0].device_kind,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "jax": jax.__version__}


def main(argv):
    del argv
    result = ceiling(flags.FLAGS.n, flags.FLAGS.repeats)
    print(f"bf16 {result['n']}^3 matmul: {result['tflops']:.0f} TFLOP/s on {result['device']} "
          f"(XLA_FLAGS={result['xla_flags']!r})", flush=True)
    if flags.FLAGS.out:
        with open(flags.FLAGS.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    app.run(main)
