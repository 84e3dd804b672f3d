#!/usr/bin/env bash
# Create .venv (if missing) and install toolbag with its dev extra into it. Run by scripts/dev and scripts/test.
# The install is editable, so code changes need no reinstall: it runs again only when pyproject.toml, constraints.txt or the
# Python version changed (.venv/.toolbag-installed holds the hash it was made from), so a second start is quick
# and quiet. Every dependency is installed at the version constraints.txt pins. FORCE_INSTALL=1 reinstalls anyway.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "toolbag needs Python 3.11 or newer (found: $("$python" --version 2>&1))" >&2
    exit 1
fi
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp="$venv/.toolbag-installed"
wanted="$("$venv/bin/python" -c 'import hashlib, sys
print(hashlib.sha256(open(sys.argv[1], "rb").read() + open(sys.argv[2], "rb").read() + sys.version.encode()).hexdigest())' "$root/pyproject.toml" "$root/constraints.txt")"
if [ -z "${FORCE_INSTALL:-}" ] && [ -x "$venv/bin/toolbag" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
    exit 0
fi
echo "installing toolbag and its dependencies into $venv (once; again only when pyproject.toml or constraints.txt changes)" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
# The editable install is the point here: setuptools' notice about it is noise.
PYTHONWARNINGS="ignore:Editable installation" \
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$root/constraints.txt" -e "$root[dev]"
echo "$wanted" >"$stamp"
echo "toolbag is installed in $venv: run $venv/bin/toolbag, or \`source $venv/bin/activate\` to type just toolbag" >&2
