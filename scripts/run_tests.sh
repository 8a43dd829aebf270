#!/usr/bin/env bash
# `make test`: the suite, one pytest process per framework group. TensorFlow and PyTorch both link
# LLVM and abort when loaded into one process, so the torch tests (with the framework-free ones) and the
# TensorFlow tests run separately. Fails when any group fails or collects no test. Extra arguments go
# to every pytest run (e.g. `bash scripts/run_tests.sh -m "not slow"`).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# framework-free + PyTorch | TensorFlow; TEST_GROUPS="a b;c" overrides (groups separated by ';')
IFS=';' read -ra GROUPS_TO_RUN <<< "${TEST_GROUPS:-tests/shared tests/dsp;tests/ista}"
status=0
start=$SECONDS
for group in "${GROUPS_TO_RUN[@]}"; do
  echo "== pytest $group =="
  # shellcheck disable=SC2086  # a group is a list of folders
  "$PY" -m pytest $group "$@" || status=1
done
echo "== test suite: $((SECONDS - start)) s, $([ $status = 0 ] && echo passed || echo FAILED) =="
exit $status
