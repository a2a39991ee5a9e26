#!/usr/bin/env bash
# GPU check: train the default model on CUDA (bf16 autocast) through Ray Train, then print
# samples/s and peak GPU memory; then the image path: ProtoPNet-ResNet-18 on a generated 224x224
# image folder through the pipeline and through a plain torch loop (images/s, GPU busy share,
# peak memory, side by side); then fractional GPUs: a tiny sweep with 0.25 GPU per trial, printing
# how many trials ran on the GPU at once. On a machine without the project's packages, wheels in .whl/
# (built here by bench/gpu_wheels.sh) are installed to /tmp/site first; a pre-ingested dataset
# can be passed as $1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 bench/gpu_check.py ${1:+--dataset "$1"} "${@:2}"
python3 bench/gpu_check.py --images "${IMAGES:-4000}" --epochs 3 --batch-size 128
python3 bench/gpu_check.py --sweep --gpu-share 0.25 --epochs 10
