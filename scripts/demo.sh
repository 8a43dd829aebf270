#!/usr/bin/env bash
# `make demo`: the demo stage of every subproject that exists, then the results check and tables.
# Real CIFAR-10 when DATA_DIR (or PRUNING_DATA_DIR) names a folder holding it, else the embedded digits.
#   DATA_DIR=../data make demo        OUT=runs/demo/mine make demo
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# each subproject's demo runs with its framework's interpreter (`make demo GPU=1` passes both)
TORCH_PY=${TORCH_PY:-$PY}
TF_PY=${TF_PY:-$PY}
PY=$TORCH_PY
OUT=${OUT:-runs/demo/$(date +%Y%m%d-%H%M%S)}
DATA_DIR=${DATA_DIR:-${PRUNING_DATA_DIR:-}}
RECORDS="$OUT/records"
mkdir -p "$RECORDS"

data_args=()
if [ -n "$DATA_DIR" ]; then
  data_args=(--data-dir "$DATA_DIR")
  echo "== data: CIFAR-10 from $DATA_DIR =="
else
  echo "== data: embedded digits (set DATA_DIR for real CIFAR-10) =="
fi
"$PY" -m shared.demo_data "${data_args[@]}"

start=$SECONDS
for pkg in ekg_tf2 dsp_torch dcp_tf ista_tf bip_torch; do
  if [ -f "$pkg/demo.py" ]; then
    echo
    echo "== $pkg demo =="
    t0=$SECONDS
    pkg_py=$([ "${pkg#*_}" = torch ] && echo "$TORCH_PY" || echo "$TF_PY")
    "$pkg_py" -m "$pkg.demo" "${data_args[@]}" --out "$OUT/$pkg" --records "$RECORDS"
    echo "($pkg demo took $((SECONDS - t0)) s)"
  fi
done

echo
echo "== this demo's run records (smoke runs on demo data: tiny, never compared with the papers) =="
"$PY" -m shared.results records --no-default-records --records "$RECORDS"
echo
echo "== results check: the committed records (the authors' checkpoints, evaluated here) against the papers;"
echo "   this demo's smoke runs are counted per paper and shown, marked apart, in the tables and plots =="
"$PY" -m shared.results check --records "$RECORDS"
"$PY" -m shared.results tables --records "$RECORDS" --out "$OUT"
echo "demo finished in $((SECONDS - start)) s; outputs under $OUT"
echo "tables: $OUT/TABLES.md; plots: $OUT/plots/ (the demo's runs: hollow triangles, 'smoke runs on demo data')"
