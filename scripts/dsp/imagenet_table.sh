#!/usr/bin/env bash
# DSP (Park et al., AAAI 2023): the README's ImageNet table, g = 2.
#   ResNet18: -p 0.60 / 0.70 / 0.80 -> top-1 69.55 / 67.95 / 65.81, P.FLOPS 60.08 / 70.05 / 80.00
#   ResNet50: -p 0.70 / 0.80 / 0.90 -> top-1 76.54 / 75.45 / 73.29, P.FLOPS 70.00 / 80.03 / 90.02
# The authors released no ImageNet code: the schedule is INFERRED (see dsp_torch/imagenet.py) and
# recorded as variant recipe=inferred. Dense weights: torchvision's, given as files (no download):
#   TRAIN=.../train VAL=.../val R18_WEIGHTS=resnet18-f37072fd.pth R50_WEIGHTS=resnet50-0676ba61.pth \
#   TORCHRUN="torchrun --nproc_per_node 8" bash scripts/dsp/imagenet_table.sh
# TRAIN / VAL: class folders (python -m shared.data imagenet-sort-val) or BiP-format .lmdb files.
# Cost: roughly 30 + 90 epochs per row on 8 GPUs (days in all).
#   SMOKE=1 bash scripts/dsp/imagenet_table.sh      # ResNet-18, a generated 2-class image folder, 32 px
#   DRY_RUN=1 bash scripts/dsp/imagenet_table.sh    # print the commands only
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
TORCHRUN=${TORCHRUN:-}

declare -A RATES=([resnet18]="0.60 0.70 0.80" [resnet50]="0.70 0.80 0.90")
declare -A WEIGHTS=([resnet18]="${R18_WEIGHTS:-}" [resnet50]="${R50_WEIGHTS:-}")
if [ "$SMOKE" = 1 ]; then
  OUT=${OUT:-runs/dsp/imagenet-smoke/$(date +%Y%m%d-%H%M%S)}
  TRAIN="$OUT/images/train"; VAL="$OUT/images/val"
  ARCHS=${ARCHS:-resnet18}; RATES[resnet18]="0.60"
  RECORDS=${RECORDS:-$OUT/records}
  EPOCHS=(1 1)
  extra=(--image-size 32 -b 8 -j 0)
  fin_extra=(-c 1 --cascade-passes 2)
  [ "$DRY_RUN" = 1 ] || "$PY" - "$TRAIN" "$VAL" <<'PYEOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for root in sys.argv[1:]:
    for c in ("n00000001", "n00000002"):
        d = Path(root) / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(d / f"{c}_{i}.JPEG")
PYEOF
else
  if [ "$DRY_RUN" != 1 ] && { [ -z "${TRAIN:-}" ] || [ -z "${VAL:-}" ]; }; then
    echo "error: set TRAIN and VAL (ImageNet class folders or .lmdb files)" >&2
    exit 2
  fi
  TRAIN=${TRAIN:-TRAIN}; VAL=${VAL:-VAL}
  ARCHS=${ARCHS:-resnet18 resnet50}
  OUT=${OUT:-runs/dsp/imagenet}
  RECORDS=${RECORDS:-$OUT/records}  # RECORDS=results/records files them with the committed ones
  EPOCHS=(30 90)
  extra=()
  fin_extra=()
fi
# shellcheck disable=SC2206  # TORCHRUN is a command line to split
launcher=(${TORCHRUN:-$PY} -m)

for arch in $ARCHS; do
  common=(-a "$arch" --train "$TRAIN" --val "$VAL" --save-dir "$OUT" --records "$RECORDS" "${extra[@]}")
  pretrained=()
  [ -n "${WEIGHTS[$arch]}" ] && pretrained=(--pretrained "${WEIGHTS[$arch]}")
  run "${launcher[@]}" dsp_torch.imagenet dsp "${common[@]}" -g 2 --epochs "${EPOCHS[0]}" "${pretrained[@]}"
  for rate in ${RATES[$arch]}; do
    run "${launcher[@]}" dsp_torch.imagenet finetune "${common[@]}" -g 2 -p "$rate" --epochs "${EPOCHS[1]}" \
      "${fin_extra[@]}"
    run "$PY" -m dsp_torch.pack_model --ckpt "$OUT/${arch}_P0g2c${rate}.pkl" --save "$OUT/${arch}_g2_${rate}_packed.pt" \
      --overwrite
  done
done
run "$PY" -m shared.results check --paper dsp --records "$RECORDS" --only-run
