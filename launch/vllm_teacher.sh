#!/usr/bin/env bash
# Serve the paper's teacher, Llama-3.1-8B-Instruct, with vLLM's OpenAI-compatible server.
#
# Usage:   launch/vllm_teacher.sh            (then point storyjax at it, see below)
# Needs:   a CUDA GPU with >= 24 GB, `pip install vllm`, access to the model weights (HF_TOKEN for the
#          gated meta-llama repo, or MODEL=/path/to/local/weights).
# Vars:    MODEL (default meta-llama/Llama-3.1-8B-Instruct), PORT (8000), HOST (0.0.0.0),
#          MAX_MODEL_LEN (2048: rubric + story fit in ~600 tokens), GPU_MEM (0.85), API_KEY (optional; then
#          export OPENAI_API_KEY=$API_KEY where storyjax runs).
# Success: the log ends with "Application startup complete." and
#          curl -s http://HOST:PORT/v1/models | grep -q "$MODEL" succeeds. Then:
#          python -m storyjax.main --config=configs/interactive.py:paper --config.init_checkpoint=RUN \
#            --config.teacher.openai.base_url=http://HOST:PORT/v1 --config.teacher.openai.constrain=vllm --workdir=DIR
# Prefix caching is on (every request shares the rubric prefix); structured outputs let
# teacher.openai.constrain=vllm force answers of the form "d d d".
set -euo pipefail

MODEL=${MODEL:-meta-llama/Llama-3.1-8B-Instruct}
PORT=${PORT:-8000}
HOST=${HOST:-0.0.0.0}
MAX_MODEL_LEN=${MAX_MODEL_LEN:-2048}
GPU_MEM=${GPU_MEM:-0.85}

args=(serve "$MODEL" --host "$HOST" --port "$PORT" --max-model-len "$MAX_MODEL_LEN"
      --gpu-memory-utilization "$GPU_MEM" --enable-prefix-caching --dtype bfloat16 --seed 0)
if [[ -n "${API_KEY:-}" ]]; then
  args+=(--api-key "$API_KEY")
fi
exec vllm "${args[@]}"
