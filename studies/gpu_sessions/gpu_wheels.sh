#!/usr/bin/env bash
# Wheels of the project's dependencies that the lent GPU machines lack, for their Python 3.12, into .whl/
# (git-ignored). Their image already has torch, torchvision, numpy, h5py, opencv-python-headless, scipy,
# scikit-image, timm, huggingface-hub, click, rich, matplotlib and pytest (the device library's KINDS.md);
# nothing else can be fetched there. Run here, where pip reaches the registry; then carry .whl in each call:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#       .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site && PY=python3 bash studies/gpu_sessions/gpu_session.sh
# The versions are the ones the development CPU's tests pass with: 14 wheels, 27 MB (a call carries at most 64 MiB,
# the working tree included). ZARR=0 leaves out zarr and its needs (10 wheels, 18 MB; removed from .whl if there):
# enough for HDF5 shards, i.e. everything but phase 4's Zarr test, and what lets `train study` calls fit.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
PKGS=(zarr==3.1.6 donfig==0.8.1.post1 google-crc32c==1.9.0 numcodecs==0.16.6 albumentations==2.0.8 albucore==0.0.24
      simsimd==6.5.16 stringzilla==5.3.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
      typing-inspection==0.4.5 segmentation-models-pytorch==0.6.0 psnr_hvsm==0.3.0)
if [ "${ZARR:-1}" = 0 ]; then
    kept=()
    for p in "${PKGS[@]}"; do
        name=${p%%==*}
        case $name in zarr|donfig|google-crc32c|numcodecs) rm -f ".whl/${name//-/_}-"* ;; *) kept+=("$p") ;; esac
    done
    PKGS=("${kept[@]}")
fi
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64; do platforms+=(--platform "$p"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .whl "${PKGS[@]}"
ls .whl
du -sh .whl
