#!/usr/bin/env bash
# DCP's Table 5 (ILSVRC-12 ResNet-18 and ResNet-50 at eta 0.3 / 0.5 / 0.7).
#   1. the complexity of every row: the paper's supplementary Table S4 counts, reproduced exactly by
#      dcp_tf.flops for the paper's (torchvision) networks;
#   2. training: dcp_tf trains on ILSVRC-12 with PocketFlow's networks (TF-official ResNet v2, 1001
#      classes) and PocketFlow's learner; the paper's torchvision ResNets are counted, not trained, so
#      these runs are PocketFlow-style DCP at Table 5's ratios, not the table's rows (dcp_tf/README.md).
#
#   DATA_DIR=/path/to/imagenet bash scripts/dcp/imagenet_table5.sh   # train/ and val/ (class folders or .lmdb)
#   SMOKE=1 bash scripts/dcp/imagenet_table5.sh    # a generated JPEG folder, ResNet-18 at 32 px, eta 0.7, tiny counts
#   DRY_RUN=1 bash scripts/dcp/imagenet_table5.sh  # print the commands only
# Every step resumes when interrupted; a finished model is never retrained or overwritten.
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"

for depth in 18 50; do
  for eta in 0.3 0.5 0.7; do
    run "$PY" -m dcp_tf.flops --dataset ilsvrc12 --dcp_variant paper --resnet_size "$depth" --dcp_prune_ratio "$eta"
  done
done

if [ "$SMOKE" = 1 ]; then
  OUT=${OUT:-runs/dcp/imagenet_smoke/$(date +%Y%m%d-%H%M%S)}
  DATA_DIR=$OUT/jpeg
  run "$PY" -c "import sys; from tests.jpeg_folder import write_jpeg_folder; write_jpeg_folder(sys.argv[1])" "$DATA_DIR"
  RATIOS=(0.7)
  base_extra=(--image_size 32 --batch_size 8 --batch_size_eval 8 --nb_iters_train 4 --bn_decay 0.9 --summ_step 0)
  dcp_extra=(--image_size 32 --batch_size 8 --batch_size_eval 8 --bn_decay 0.9 --summ_step 0 --dcp_nb_stages 1
             --dcp_nb_iters_block 1 --dcp_nb_iters_layer 0 --nb_epochs_rat 0.0001 --dcp_save_every_picks 0 --no_export)
else
  if [ -z "$DATA_DIR" ] && [ "$DRY_RUN" != 1 ]; then
    echo "error: set DATA_DIR (or PRUNING_DATA_DIR) to a folder holding ImageNet's train/ and val/" >&2
    exit 2
  fi
  OUT=${OUT:-runs/dcp/table5}
  RATIOS=(0.3 0.5 0.7)
  base_extra=()
  dcp_extra=()
fi
RECORDS=${RECORDS:-$OUT/records}
common=(--data_dir "$DATA_DIR" --resnet_size 18 --records "$RECORDS" --log_dir "$OUT/logs"
        --save_path "$OUT/resnet18/models/model.ckpt" --save_path_eval "$OUT/resnet18/models_eval/model.ckpt")
run "$PY" -m dcp_tf.resnet_at_ilsvrc12_run --learner full-prec "${common[@]}" "${base_extra[@]}"
for eta in "${RATIOS[@]}"; do
  run "$PY" -m dcp_tf.resnet_at_ilsvrc12_run --learner dis-chn-pruned --dcp_prune_ratio "$eta" "${common[@]}" \
    --dcp_save_path "$OUT/resnet18/dcp_$eta/model.ckpt" --dcp_save_path_eval "$OUT/resnet18/dcp_${eta}_eval/model.ckpt" \
    "${dcp_extra[@]}"
done
