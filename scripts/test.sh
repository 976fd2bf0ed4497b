#!/usr/bin/env bash
# Fresh machine: create .venv, install effnet with its test dependencies, run the test suite.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
# one worker per core (pytest-xdist), each test file on one worker (module fixtures set up once);
# one thread each, so the workers do not oversubscribe the cores
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
set +e
python -m pytest -q -n "${PYTEST_WORKERS:-auto}" --dist loadfile "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test: that must fail, not pass silently
if [ "$rc" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"
