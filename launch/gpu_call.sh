#!/usr/bin/env bash
# The prepared GPU call: on a bare GPU machine (Python 3.12 with jax + CUDA, flax, optax, orbax, torch,
# transformers; no network), from the checkout. Installs the carried wheels into a side folder (never the
# project over the machine's jax), then runs the stages named in STAGES, each under its own time limit,
# writing every figure as it comes.
#
# Usage:   launch/gpu_call.sh                 (after launch/gpu_bundle.sh filled WHEELS on a networked host)
# Vars:    OUT (gpu_out; every stage's JSON and log), WHEELS (.whl), SITE (/tmp/storyjax_site),
#          STAGES (smoke,pretrain,yardstick: the first call; rollout,teacher,matmul: the second), YARDSTICK
#          (path to the plain JAX GPT-2 yardstick script, carried into the checkout; its stage is skipped,
#          with a line saying so, where it is missing), MEM_FRACTION (0.6: JAX's share of the GPU, the HF
#          peer rows use the rest), CALL_LIMIT (290 s for the whole call: a stage gets what is left, and one
#          that cannot have MIN_STAGE (30) s is skipped, saying so), STAGE_TIMEOUT (280 s at most per stage),
#          PYTHON (python3), SMOKE_PRESET (gpt2_small), SMOKE_ATTENTION (cudnn).
# Success: "ok pretrain_step (...)" ... "ok tiny_random_teacher (...)", then each stage's table, and
#          "stage NAME: rc 0 in S s" per stage; OUT/smoke.json, OUT/bench_*.json, OUT/yardstick.json, OUT/*.log.
#          The smoke stage failing stops the call (exit 1): nothing after it would run.
set -uo pipefail

OUT=${OUT:-gpu_out}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/storyjax_site}
STAGES=${STAGES:-smoke,pretrain,yardstick}
YARDSTICK=${YARDSTICK:-}
MEM_FRACTION=${MEM_FRACTION:-0.6}
STAGE_TIMEOUT=${STAGE_TIMEOUT:-280}
CALL_LIMIT=${CALL_LIMIT:-290}
MIN_STAGE=${MIN_STAGE:-30}
SMOKE_PRESET=${SMOKE_PRESET:-gpt2_small}
SMOKE_ATTENTION=${SMOKE_ATTENTION:-cudnn}
PYTHON=${PYTHON:-python3}

mkdir -p "$OUT"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl || { echo "installing the wheels in $WHEELS failed" >&2; exit 2; }
else
  echo "no wheels in $WHEELS: run launch/gpu_bundle.sh on a networked host and carry them" >&2
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION="$MEM_FRACTION"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$PYTHON" -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, jax.devices())'
} 2>&1 | tee "$OUT/machine.log"

stage() {  # stage NAME COMMAND...: runs under what is left of the call, logs to OUT/NAME.log, reports its time
  local name=$1 t0=$SECONDS rc left=$((CALL_LIMIT - SECONDS))
  shift
  ((left > STAGE_TIMEOUT)) && left=$STAGE_TIMEOUT
  if ((left < MIN_STAGE)); then
    echo "stage $name: skipped (${left} s left of CALL_LIMIT=${CALL_LIMIT}; run it in the next call)"
    return 0
  fi
  timeout "$left" "$@" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  echo "stage $name: rc $rc in $((SECONDS - t0)) s"
  return "$rc"
}

bench=("$PYTHON" -m storyjax.bench --preset=gpt2_small --rounds=3)
for s in ${STAGES//,/ }; do
  case $s in
    smoke) stage smoke timeout 60 "$PYTHON" -m storyjax.smoke --preset="$SMOKE_PRESET" \
             --attention="$SMOKE_ATTENTION" --out="$OUT/smoke.json" || exit 1 ;;
    compile) stage compile "${bench[@]}" --compile_only --out="$OUT/bench_compiled.json" ;;
    pretrain) stage pretrain "${bench[@]}" --rows=pretrain --batches=64 --attention=auto,xla \
                --out="$OUT/bench_pretrain.json" ;;
    rollout) stage rollout "${bench[@]}" --rows=rollout --out="$OUT/bench_rollout.json" ;;
    teacher) stage teacher "${bench[@]}" --rows=teacher --teacher=jax --teacher_weights=random:llama3_8b \
               --teacher_batch=360 --out="$OUT/bench_teacher.json" ;;
    yardstick)
      if [[ -n "$YARDSTICK" && -f "$YARDSTICK" ]]; then
        OUT="$OUT" stage yardstick "$PYTHON" "$YARDSTICK"
      else
        echo "stage yardstick: skipped (YARDSTICK=${YARDSTICK:-unset} is not a file; carry the script into the checkout)"
      fi ;;
    matmul) stage matmul "$PYTHON" -m storyjax.matmul_ceiling --out="$OUT/matmul.json"
            XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_triton_gemm=false" stage matmul_cublas \
              "$PYTHON" -m storyjax.matmul_ceiling --out="$OUT/matmul_cublas.json" ;;
    *) echo "unknown stage $s (smoke, compile, pretrain, rollout, teacher, yardstick, matmul)" >&2; exit 2 ;;
  esac
done
