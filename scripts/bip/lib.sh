# Sourced by scripts/bip/*.sh after common.sh: BiP's pipeline as the original train.py commands.
#   pretrain DATASET ARCH SEED              dense pretraining (configs/<DATASET>/pretrain.yml)
#   prune METHOD DATASET ARCH LTYPE K SEED  bip (bilevel, no finetune: the paper reports BiP without
#                                           retraining), hydra (base prune + finetune), omp, imp
# A finished stage (latest_exp/FINISHED) is skipped; every run writes its record to $RECORDS.
TORCHRUN=${TORCHRUN:-}  # e.g. "torchrun --nproc_per_node 4" for DDP; empty: one process
# shellcheck disable=SC2206  # TORCHRUN is a command line to split
launcher=(${TORCHRUN:-$PY} -m)
if [ "$SMOKE" = 1 ]; then
  OUT=${OUT:-runs/bip/smoke/$(date +%Y%m%d-%H%M%S)}
  RECORDS=${RECORDS:-$OUT/records}
  SEEDS=${SEEDS:-1234}
  if [ -n "$DATA_DIR" ]; then data=(--data-dir "$DATA_DIR"); SMOKE_DATASET=CIFAR10; else data=(); SMOKE_DATASET=digits; fi
  small=(--epochs 1 --lr-schedule constant --lr 0.01 --train-limit 256 --batch-size 64 --test-limit 300)
else
  if [ -z "$DATA_DIR" ] && [ "$DRY_RUN" != 1 ]; then
    echo "error: set DATA_DIR (or PRUNING_DATA_DIR) to the folder holding the dataset" >&2
    exit 2
  fi
  OUT=${OUT:-runs/bip}
  RECORDS=${RECORDS:-$OUT/records}  # RECORDS=results/records files them with the committed ones
  SEEDS=${SEEDS:-1 2 3}
  data=(--data-dir "${DATA_DIR:-DATA_DIR}")
  small=()
fi

_ds() { if [ "$SMOKE" = 1 ]; then echo "$SMOKE_DATASET"; else echo "$1"; fi; }
_cfgdir() { if [ "$1" = CIFAR100 ] || [ "$1" = TinyImageNet ] || [ "$1" = ImageNet ]; then echo "$1"; else echo CIFAR10; fi; }
_done() { [ "$DRY_RUN" != 1 ] && [ -f "$OUT/$1/$2/latest_exp/FINISHED" ]; }
_ckpt() { echo "$OUT/$1/$2/latest_exp/checkpoint/checkpoint.pth.tar"; }

pretrain() {  # DATASET ARCH SEED
  local ds=$1 arch=$2 seed=$3 name="$1_$2_s$3_pretrain"
  if _done "$name" pretrain; then echo "skip $name (finished)"; return; fi
  run "${launcher[@]}" bip_torch.train --configs "configs/$(_cfgdir "$ds")/pretrain.yml" --dataset "$(_ds "$ds")" \
    --arch "$arch" --k 1.0 --seed "$seed" --exp-name "$name" --result-dir "$OUT" --records "$RECORDS" \
    "${data[@]}" "${small[@]}"
}

prune() {  # METHOD DATASET ARCH LTYPE K SEED
  local method=$1 ds=$2 arch=$3 lt=$4 k=$5 seed=$6
  local src name cfg
  src=$(_ckpt "$2_$3_s$6_pretrain" pretrain)
  name="${ds}_${arch}_s${seed}_${method}_${lt}_k${k}"
  cfg="configs/$(_cfgdir "$ds")"
  local common=(--dataset "$(_ds "$ds")" --arch "$arch" --layer-type "$lt" --k "$k" --seed "$seed" --result-dir "$OUT"
    --records "$RECORDS" "${data[@]}" "${small[@]}")
  case $method in
    bip)
      _done "$name" prune && { echo "skip $name (finished)"; return; }
      run "${launcher[@]}" bip_torch.train --configs "$cfg/bip.yml" --exp-mode prune --source-net "$src" \
        --exp-name "$name" "${common[@]}" ;;
    hydra)
      _done "$name" finetune && { echo "skip $name (finished)"; return; }
      _done "$name" prune || run "${launcher[@]}" bip_torch.train --configs "$cfg/hydra.yml" --exp-mode prune \
        --source-net "$src" --exp-name "$name" "${common[@]}"
      run "${launcher[@]}" bip_torch.train --configs "$cfg/finetune.yml" --exp-mode finetune \
        --source-net "$(_ckpt "$name" prune)" --exp-name "$name" "${common[@]}" ;;
    omp|imp)
      _done "$name" finetune && { echo "skip $name (finished)"; return; }
      run "${launcher[@]}" bip_torch.train --configs "$cfg/finetune.yml" --exp-mode finetune --baseline "$method" \
        --source-net "$src" --exp-name "$name" "${common[@]}" ;;
  esac
}
