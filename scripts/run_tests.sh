#!/usr/bin/env bash
# `make test`: the suite, one pytest process per framework group. TensorFlow and PyTorch both link
# LLVM and abort when loaded into one process, so the torch tests (with the framework-free ones) and the
# TensorFlow tests run separately. The groups run side by side (most tests use one core; PARALLEL=0 runs
# them one after the other): the first group prints as it goes, the others' output follows when they end.
# Fails when any group fails or collects no test. Extra arguments go to every pytest run
# (e.g. `bash scripts/run_tests.sh -m "not slow"`).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# each group runs with its framework's interpreter (one .venv on CPU; .venv-torch / .venv-tf with GPU=1)
TORCH_PY=${TORCH_PY:-$PY}
TF_PY=${TF_PY:-$PY}
PARALLEL=${PARALLEL:-1}
# framework-free + PyTorch | TensorFlow (tests/shared_tf: the TF pieces of shared); TEST_GROUPS="a b;c" overrides (groups separated by ';')
IFS=';' read -ra GROUPS_TO_RUN <<< "${TEST_GROUPS:-tests/shared tests/dsp tests/bip;tests/shared_tf tests/ista tests/ekg tests/dcp}"
status=0
start=$SECONDS
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
pids=()
names=()
for i in "${!GROUPS_TO_RUN[@]}"; do
  group=${GROUPS_TO_RUN[$i]}
  # a subproject's test folder joins its group once it exists
  present=()
  for folder in $group; do [ -e "$folder" ] && present+=("$folder"); done
  if [ ${#present[@]} -eq 0 ]; then echo "== no test folder of group '$group' exists =="; status=1; continue; fi
  case " ${present[*]} " in
    *" tests/ista "*|*" tests/ekg "*|*" tests/dcp "*|*" tests/shared_tf "*) group_py=$TF_PY ;;
    *) group_py=$TORCH_PY ;;
  esac
  title="== pytest ${present[*]} ($group_py) =="
  if [ "$PARALLEL" = 1 ] && [ "$i" -gt 0 ]; then
    echo "$title (running alongside; its output follows)"
    "$group_py" -m pytest "${present[@]}" "$@" > "$logs/$i.log" 2>&1 &
    pids+=($!)
    names+=("$i")
  else
    echo "$title"
    if [ "$PARALLEL" = 1 ] && [ "$i" -eq 0 ] && [ ${#GROUPS_TO_RUN[@]} -gt 1 ]; then
      # start the others first, so that this group's live output does not hold them back
      continue_later=("${present[@]}")
      first_py=$group_py
      continue
    fi
    "$group_py" -m pytest "${present[@]}" "$@" || status=1
  fi
done
if [ -n "${first_py:-}" ]; then
  "$first_py" -m pytest "${continue_later[@]}" "$@" || status=1
fi
for k in "${!pids[@]}"; do
  wait "${pids[$k]}" || status=1
  echo
  echo "== output of group ${GROUPS_TO_RUN[${names[$k]}]} =="
  cat "$logs/${names[$k]}.log"
done
echo "== test suite: $((SECONDS - start)) s, $([ $status = 0 ] && echo passed || echo FAILED) =="
exit $status
