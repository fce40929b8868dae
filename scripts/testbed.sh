#!/usr/bin/env bash
# Provision/remove the e2e testbed: scripts/testbed.sh up [--hosts N] [--install-packages]
# [--skip-images] | down | status. Runs `python -m tests.testbed` from the repository root.
# Python: $PYTHON if set, else the active virtualenv, else the repo's .venv, else python3
# (the testbed itself needs only the standard library, Python >= 3.11).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if [[ -n "${PYTHON:-}" ]]; then
  python=$PYTHON
elif [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
  python=$VIRTUAL_ENV/bin/python
elif [[ -x "$repo/.venv/bin/python" ]]; then
  python=$repo/.venv/bin/python
else
  python=python3
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "testbed: error: $python is not Python >= 3.11 (set PYTHON=/path/to/python3.11+)" >&2
  exit 1
fi

exec "$python" -m tests.testbed "$@"
