#!/usr/bin/env bash
# DSP: evaluate the authors' six released CIFAR-10 models (accuracy on DATA_DIR's test set, README
# P.FLOPS / P.PARAMS recounted) and write released-model run records (default runs/dsp/released/records; RECORDS=results/records
# updates the committed ones).
#   DATA_DIR=... CKPT_DIR=.../checkpoints bash scripts/dsp/released_models.sh
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
CKPT_DIR=${CKPT_DIR:-${PRUNING_CHECKPOINT_DIR:-}}
RECORDS=${RECORDS:-runs/dsp/released/records}  # RECORDS=results/records updates the committed ones
if [ -z "$DATA_DIR" ] || [ -z "$CKPT_DIR" ]; then
  echo "error: set DATA_DIR (CIFAR-10) and CKPT_DIR (folder with dsp/resnet{20,56}_g{2,3,4}.pt)" >&2
  exit 2
fi
for depth in 20 56; do
  for g in 4 3 2; do
    "$PY" -m dsp_torch.eval --ckpt "$CKPT_DIR/dsp/resnet${depth}_g${g}.pt" --data-dir "$DATA_DIR" --check-script \
      --records "$RECORDS"
  done
done
"$PY" -m shared.results check --paper dsp --records "$RECORDS" --only-run
