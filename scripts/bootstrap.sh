#!/usr/bin/env bash
# Create .venv (if missing) and install toolbag with its dev extra into it. Sourced by scripts/dev and
# scripts/test; safe to run again (pip skips what is already there).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "toolbag needs Python 3.11 or newer (found: $("$python" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x "$root/.venv/bin/python" ]; then
    "$python" -m venv "$root/.venv"
fi
"$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
"$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[dev]"
