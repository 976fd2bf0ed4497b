#!/usr/bin/env bash
# Fresh machine: create .venv, install effnet with its test dependencies, run the test suite.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
set +e
python -m pytest -q "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test: that must fail, not pass silently
if [ "$rc" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"
