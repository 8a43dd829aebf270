#!/usr/bin/env bash
# BiP's time claims ("as efficient as first-order", "2-7x faster than IMP"): CIFAR-10 ResNet-18, one BiP
# run and one IMP run (a record per round, with cumulative seconds) to the same k, same data and device;
# then the ratios from the records. The per-epoch ratios on this machine: `make bip-bench` (epoch part).
# The original disables cuDNN (--deterministic here): pass EXTRA=--deterministic for its setting.
#   DATA_DIR=/data bash scripts/bip/time_vs_imp.sh     K=0.41 (59 %, 4 IMP rounds) by default
#   SMOKE=1 bash scripts/bip/time_vs_imp.sh ;  DRY_RUN=1 bash scripts/bip/time_vs_imp.sh
set -euo pipefail
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
if [ "$SMOKE" = 1 ]; then ARCH=${ARCH:-resnet20s}; K=${K:-0.64}; else ARCH=${ARCH:-resnet18}; K=${K:-0.41}; fi
seed=${SEEDS%% *}
pretrain CIFAR10 "$ARCH" "$seed"
prune bip CIFAR10 "$ARCH" unstructured "$K" "$seed"
prune imp CIFAR10 "$ARCH" unstructured "$K" "$seed"
run "$PY" - "$RECORDS" <<'PYEOF'
import sys
from shared.results.records import iter_records
recs = [r for _, r in iter_records([sys.argv[1]])]
# training runs only (the Table 1 ticket records in the same folder carry no timings)
bip = [r["timings"]["train_seconds"] for r in recs
       if r["variant"].get("method") == "bip" and "train_seconds" in r.get("timings", {})]
imp = [r["metrics"]["cumulative_seconds"] for r in recs
       if r["variant"].get("method") == "imp" and "cumulative_seconds" in r["metrics"]]
if bip and imp:
    print(f"BiP run {bip[-1]:.0f} s; IMP to the same k {imp[-1]:.0f} s: IMP / BiP = {imp[-1] / bip[-1]:.2f}x (paper: 2-7x)")
else:
    print("no BiP and IMP records to compare yet")
PYEOF
