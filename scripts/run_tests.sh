#!/usr/bin/env bash
# `make test`: the suite, one pytest process per framework group. TensorFlow and PyTorch both link
# LLVM and abort when loaded into one process, so the torch tests (with the framework-free ones) and the
# TensorFlow tests run separately. Fails when any group fails or collects no test. Extra arguments go
# to every pytest run (e.g. `bash scripts/run_tests.sh -m "not slow"`).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# each group runs with its framework's interpreter (one .venv on CPU; .venv-torch / .venv-tf with GPU=1)
TORCH_PY=${TORCH_PY:-$PY}
TF_PY=${TF_PY:-$PY}
# framework-free + PyTorch | TensorFlow (tests/shared_tf: the TF pieces of shared); TEST_GROUPS="a b;c" overrides (groups separated by ';')
IFS=';' read -ra GROUPS_TO_RUN <<< "${TEST_GROUPS:-tests/shared tests/dsp tests/bip;tests/shared_tf tests/ista tests/ekg tests/dcp}"
status=0
start=$SECONDS
for group in "${GROUPS_TO_RUN[@]}"; do
  # a subproject's test folder joins its group once it exists
  present=()
  for folder in $group; do [ -e "$folder" ] && present+=("$folder"); done
  if [ ${#present[@]} -eq 0 ]; then echo "== no test folder of group '$group' exists =="; status=1; continue; fi
  case " ${present[*]} " in
    *" tests/ista "*|*" tests/ekg "*|*" tests/dcp "*|*" tests/shared_tf "*) group_py=$TF_PY ;;
    *) group_py=$TORCH_PY ;;
  esac
  echo "== pytest ${present[*]} ($group_py) =="
  "$group_py" -m pytest "${present[@]}" "$@" || status=1
done
echo "== test suite: $((SECONDS - start)) s, $([ $status = 0 ] && echo passed || echo FAILED) =="
exit $status
