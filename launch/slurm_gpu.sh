#!/usr/bin/env bash
#SBATCH --job-name=storyjax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --output=storyjax-%j.out
#SBATCH --signal=TERM@180
#SBATCH --requeue
# Pretrain (or run any storyjax job) on a SLURM GPU cluster: one process per node driving all its GPUs,
# the nodes joined by jax.distributed (coordinator: the first node of the allocation).
#
# Usage:   WORKDIR=/shared/runs/gpt2_100m sbatch launch/slurm_gpu.sh [--config.KEY=VALUE ...]
#          (nodes and GPUs: edit the #SBATCH lines or pass sbatch --nodes=4 --gpus-per-node=4 ...)
#          Interactive runs (CONFIG=configs/interactive.py:paper): run a teacher server on one GPU of every
#          node (e.g. `srun --overlap --ntasks-per-node=1 env CUDA_VISIBLE_DEVICES=7 launch/vllm_teacher.sh &`
#          inside the allocation), give storyjax the others with STUDENT_GPUS=0,1,2,3,4,5,6, and pass
#          --config.teacher.shard_across_hosts=True: each node then grades its share of every batch.
#          Or keep the teacher inside the program, on the student's GPUs (no server):
#          --config.teacher.name=jax --config.teacher.jax.weights=/shared/Llama-3.1-8B-Instruct
#          --config.teacher.jax.grading=greedy --config.teacher.shard_across_hosts=True (and, on GPUs too small
#          for the whole teacher, --config.teacher.jax.model_parallel=2).
# Needs:   a shared file system for WORKDIR and the tfds folder (every node reads and writes them), and
#          a Python environment with storyjax and CUDA jax installed where VENV points:
#          python3 -m venv $VENV && $VENV/bin/pip install "jax[cuda12]>=0.10,<0.11" -e /path/to/storyjax
# Vars:    WORKDIR (required), VENV (./.venv), CONFIG (configs/pretrain.py:gpt2_small), PORT (12355),
#          REPO (the submit directory: the storyjax checkout), STUDENT_GPUS (all of the node's: the GPU
#          indices storyjax may use, as CUDA_VISIBLE_DEVICES).
# Success: storyjax-JOBID.out shows "Process I of N: 8 local devices of 16" from every node, the progress
#          of process 0, and ends with the summary dict ({'steps': ..., 'param_checksum': ...}). On
#          preemption or the time limit SLURM sends SIGTERM 3 minutes ahead: the run checkpoints, exits
#          143 and is requeued; the requeued job resumes from WORKDIR.
set -euo pipefail

: "${WORKDIR:?set WORKDIR to a folder on the shared file system}"
REPO=${REPO:-${SLURM_SUBMIT_DIR:-$PWD}}
VENV=${VENV:-$REPO/.venv}
CONFIG=${CONFIG:-configs/pretrain.py:gpt2_small}
PORT=${PORT:-12355}
: "${SLURM_JOB_NODELIST:?submit with sbatch: this script reads the allocation SLURM gives it}"
coordinator=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
STUDENT_GPUS=${STUDENT_GPUS:-}
export REPO VENV CONFIG WORKDIR coordinator PORT STUDENT_GPUS

# One task per node; each task learns its rank from SLURM_PROCID.
# shellcheck disable=SC2016  # expanded by the task's shell, per node
srun --kill-on-bad-exit=1 bash -c 'cd "$REPO" && . "$VENV/bin/activate" \
  && if [[ -n "$STUDENT_GPUS" ]]; then export CUDA_VISIBLE_DEVICES="$STUDENT_GPUS"; fi \
  && exec python -m storyjax.main \
  --config="$CONFIG" --workdir="$WORKDIR" --config.distributed.coordinator="$coordinator:$PORT" \
  --config.distributed.num_processes="$SLURM_NTASKS" --config.distributed.process_id="$SLURM_PROCID" "$@"' \
  storyjax "$@"
