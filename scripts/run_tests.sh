#!/usr/bin/env bash
# `make test`: the suite, one pytest process per framework part. TensorFlow and PyTorch both link LLVM
# and abort when loaded into one process, so the torch tests (with the framework-free ones) and the
# TensorFlow tests run in separate processes. The suite is split into slots that run side by side (most
# tests use one core; PARALLEL=0 runs them one after the other); a slot is one or more parts run one
# after the other, each part one pytest process with its framework's interpreter. The default split
# gives the two slots about the same CPU time on 2 cores. The first slot prints as it goes, the others'
# output follows when they end. Fails when any part fails or collects no test. Extra arguments go to
# every pytest run (e.g. `bash scripts/run_tests.sh -m "not slow"`).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# each part runs with its framework's interpreter (one .venv on CPU; .venv-torch / .venv-tf with GPU=1)
TORCH_PY=${TORCH_PY:-$PY}
TF_PY=${TF_PY:-$PY}
PARALLEL=${PARALLEL:-1}
# TEST_GROUPS overrides the split: slots separated by ';', the parts of a slot by '+', e.g. "a b + c;d"
DEFAULT_GROUPS="tests/shared tests/dsp + tests/ekg;tests/shared_tf tests/ista tests/dcp + tests/bip"
IFS=';' read -ra SLOTS <<< "${TEST_GROUPS:-$DEFAULT_GROUPS}"
start=$SECONDS
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# run one slot's parts in order; exit status 1 when any part fails or has no test folder
run_slot() {
  local slot=$1 failed=0 part folder part_py
  shift
  IFS='+' read -ra parts <<< "$slot"
  for part in "${parts[@]}"; do
    local present=()
    # a subproject's test folder joins its part once it exists
    for folder in $part; do [ -e "$folder" ] && present+=("$folder"); done
    if [ ${#present[@]} -eq 0 ]; then echo "== no test folder of part '$part' exists =="; failed=1; continue; fi
    case " ${present[*]} " in
      *" tests/ista "*|*" tests/ekg "*|*" tests/dcp "*|*" tests/shared_tf "*) part_py=$TF_PY ;;
      *) part_py=$TORCH_PY ;;
    esac
    echo "== pytest ${present[*]} ($part_py) =="
    "$part_py" -m pytest "${present[@]}" "$@" || failed=1
  done
  return $failed
}

status=0
pids=()
for i in "${!SLOTS[@]}"; do
  if [ "$PARALLEL" = 1 ] && [ "$i" -gt 0 ]; then
    echo "== slot ${SLOTS[$i]} (running alongside; its output follows) =="
    run_slot "${SLOTS[$i]}" "$@" > "$logs/$i.log" 2>&1 &
    pids[$i]=$!
  fi
done
for i in "${!SLOTS[@]}"; do
  if [ "$PARALLEL" != 1 ] || [ "$i" -eq 0 ]; then
    run_slot "${SLOTS[$i]}" "$@" || status=1
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || status=1
  echo
  echo "== output of slot ${SLOTS[$i]} =="
  cat "$logs/$i.log"
done
echo "== test suite: $((SECONDS - start)) s, $([ $status = 0 ] && echo passed || echo FAILED) =="
exit $status
