#!/usr/bin/env bash
# DCP's Table 5 (ILSVRC-12 ResNet-18 and ResNet-50 at eta 0.3 / 0.5 / 0.7). The ImageNet training
# pipeline of dcp_tf is not wired yet: this script prints the complexity of every row (the paper's
# supplementary Table S4 counts, reproduced exactly by dcp_tf.flops) and the training commands the rows
# will take once it is.
#   bash scripts/dcp/imagenet_table5.sh          SMOKE=1 / DRY_RUN=1 as the other scripts
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"

for depth in 18 50; do
  for eta in 0.3 0.5 0.7; do
    run "$PY" -m dcp_tf.flops --dataset ilsvrc12 --dcp_variant paper --resnet_size "$depth" --dcp_prune_ratio "$eta"
  done
done
if [ "$SMOKE" != 1 ]; then
  echo "# training (not wired yet): python -m dcp_tf.resnet_at_ilsvrc12_run --learner dis-chn-pruned --resnet_size 18 ..."
fi
