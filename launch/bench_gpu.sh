#!/usr/bin/env bash
# Measure storyjax beside HF transformers on one GPU at the paper's shape (gpt2_small, bfloat16), with a
# profiler trace of each storyjax row, in one run.
#
# Usage:   OUT=results/h200 launch/bench_gpu.sh
#          Needs `pip install -e ".[bench]"` with a CUDA build of jax (jax[cuda12] or jax[cuda13]) and torch.
# Vars:    OUT (bench_out), ATTENTION (auto,xla: one pretraining row per attention implementation, the first
#          compared with HF), BATCHES (16,64), STEPS (20), TEACHER (jax; or none, openai, or a list:
#          jax,openai), TEACHER_URL (http://127.0.0.1:8000/v1), TEACHER_WEIGHTS (random:llama3_8b: an
#          8B-shaped teacher with random weights grading 360 stories of ~110 tokens behind a 300-token
#          prefix; or a .gguf file / Hugging Face folder), PYTHON (python3). XLA_FLAGS and the XLA_PYTHON_CLIENT_* variables
#          pass through to jax.
# Success: the device and versions, then the table: "pretrain b16  storyjax/cudnn  ... tokens/s  MFU",
#          the HF eager and torch.compile rows, "rollout b360 storyjax: N stories/s", the HF generate rows,
#          one "profile ...:" line per storyjax row (its top device kernels), "teacher_jax ...: N stories/s"
#          beside "teacher_jax_hf transformers ...", and "ratio ...: N.NNx" lines;
#          OUT/bench.json (every figure, the ratios), OUT/bench.log, and OUT/profile/*/plugins/profile/*/
#          perfetto_trace.json.gz (open in ui.perfetto.dev).
set -euo pipefail

OUT=${OUT:-bench_out}
ATTENTION=${ATTENTION:-auto,xla}
BATCHES=${BATCHES:-16,64}
STEPS=${STEPS:-20}
TEACHER=${TEACHER:-jax}
TEACHER_URL=${TEACHER_URL:-http://127.0.0.1:8000/v1}
TEACHER_WEIGHTS=${TEACHER_WEIGHTS:-random:llama3_8b}
PYTHON=${PYTHON:-python3}

mkdir -p "$OUT"
if ! "$PYTHON" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")'; then
  echo "jax sees no GPU (backend: $("$PYTHON" -c 'import jax; print(jax.default_backend())')); install a CUDA" \
    "build of jax (pip install 'jax[cuda12]') or use --preset=tiny on CPU." >&2
  exit 2
fi
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$PYTHON" -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__)'
  "$PYTHON" -m storyjax.bench --preset=gpt2_small --batches="$BATCHES" --steps="$STEPS" \
    --attention="$ATTENTION" --teacher="$TEACHER" --teacher_url="$TEACHER_URL" \
    --teacher_weights="$TEACHER_WEIGHTS" --teacher_batch=120 \
    --profile_dir="$OUT/profile" --out="$OUT/bench.json"
} 2>&1 | tee "$OUT/bench.log"
