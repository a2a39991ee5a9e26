#!/usr/bin/env bash
# Wheels for the GPU machine, built here before a session's device time starts.
#
# The lent GPU machine (see BENCHMARKS.md "GPU check") has Python 3.12 with torch, torchvision,
# numpy, pandas, pyarrow, scikit-learn, scikit-image, matplotlib, aiohttp, grpcio and the like,
# but not Ray, Dask, pydantic or jsonschema, and it cannot download anything. This script puts
# the wheels `bench/gpu_check.sh` needs beyond that image into .whl/ (ignored by git), at the
# versions of this checkout's .venv, for CPython $PY (default 3.12) on manylinux x86-64: about
# 49 MB, within the 64 MiB a device call carries. Ray's wheel loses its Java jars, RLlib, Serve
# and its test folders. It keeps its dashboard, whose packages are listed too: Ray Train's
# placement-group cleaner asks the state API (served by the dashboard) whether a run is alive.
# gpu_check.sh installs .whl/ on the device with --no-deps. Then, in one device call:
# carry [".whl"], command "bash bench/gpu_check.sh".
#
# Checked without a GPU: a Python 3.11 venv holding only the packages the device image and this
# venv share, plus these wheels built with PY=3.11, ran `bench/gpu_check.py --sweep --gpu-share 0`
# and `bench/image_train_overhead.py` (image ingest, Ray Train) with the state API answering.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-3.12}"
OUT="${OUT:-.whl}"
VENV_PY="${VENV_PY:-.venv/bin/python}"
# What the GPU check imports (driver, Ray Train and Tune workers, image ingest, Ray's dashboard)
# and the image lacks; the rest of each package's dependencies are there already.
PACKAGES=(
  ray dask partd locket importlib-metadata pydantic pydantic-core annotated-types typing-inspection
  jsonschema jsonschema-specifications referencing rpds-py
  aiohttp-cors opencensus opencensus-context opentelemetry-api opentelemetry-sdk
  opentelemetry-exporter-prometheus opentelemetry-proto opentelemetry-semantic-conventions
  google-api-core google-auth googleapis-common-protos proto-plus colorful smart-open
)

version() { "$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }

rm -rf "$OUT" && mkdir -p "$OUT"
specs=()
for name in "${PACKAGES[@]}"; do specs+=("$name==$(version "$name")"); done
abi="cp${PY/./}"
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$OUT" \
  --python-version "$PY" --implementation cp --abi "$abi" --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any "${specs[@]}"

ray_wheel=$(ls "$OUT"/ray-*.whl)
mv "$ray_wheel" "$ray_wheel.full"
python3 - "$ray_wheel.full" "$ray_wheel" <<'PY'
import re, sys, zipfile
dropped = re.compile(r"ray/(jars|rllib|serve)/|ray/(.+/)?tests/")
with zipfile.ZipFile(sys.argv[1]) as src, zipfile.ZipFile(
    sys.argv[2], "w", zipfile.ZIP_DEFLATED
) as dst:
    for item in src.infolist():
        if not dropped.match(item.filename):
            dst.writestr(item, src.read(item), zipfile.ZIP_DEFLATED)
PY
rm "$ray_wheel.full"
du -sh "$OUT"
ls "$OUT"
