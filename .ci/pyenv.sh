#!/usr/bin/env bash
# Create (or reuse) the Python venv with the pinned S3 test clients from .ci/requirements.txt
# (boto3, the aws cli v1, pytest).
#
#   .ci/pyenv.sh            venv at ${TREUHAND_PYENV:-$PWD/target/pyenv}
#
# Idempotent: when the venv already holds exactly the pinned versions it does nothing but print
# them. Afterwards use "$TREUHAND_PYENV/bin/python", ".../bin/aws", ".../bin/pytest".
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REQ="$HERE/requirements.txt"
VENV=$(realpath -m -- "${TREUHAND_PYENV:-$PWD/target/pyenv}")
PYTHON=${PYTHON:-python3}
log() { printf '[pyenv.sh] %s\n' "$*" >&2; }
die() { printf '[pyenv.sh] ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
[[ -s $REQ ]] || die "missing $REQ"

# Exact pins that `pip freeze` must show ("name==version", lower-case names).
pins() { grep -Ev '^\s*(#|$)' "$REQ" | sed 's/\s*#.*//' | tr 'A-Z_' 'a-z-' | sort; }

# A venv's scripts name its interpreter by absolute path: a venv moved or copied from elsewhere
# (a target/ dir reused by another checkout) has a python but no working `aws` or `pytest`.
relocated() { [[ -e $VENV/bin/pip && $(head -n1 "$VENV/bin/pip") != "#!$VENV/bin/python"* ]]; }

up_to_date() {
    [[ -x $VENV/bin/python ]] || return 1
    ! relocated || return 1
    local have missing
    have=$("$VENV/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | tr 'A-Z_' 'a-z-' | sort) || return 1
    missing=$(comm -23 <(pins) <(printf '%s\n' "$have"))
    [[ -z $missing ]]
}

if up_to_date; then
    log "venv $VENV already has the pinned versions"
else
    t=$(date +%s)
    if [[ ! -x $VENV/bin/python ]] || relocated; then
        log "creating venv $VENV"
        "$PYTHON" -m venv --clear "$VENV" || die "python3 -m venv failed (on Debian: apt-get install -y python3-venv)"
    fi
    log "installing $(pins | tr '\n' ' ')"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ" \
        || die "pip install -r $REQ failed"
    up_to_date || die "venv does not match $REQ after install"
    log "installed in $(( $(date +%s) - t ))s"
fi

"$VENV/bin/python" - <<'PY' >&2
import sys, boto3, botocore, pytest, awscli
print(f"[pyenv.sh] python {sys.version.split()[0]}, boto3 {boto3.__version__} (botocore {botocore.__version__}), "
      f"awscli {awscli.__version__}, pytest {pytest.__version__}")
PY
echo "$VENV"
