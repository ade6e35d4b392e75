# Sourced by scripts/dev and scripts/test: make .venv with the project installed (once per
# change of pyproject.toml). Needs only python3 >= 3.11.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv || {
    echo "python3 -m venv failed; on Debian/Ubuntu: apt-get install -y python3-venv" >&2
    exit 1
  }
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-$1"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$1]"
  touch "$stamp"
fi
