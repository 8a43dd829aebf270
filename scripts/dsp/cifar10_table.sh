#!/usr/bin/env bash
# DSP (Park et al., AAAI 2023): the README's CIFAR-10 table, ResNet-20/56 x g = 2, 3, 4, five seeds,
# reported as the median (as the README does). Per seed: pretrain (164 epochs), group learning
# (120 epochs), pruning + fine-tuning (400 epochs in 5 cycles), with the authors' commands.
# README (median of 5 runs; P.FLOPS / P.PARAMS over the prunable 3x3 convs):
#   ResNet20 g4 92.22 / 63.57 / 50.45   g3 92.14 / 62.43 / 49.15   g2 92.07 / 61.23 / 48.35
#   ResNet56 g4 94.25 / 65.11 / 56.30   g3 94.07 / 64.14 / 55.01   g2 93.99 / 63.26 / 56.24
# Inferred (not given by the README): -p per row (the rows are not at -p 0.5; we use the reported
# P.FLOPS rounded down: the cycles re-prune 0.1 points above the best each time), lambda for ResNet-20 g=3 (2e-3, as g=2/4) and ResNet-56
# g=2/3 (5e-4, as g=4).
# Cost per seed on one GPU: ResNet-20 about 5 h, ResNet-56 about 12 h (group learning runs two
# forward/backward passes per step). Full runs write records to $OUT/records (RECORDS=results/records to
# file them with the committed ones).
#
#   DATA_DIR=/path/to/cifar bash scripts/dsp/cifar10_table.sh          # everything (SEEDS="0 1 2 3 4")
#   DEPTHS=20 GROUPS_LIST="4" SEEDS=0 DATA_DIR=... bash scripts/dsp/cifar10_table.sh
#   SMOKE=1 bash scripts/dsp/cifar10_table.sh                         # ResNet-20 g=4, 1 seed, tiny
#   DRY_RUN=1 bash scripts/dsp/cifar10_table.sh                       # print the commands only
# Finished stages are skipped (each command says so), interrupted ones resume: rerun to continue.
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
TORCHRUN=${TORCHRUN:-}  # e.g. "torchrun --nproc_per_node 4" for DDP; empty: one process

declare -A LAMBDA=([20]=2e-3 [56]=5e-4)
declare -A RATE=([20_4]=0.63 [20_3]=0.62 [20_2]=0.61 [56_4]=0.65 [56_3]=0.64 [56_2]=0.63)

if [ "$SMOKE" = 1 ]; then
  DEPTHS=${DEPTHS:-20}; GROUPS_LIST=${GROUPS_LIST:-4}; SEEDS=${SEEDS:-0}
  OUT=${OUT:-runs/dsp/smoke/$(date +%Y%m%d-%H%M%S)}
  RECORDS=${RECORDS:-$OUT/records}
  EPOCHS=(2 1 1)
  extra=(--train-limit 512 -b 64)
  fin_extra=(-c 1 --cascade-passes 5)
  if [ -n "$DATA_DIR" ]; then data=(--data-dir "$DATA_DIR"); else data=(--dataset digits); fi
else
  if [ -z "$DATA_DIR" ] && [ "$DRY_RUN" != 1 ]; then
    echo "error: set DATA_DIR (or PRUNING_DATA_DIR) to a folder holding cifar-10-batches-py/" >&2
    exit 2
  fi
  DEPTHS=${DEPTHS:-20 56}; GROUPS_LIST=${GROUPS_LIST:-4 3 2}; SEEDS=${SEEDS:-0 1 2 3 4}
  OUT=${OUT:-runs/dsp/cifar10}
  RECORDS=${RECORDS:-$OUT/records}  # RECORDS=results/records files them with the committed ones
  EPOCHS=(164 120 400)
  extra=()
  fin_extra=()
  data=(--data-dir "${DATA_DIR:-DATA_DIR}")
fi
# shellcheck disable=SC2206  # TORCHRUN is a command line to split
launcher=(${TORCHRUN:-$PY} -m)

for seed in $SEEDS; do
  for depth in $DEPTHS; do
    dir="$OUT/seed$seed"
    common=(-l "$depth" --save-dir "$dir" --seed "$seed" --records "$RECORDS" "${data[@]}" "${extra[@]}")
    run "${launcher[@]}" dsp_torch.cifar_pretrain "${common[@]}" --epochs "${EPOCHS[0]}"
    for g in $GROUPS_LIST; do
      run "${launcher[@]}" dsp_torch.cifar_dsp "${common[@]}" -g "$g" -r "${LAMBDA[$depth]}" --epochs "${EPOCHS[1]}"
      rate=${RATE[${depth}_$g]}
      [ "$SMOKE" = 1 ] && rate=0.50
      run "${launcher[@]}" dsp_torch.cifar_finetune "${common[@]}" -g "$g" -p "$rate" --epochs "${EPOCHS[2]}" \
        "${fin_extra[@]}"
      run "$PY" -m dsp_torch.pack_model --ckpt "$dir/resnet${depth}_P0g${g}c${rate}.pkl" \
        --save "$dir/resnet${depth}_g${g}_packed.pt" --overwrite
    done
  done
done
run "$PY" -m shared.results check --paper dsp --records "$RECORDS" --only-run
