#!/usr/bin/env bash
# EKG on ImageNet, ResNet-50 at 45 % and 55 % FLOPs removed (search_target_rate 0.55 and 0.45 kept), full EKG
# (memory-bank fine-tuning). Poster: 76.43 / 93.13 (45.0 %) and 75.93 / 92.82 (55.0 %), baseline 76.45 / 93.15,
# ~315 GPU-h. The authors never released the ImageNet code or recipe: this one is INFERRED (research/ekg.md 1.10;
# ekg_tf2/imagenet.py): torchvision-style RandomResizedCrop + flip, eval resize 256 / centre crop 224, lr 0.05,
# batch 128, x0.1 at 30/60/90 of 100 epochs, weight decay 1e-4, T = 10; the records say recipe "inferred".
#
#   DATA_DIR=<folder with train/ val/> R50_PARAMS=<pre-trained ResNet-50 params pkl> bash scripts/ekg/imagenet_resnet50.sh
#   SMOKE=1 bash scripts/ekg/imagenet_resnet50.sh     # a generated JPEG folder, random ResNet-50, 32 px, a few steps
#   DRY_RUN=1 bash scripts/ekg/imagenet_resnet50.sh   # print the commands only
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
recipe=(--learning_rate 0.05 --batch_size 128 --decay_points 0.3 0.6 0.9 --decay_rate 0.1 --weight_decay 1e-4)
s_extra=()
f_extra=()
if [ "$SMOKE" = 1 ]; then
  OUT=${OUT:-runs/ekg/imagenet-smoke/$(date +%Y%m%d-%H%M%S)}
  DATA_DIR="$OUT/data"
  R50_PARAMS="$OUT/r50_random.pkl"
  run "$PY" -c "import sys; from tests.jpeg_folder import write_jpeg_folder; write_jpeg_folder(sys.argv[1])" "$DATA_DIR"
  run "$PY" -c "import sys; from ekg_tf2 import params; from ekg_tf2.models import ResNet; \
params.write_params(sys.argv[1], params.model_params(ResNet('ResNet-50', 1000)))" "$R50_PARAMS"
  recipe=(--learning_rate 0.05 --batch_size 8 --decay_rate 0.1 --weight_decay 1e-4)
  s_extra=(--image_size 32 --val_per_class 1 --subset_per_class 2 --search_batch_size 4 --search_step 1.0
    --max_search_iterations 1 --xla off)
  f_extra=(--image_size 32 --train_epoch 1 --max_steps 1 --xla off)
else
  OUT=${OUT:-runs/ekg/imagenet}
fi
RECORDS=${RECORDS:-$OUT/records}
for rate in 0.55 0.45; do
  path="$OUT/r50_keep$rate"
  common=(--arch ResNet-50 --dataset ILSVRC --data_dir "${DATA_DIR:-DATA_DIR}" --records "$RECORDS")
  # the search (+ memory bank), then full-EKG fine-tuning from the slimmed network
  run "$PY" -m ekg_tf2.pruning "${common[@]}" --search_target_rate "$rate" --train_path "$path" \
    --trained_param "${R50_PARAMS:-R50_PARAMS}" ${s_extra[@]+"${s_extra[@]}"}
  run "$PY" -m ekg_tf2.train "${common[@]}" --Knowledge --temperature 10 "${recipe[@]}" \
    --trained_param "$path/slimmed_params.pkl" --train_path "$path/knowledge" ${f_extra[@]+"${f_extra[@]}"}
done
if [ "$SMOKE" != 1 ]; then
  run "$PY" -m shared.results check --records "$RECORDS" --paper ekg --only-run
fi
