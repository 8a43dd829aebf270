#!/usr/bin/env bash
# EKG (Lee & Song, ECCV 2022): the poster's ablation rows for ResNet-56 on CIFAR-10 and CIFAR-100 with the
# README command, both fine-tuning variants, several seeds (the poster reports mean (std) over repeated runs):
#   ensemble search / no-KD fine-tuning (the README default)   -> ablation/<dataset>/resnet56/ensemble-none
#   ensemble search / memory-bank fine-tuning (--Knowledge)     -> ablation/<dataset>/resnet56/ensemble-ensemble
# Expected (poster, mean (std)): CIFAR-10 93.85 (0.10) / 94.09 (0.07); CIFAR-100 71.82 (0.20) / 72.93 (0.16).
# Starts from the authors' ResNet-56 (CKPT_DIR/ekg/res56_cifar10.pkl) on CIFAR-10; only a CIFAR-10 checkpoint
# was released, so CIFAR-100 needs a pre-trained ResNet-56 in C100_PRETRAINED (a params pkl).
# One search per seed is shared by the two variants (the search does not depend on the fine-tuning).
# Cost (poster): 0.22 GPU-h search + 0.5-0.7 GPU-h fine-tuning per run.
#
#   DATA_DIR=... CKPT_DIR=... bash scripts/ekg/cifar_ablation.sh      # SEEDS="0 1 2" by default
#   SMOKE=1 bash scripts/ekg/cifar_ablation.sh                         # tiny: CIFAR-10 subset, 1 seed, few steps
#   DRY_RUN=1 bash scripts/ekg/cifar_ablation.sh                       # print the commands only
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
CKPT_DIR=${CKPT_DIR:-${PRUNING_CHECKPOINT_DIR:-}}
SEEDS=${SEEDS:-0 1 2}

if [ "$SMOKE" = 1 ]; then
  OUT=${OUT:-runs/ekg/smoke/$(date +%Y%m%d-%H%M%S)}
  RECORDS=${RECORDS:-$OUT/records}
  SEEDS=0
  DATASETS=CIFAR10
  extra_search=(--search_target_rate 0.8 --val_per_class 1 --subset_per_class 1 --search_batch_size 10 --search_step 1.0)
  extra_ft=(--train_epoch 1 --max_steps 2 --batch_size 16 --train_limit 64 --test_limit 64)
else
  OUT=${OUT:-runs/ekg/ablation}
  RECORDS=${RECORDS:-$OUT/records}  # RECORDS=results/records files them with the committed ones
  DATASETS=${DATASETS:-CIFAR10 CIFAR100}
  extra_search=(--search_target_rate 0.45)
  extra_ft=()
fi
if [ -z "$DATA_DIR" ] && [ "$DRY_RUN" != 1 ]; then
  echo "error: set DATA_DIR (or PRUNING_DATA_DIR) to a folder holding the CIFAR data (official python layout)" >&2
  exit 2
fi
if [ -z "$CKPT_DIR" ] && [ "$DRY_RUN" != 1 ]; then
  echo "error: set CKPT_DIR (or PRUNING_CHECKPOINT_DIR) to the folder holding ekg/res56_cifar10.pkl" >&2
  exit 2
fi

for dataset in $DATASETS; do
  if [ "$dataset" = CIFAR10 ]; then
    pretrained="${CKPT_DIR:-CKPT_DIR}/ekg/res56_cifar10.pkl"
  elif [ -n "${C100_PRETRAINED:-}" ] || [ "$DRY_RUN" = 1 ]; then
    pretrained=${C100_PRETRAINED:-C100_PRETRAINED}
  else
    echo "skipping CIFAR100: no released checkpoint; set C100_PRETRAINED to a pre-trained ResNet-56 params pkl" >&2
    continue
  fi
  for seed in $SEEDS; do
    path="$OUT/$dataset/seed$seed"
    common=(--arch ResNet-56 --dataset "$dataset" --data_dir "${DATA_DIR:-DATA_DIR}" --seed "$seed" --records "$RECORDS")
    # search + no-KD fine-tuning: the README command
    run "$PY" -m ekg_tf2.train_cifar --gpu_id 0 "${common[@]}" --train_path "$path" \
      --trained_param "$pretrained" "${extra_search[@]}" "${extra_ft[@]}"
    # the same search, fine-tuned with the memory bank (full EKG)
    run "$PY" -m ekg_tf2.train "${common[@]}" --Knowledge --trained_param "$path/slimmed_params.pkl" \
      --train_path "$path/knowledge" "${extra_ft[@]}"
    run "$PY" -m ekg_tf2.test --arch ResNet-56 --dataset "$dataset" --data_dir "${DATA_DIR:-DATA_DIR}" \
      --trained_param "$path/trained_params.pkl"
  done
done
run "$PY" -m shared.results check --records "$RECORDS" --paper ekg --only-run
