# Sourced by the reproduction scripts (scripts/<paper>/*.sh) after `set -euo pipefail`.
# Moves to the repository root and sets the knobs every script shares:
#   PY       the interpreter (default .venv/bin/python)
#   DATA_DIR the data folder (default $PRUNING_DATA_DIR, may be empty)
#   SMOKE=1  a tiny CPU run;  DRY_RUN=1  print the commands without running them
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
DATA_DIR=${DATA_DIR:-${PRUNING_DATA_DIR:-}}
SMOKE=${SMOKE:-0}
DRY_RUN=${DRY_RUN:-0}

# Print a command, then run it unless DRY_RUN=1.
run() {
  echo "+ $*"
  if [ "$DRY_RUN" != 1 ]; then "$@"; fi
}
