#!/usr/bin/env bash
# Run a storyjax job on a Cloud TPU pod slice: create the slice, copy the code to every worker, install
# on every worker, run on all workers at once (jax.distributed finds the pod by itself), stream the logs,
# delete the slice.
#
# Usage:   WORKDIR=gs://BUCKET/runs/gpt2_100m launch/tpu_pod.sh [--config.KEY=VALUE ...]
#          e.g. launch/tpu_pod.sh --config.data.name=babylm_100m --config.data.tfds_dir=gs://BUCKET/tfds
#          Interactive runs grade with the teacher inside the program (a pod has no vLLM beside it): copy the
#          weights to every worker's disk (e.g. gcloud storage cp -r gs://BUCKET/Llama-3.1-8B-Instruct ~/) and
#          CONFIG=configs/interactive.py:paper launch/tpu_pod.sh --config.teacher.name=jax
#          --config.teacher.jax.weights=/home/$USER/Llama-3.1-8B-Instruct --config.teacher.jax.grading=greedy
#          --config.teacher.shard_across_hosts=True --config.teacher.jax.model_parallel=2 (an 8B bf16 teacher is
#          16 GB: split over 2 chips of a v4/v5e), --config.init_checkpoint=gs://BUCKET/runs/pretrain
# Needs:   gcloud, logged in (`gcloud auth login`), a project with TPU quota in ZONE, and a GCS bucket: every
#          worker must see the same WORKDIR (and tfds folder), so both are gs:// paths. Run from the
#          checkout (the committed HEAD is what gets copied).
# Vars:    WORKDIR (required), TPU_NAME (storyjax-pod), ZONE (us-central2-b), ACCELERATOR (v4-32),
#          VERSION (tpu-ubuntu2204-base), CONFIG (configs/pretrain.py:gpt2_small), PROJECT (gcloud's
#          default), SPOT=1 for a spot slice, KEEP=1 to keep the slice afterwards (to rerun: the same
#          command resumes from WORKDIR), LOG (storyjax-TPU_NAME.log).
# Success: every worker prints "Process I of N: 4 local devices of ...", worker 0 shows the progress bar
#          and ends with the summary dict ({'steps': ..., 'param_checksum': ...}); the log is in LOG and
#          "Deleted storyjax-pod" closes the run (unless KEEP=1). A preempted spot slice exits 143 after
#          checkpointing; rerunning the script resumes.
set -euo pipefail

: "${WORKDIR:?set WORKDIR to a gs:// folder every worker can read and write}"
TPU_NAME=${TPU_NAME:-storyjax-pod}
ZONE=${ZONE:-us-central2-b}
ACCELERATOR=${ACCELERATOR:-v4-32}
VERSION=${VERSION:-tpu-ubuntu2204-base}
CONFIG=${CONFIG:-configs/pretrain.py:gpt2_small}
LOG=${LOG:-storyjax-${TPU_NAME}.log}
project=()
if [[ -n "${PROJECT:-}" ]]; then
  project=(--project "$PROJECT")
fi
tpu=(gcloud compute tpus tpu-vm "${project[@]}")

create=("${tpu[@]}" create "$TPU_NAME" --zone "$ZONE" --accelerator-type "$ACCELERATOR" --version "$VERSION")
if [[ "${SPOT:-0}" == 1 ]]; then
  create+=(--spot)
fi

cleanup() {
  if [[ "${KEEP:-0}" != 1 ]]; then
    "${tpu[@]}" delete "$TPU_NAME" --zone "$ZONE" --quiet && echo "Deleted $TPU_NAME"
  fi
}

if ! "${tpu[@]}" describe "$TPU_NAME" --zone "$ZONE" >/dev/null 2>&1; then
  "${create[@]}"
fi
trap cleanup EXIT

archive=$(mktemp --suffix=.tar.gz)
git archive --format=tar.gz --prefix=storyjax/ -o "$archive" HEAD
"${tpu[@]}" scp "$archive" "$TPU_NAME":storyjax.tar.gz --zone "$ZONE" --worker=all
rm -f "$archive"

# libtpu comes with jax[tpu]; the range matches setup.cfg's jax pin.
install='rm -rf storyjax && tar xzf storyjax.tar.gz && cd storyjax && python3 -m venv .venv && . .venv/bin/activate
  && pip install -q -U pip && pip install -q "jax[tpu]>=0.10,<0.11"
     -f https://storage.googleapis.com/jax-releases/libtpu_releases.html && pip install -q -e .'
"${tpu[@]}" ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "${install//$'\n'/ }"

flags=$(printf ' %q' "$@")
run="cd storyjax && . .venv/bin/activate && python -m storyjax.main --config=$CONFIG --workdir=$WORKDIR \
--config.distributed.auto=True${flags}"
"${tpu[@]}" ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$run" 2>&1 | tee "$LOG"
