#!/usr/bin/env bash
# BiP, Fig. 3: unstructured pruning, test accuracy vs sparsity over the README k grid (20 % ... 99.1 %),
# BiP and HYDRA (and OMP; IMP: a record per round of one run), three seeds, each k pruned from the dense
# net directly. DATASET / ARCH choose the panel (default CIFAR-10 ResNet-20; TinyImageNet wants
# DATA_DIR = the tiny-imagenet-200 folder and ARCH=resnet18, see the README on the stem ambiguity).
#   DATA_DIR=/data bash scripts/bip/fig3_unstructured.sh
#   DATASET=CIFAR100 ARCH=resnet18 DATA_DIR=/data bash scripts/bip/fig3_unstructured.sh
#   SMOKE=1 bash scripts/bip/fig3_unstructured.sh ;  DRY_RUN=1 bash scripts/bip/fig3_unstructured.sh
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
DATASET=${DATASET:-CIFAR10}; ARCH=${ARCH:-resnet20s}
if [ "$SMOKE" = 1 ]; then KS=${KS:-0.1342}; METHODS=${METHODS:-bip hydra}
else
  KS=${KS:-0.8 0.64 0.512 0.41 0.328 0.262 0.2097 0.1678 0.1342 0.1074 0.0859 0.0687 0.055 0.044 0.035 0.028 0.0225 0.018 0.0144 0.0115 0.0092}
  METHODS=${METHODS:-bip hydra omp imp}
fi
for seed in $SEEDS; do
  pretrain "$DATASET" "$ARCH" "$seed"
  for method in $METHODS; do
    if [ "$method" = imp ]; then prune imp "$DATASET" "$ARCH" unstructured "${KS##* }" "$seed"; continue; fi
    for k in $KS; do prune "$method" "$DATASET" "$ARCH" unstructured "$k" "$seed"; done
  done
done
run "$PY" -m shared.results check --paper bip --records "$RECORDS" --only-run
