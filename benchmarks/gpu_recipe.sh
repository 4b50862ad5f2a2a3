#!/usr/bin/env bash
# The GPU half of the course measured on a GPU, as one device run (issue 29, item 4): the gpu
# recipe (VGG16-PSPNet, 256 px, mixed precision, batch 16) trained for its time budget on the
# development patients of one cross-validation fold and scored on that fold's held-out ones,
# then the GPU rows of the throughput table. The GPU machine has JAX but no TensorFlow, Keras or
# network, so Keras runs on JAX, fed by the PyDataset of pspseg_utils.training.feeding, and the
# backbone starts from random weights (ImageNet's cannot be downloaded there).
#
# Prepare here, once (the data as a 30 MB copy, see pack_for_device.py; Keras as wheels):
#   python benchmarks/pack_for_device.py --data ../shared/data/lgg_dev --out .devdata/lgg_dev
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       keras==3.15.1 namex==0.1.0 optree==0.20.0
# Then on the device: run `bash benchmarks/gpu_recipe.sh`, carrying .whl and .devdata, with a
# timeout of 590 s (7 minutes of training, about 1 of loading and scoring). The JSON lines come
# back in $OUT. Settings by environment: DATA, FOLDS ("0 1"), MINUTES, SETTINGS (more --set
# FIELD=VALUE), THROUGHPUT=no to skip the table. Checked end to end on JAX on a CPU with:
#   OUT=/tmp/gpu-check DATA=<a synthetic dataset> MINUTES=0.3 THROUGHPUT=no \
#       SETTINGS="--set image_size=64 --set head_channels=16 --set batch_size=4" \
#       bash benchmarks/gpu_recipe.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu}
DATA=${DATA:-.devdata/lgg_dev}
FOLDS=${FOLDS:-0}
MINUTES=${MINUTES:-7}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"

for fold in $FOLDS; do
    # shellcheck disable=SC2086  # SETTINGS holds several words
    python3 benchmarks/cross_validation.py --data "$DATA" --out /tmp/gpu-recipe --fold "$fold" \
        --time-budget "$MINUTES" --set backbone_weights=null ${SETTINGS:-} \
        2> "$OUT/train_fold_$fold.log" | tee -a "$OUT/cv_gpu_recipe.jsonl"
done
if [ "${THROUGHPUT:-yes}" != no ]; then
    python3 benchmarks/throughput.py --set gpu | tee "$OUT/throughput_gpu.jsonl"
fi
