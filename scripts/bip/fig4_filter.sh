#!/usr/bin/env bash
# BiP, Fig. 4: structured filter-wise pruning, k = 0.9 ... 0.2 per layer (filter pruning ratio 10-80 %),
# BiP on CIFAR-10 / CIFAR-100 x ResNet-18 / ResNet-20, three seeds (HYDRA with METHODS="bip hydra").
# LAYER_TYPE=channel gives the channel-wise counterpart (appendix Figs. A6/A7, not in the reported table).
#   DATA_DIR=/data bash scripts/bip/fig4_filter.sh
#   SMOKE=1 bash scripts/bip/fig4_filter.sh ;  DRY_RUN=1 bash scripts/bip/fig4_filter.sh
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
LAYER_TYPE=${LAYER_TYPE:-filter}; METHODS=${METHODS:-bip}
if [ "$SMOKE" = 1 ]; then PANELS=${PANELS:-CIFAR10:resnet20s}; KS=${KS:-0.5}
else
  PANELS=${PANELS:-CIFAR10:resnet18 CIFAR10:resnet20s CIFAR100:resnet18 CIFAR100:resnet20s}
  KS=${KS:-0.9 0.8 0.7 0.6 0.5 0.4 0.3 0.2}
fi
for seed in $SEEDS; do
  for panel in $PANELS; do
    ds=${panel%%:*}; arch=${panel##*:}
    pretrain "$ds" "$arch" "$seed"
    for method in $METHODS; do
      for k in $KS; do prune "$method" "$ds" "$arch" "$LAYER_TYPE" "$k" "$seed"; done
    done
  done
done
run "$PY" -m shared.results check --paper bip --records "$RECORDS" --only-run
