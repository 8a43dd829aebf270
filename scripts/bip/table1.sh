#!/usr/bin/env bash
# BiP (Zhang et al., NeurIPS 2022), Table 1: sparsest winning tickets (mean test accuracy >= the dense
# model's), three seeds, on CIFAR-10 ResNet-18 / ResNet-20 / ResNet-56 / VGG-16 and CIFAR-100 ResNet-18 /
# ResNet-20, for BiP (no retraining), HYDRA as BiP runs it (prune + finetune), OMP and IMP (one run to
# the sparsest k, a record per round; recipe inferred). GraSP is not implemented.
# Every point of the README k grid up to 93.1 % sparsity is run, so the curves (Fig. 3 rows) come too;
# `python -m bip_torch.tickets` then picks each method's sparsest winning ticket (the Table 1 rows).
# Cost: per seed and column about (1 pretrain + 12 x (BiP + 2 HYDRA + OMP) + 12 IMP rounds) x 100-200
# epochs: GPU weeks in all. Finished stages are skipped on a rerun.
#   DATA_DIR=/data bash scripts/bip/table1.sh                 # everything (SEEDS="1 2 3")
#   COLUMNS="CIFAR10:resnet20s" SEEDS=1 DATA_DIR=/data bash scripts/bip/table1.sh
#   SMOKE=1 bash scripts/bip/table1.sh                        # resnet20s, two k, one seed, tiny
#   DRY_RUN=1 bash scripts/bip/table1.sh                      # print the commands only
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

if [ "$SMOKE" = 1 ]; then
  COLUMNS=${COLUMNS:-CIFAR10:resnet20s}; KS=${KS:-0.8 0.64}; METHODS=${METHODS:-bip hydra omp imp}
else
  COLUMNS=${COLUMNS:-CIFAR10:resnet18 CIFAR10:resnet20s CIFAR10:resnet56s CIFAR10:vgg16_bn CIFAR100:resnet18 CIFAR100:resnet20s}
  KS=${KS:-0.8 0.64 0.512 0.41 0.328 0.262 0.2097 0.1678 0.1342 0.1074 0.0859 0.0687}
  METHODS=${METHODS:-bip hydra omp imp}
fi
sparsest=${KS##* }
for seed in $SEEDS; do
  for col in $COLUMNS; do
    ds=${col%%:*}; arch=${col##*:}
    pretrain "$ds" "$arch" "$seed"
    for method in $METHODS; do
      if [ "$method" = imp ]; then prune imp "$ds" "$arch" unstructured "$sparsest" "$seed"; continue; fi
      for k in $KS; do prune "$method" "$ds" "$arch" unstructured "$k" "$seed"; done
    done
  done
done
# the sparsest winning ticket per column and method, from the curve records (one record each)
run "$PY" -m bip_torch.tickets --records "$RECORDS"
run "$PY" -m shared.results check --paper bip --records "$RECORDS" --only-run
