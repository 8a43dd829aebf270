#!/usr/bin/env bash
# ISTA on batch-norm scales (Ye et al., ICLR 2018): the released code's README chain on CIFAR-10,
# resnet20 (the paper's ResNet-20 "model A"), with the original commands:
#   v0: --l1_penalty 0.001 --max_steps 30000   (warm-up)               -> compact model v1
#   v1: --l1_penalty 0.005 --max_steps 50000   (sparsify)              -> v2 (pruned, not fine-tuned)
#   v2: --l1_penalty 0.0 --max_steps 50000 --learning_rate 0.01 (fine-tune) -> v3
#   then cifar10_eval --checkpoint_version 2 and 3.
# Expected (README, one run; TF training is not deterministic, expect about +-0.5 point):
#   v2: total params 177,164 (37.0% below 281,304), precision @ 1 = 0.9116, test loss = 0.2654
#   v3: total params 177,164,                         precision @ 1 = 0.9060, test loss = 0.3259
#   stage-1 log around step 33k: fake sparsity = 0.34, group lasso = 29-30
# Cost: 130k steps x 125 images (~325 epochs); about 1 h on the authors' GPU (0.025 s/step), about
# 0.25-0.4 s/step on 2 CPU cores (~12 h).
#
#   DATA_DIR=/path/to/cifar bash scripts/ista/cifar10_readme.sh     # full chain, records beside the train dirs
#   SMOKE=1 bash scripts/ista/cifar10_readme.sh                     # 40/40/20 steps on DATA_DIR or digits
#   DRY_RUN=1 bash scripts/ista/cifar10_readme.sh                   # print the commands only
# A finished stage is not retrained (its command says so and exits 0), so a rerun continues a chain.
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"

if [ "$SMOKE" = 1 ]; then
  TRAIN_DIR=${TRAIN_DIR:-runs/ista/smoke/$(date +%Y%m%d-%H%M%S)/cifar10_train}
  RECORDS=${RECORDS:-$(dirname "$TRAIN_DIR")/records}
  STEPS=(40 40 20)
  PENALTY_1=0.3  # zeroes scales within 40 steps; the README's 0.005 needs tens of thousands
  extra=(--batch_size 32 --bn_decay 0.9 --log_frequency 10)
  if [ -n "$DATA_DIR" ]; then data=(--data_dir "$DATA_DIR"); else data=(--dataset digits); fi
else
  if [ -z "$DATA_DIR" ] && [ "$DRY_RUN" != 1 ]; then
    echo "error: set DATA_DIR (or PRUNING_DATA_DIR) to a folder holding cifar-10-batches-py/" >&2
    exit 2
  fi
  TRAIN_DIR=${TRAIN_DIR:-runs/ista/readme/cifar10_train}
  RECORDS=${RECORDS:-$(dirname "$TRAIN_DIR")/records}  # RECORDS=results/records files them with the committed ones
  STEPS=(30000 50000 50000)
  PENALTY_1=0.005
  extra=()
  data=(--data_dir "${DATA_DIR:-DATA_DIR}")
fi
common=(--train_dir "$TRAIN_DIR" --records "$RECORDS" "${data[@]}")

run "$PY" -m ista_tf.cifar10_train --l1_penalty 0.001 --max_steps "${STEPS[0]}" --checkpoint_version 0 \
  "${common[@]}" "${extra[@]}"
run "$PY" -m ista_tf.cifar10_eval --checkpoint_version 1 "${common[@]}"
run "$PY" -m ista_tf.cifar10_train --l1_penalty "$PENALTY_1" --max_steps "${STEPS[1]}" --checkpoint_version 1 \
  "${common[@]}" "${extra[@]}"
run "$PY" -m ista_tf.cifar10_eval --checkpoint_version 2 "${common[@]}"
run "$PY" -m ista_tf.cifar10_train --checkpoint_version 2 --l1_penalty 0.0 --max_steps "${STEPS[2]}" \
  --learning_rate 0.01 "${common[@]}" "${extra[@]}"
run "$PY" -m ista_tf.cifar10_eval --checkpoint_version 3 "${common[@]}"
run "$PY" -m shared.results check --records "$RECORDS" --paper ista --only-run
