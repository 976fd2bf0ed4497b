# Sourced by demo.sh and test.sh: create .venv with Python 3.11 and install the project into it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# pip (not uv/poetry): on the project's machines torch and torchvision resolve from local files
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
export PATH="$PWD/.venv/bin:$PATH"
