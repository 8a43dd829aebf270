#!/usr/bin/env bash
# DCP (Zhuang et al., NeurIPS 2018) on CIFAR-10, dcp_tf (TensorFlow 2):
#   1. the paper's Table 1 row: PreResNet-56, eta 0.5, variant `paper` (the authors' 2018 code):
#      baseline 400 epochs (lr 0.1, /10 at 160/240), 3 aux losses (pivots after blocks 7/14/21),
#      100 epochs of stage fine-tuning per stage, selection over the whole training set, 400 epochs of
#      final fine-tuning. Paper: baseline error 6.20 %, DCP +0.31 (6.51 %), 1.99x fewer FLOPs.
#   2. PocketFlow's default on its ResNet-20 at 0.5 (variant `pocketflow`): baseline with the ModelHelper's
#      250-epoch schedule, then dis-chn-pruned with every PocketFlow default. The only public
#      number: a user's 90.68 % vs 92.01 % baseline (PocketFlow issue #189), unofficial.
# Cost: days on one GPU (PocketFlow's selection is 344 additions x 500 Adam steps on ResNet-20; the
# paper's is 504 additions x one pass over the training set on ResNet-56).
#
#   DATA_DIR=/path/to/cifar bash scripts/dcp/cifar10_table1.sh     # records in $OUT/records (RECORDS=results/records: committed)
#   SMOKE=1 bash scripts/dcp/cifar10_table1.sh                      # ResNet-8, tiny counts, DATA_DIR or digits
#   DRY_RUN=1 bash scripts/dcp/cifar10_table1.sh                    # print the commands only
# Every step resumes when interrupted; a finished model is never retrained or overwritten.
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"

if [ "$SMOKE" = 1 ]; then
  OUT=${OUT:-runs/dcp/smoke/$(date +%Y%m%d-%H%M%S)}
  RECORDS=${RECORDS:-$OUT/records}
  SIZE_PAPER=8; SIZE_PF=8; STAGES_PAPER=1; STAGES_PF=1
  base_extra=(--nb_iters_train 100 --batch_size 32 --bn_decay 0.9 --summ_step 50)
  paper_base_extra=("${base_extra[@]}")
  paper_extra=(--dcp_paper_stage_epochs 0.05 --dcp_paper_select_samples 32 --dcp_paper_final_epochs 1
               --nb_epochs_rat 0.004 --batch_size 32 --bn_decay 0.9 --dcp_save_every_picks 0)
  pf_extra=(--dcp_nb_iters_block 2 --dcp_nb_iters_layer 1 --nb_epochs_rat 0.004 --batch_size 32 --bn_decay 0.9
            --dcp_save_every_picks 0)
  if [ -n "$DATA_DIR" ]; then data=(--data_dir "$DATA_DIR"); else data=(--dataset_name digits); fi
else
  if [ -z "$DATA_DIR" ] && [ "$DRY_RUN" != 1 ]; then
    echo "error: set DATA_DIR (or PRUNING_DATA_DIR) to a folder holding CIFAR-10" >&2
    exit 2
  fi
  OUT=${OUT:-runs/dcp/table1}
  RECORDS=${RECORDS:-$OUT/records}  # RECORDS=results/records files them with the committed ones
  SIZE_PAPER=56; SIZE_PF=20; STAGES_PAPER=3; STAGES_PF=3
  base_extra=()
  # the paper's baseline: 400 epochs, wd 1e-4; nb_epochs_rat 1.6 turns the ModelHelper's 250 epochs
  # (/10 at 100, 150, 200) into 400 (/10 at 160, 240, 320)
  paper_base_extra=(--nb_epochs_rat 1.6 --loss_w_dcy 1e-4)
  paper_extra=()
  pf_extra=()
  data=(--data_dir "${DATA_DIR:-DATA_DIR}")
fi
entry=(-m dcp_tf.resnet_at_cifar10_run --records "$RECORDS" "${data[@]}")

# 1. the paper's PreResNet-56 at 0.5
run "$PY" "${entry[@]}" --learner full-prec --resnet_def paper --resnet_size "$SIZE_PAPER" \
  --save_path "$OUT/paper/models/model.ckpt" --save_path_eval "$OUT/paper/models_eval/model.ckpt" \
  "${paper_base_extra[@]}"
run "$PY" "${entry[@]}" --learner dis-chn-pruned --dcp_variant paper --resnet_size "$SIZE_PAPER" \
  --dcp_prune_ratio 0.5 --dcp_nb_stages "$STAGES_PAPER" --save_path "$OUT/paper/models/model.ckpt" \
  --dcp_save_path "$OUT/paper/models_dcp/model.ckpt" --dcp_save_path_eval "$OUT/paper/models_dcp_eval/model.ckpt" \
  "${paper_extra[@]}"

# 2. PocketFlow's defaults on ResNet-20 at 0.5
run "$PY" "${entry[@]}" --learner full-prec --resnet_size "$SIZE_PF" \
  --save_path "$OUT/pocketflow/models/model.ckpt" --save_path_eval "$OUT/pocketflow/models_eval/model.ckpt" \
  "${base_extra[@]}"
run "$PY" "${entry[@]}" --learner dis-chn-pruned --resnet_size "$SIZE_PF" --dcp_prune_ratio 0.5 \
  --dcp_nb_stages "$STAGES_PF" --save_path "$OUT/pocketflow/models/model.ckpt" \
  --dcp_save_path "$OUT/pocketflow/models_dcp/model.ckpt" \
  --dcp_save_path_eval "$OUT/pocketflow/models_dcp_eval/model.ckpt" "${pf_extra[@]}"
run "$PY" -m shared.results check --records "$RECORDS" --paper dcp --only-run
