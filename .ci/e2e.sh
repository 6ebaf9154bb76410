#!/usr/bin/env bash
# Run the end-to-end S3 client tests (tests/e2e) against a running treuhand dev stack, once per
# checksum mode (AWS_REQUEST_CHECKSUM_CALCULATION=when_supported, then when_required).
#
#   .ci/e2e.sh [--backend RGW_ENV] DEV_DIR [extra pytest args...]
#
# DEV_DIR is the dir of `treuhand dev --dir DEV_DIR`; it must hold dev.env (SSE-C tenant) and
# dev-holder.env (holder tenant). The venv comes from .ci/pyenv.sh (TREUHAND_PYENV to move it).
# --backend CEPH_DIR/rgw.env (from .ci/ceph.sh) says the proxy stores into that rgw: then
# test_backend_ciphertext.py also checks that rgw only ever receives ciphertext.
# Exit status: 0 only if both runs passed and ran at least one test.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
log() { printf '[e2e.sh] %s\n' "$*" >&2; }
die() { printf '[e2e.sh] ERROR: %s\n' "$*" >&2; exit 1; }

BACKEND_ENV=
if [[ ${1:-} == --backend ]]; then
    [[ $# -ge 2 ]] || die "--backend needs the path of an rgw.env"
    BACKEND_ENV=$(realpath -- "$2") || die "no such file: $2"
    [[ -s $BACKEND_ENV ]] || die "empty or missing backend env file $2"
    shift 2
fi
[[ $# -ge 1 ]] || die "usage: $0 [--backend RGW_ENV] DEV_DIR [pytest args...]"
DEV_DIR=$(realpath -- "$1") || die "no such dir: $1"
shift
if [[ -z ${TREUHAND_E2E_ENV_FILES:-} ]]; then
    for f in dev.env dev-holder.env; do
        [[ -s $DEV_DIR/$f ]] || die "$DEV_DIR/$f is missing: is \`treuhand dev --dir $DEV_DIR\` running?"
    done
fi

VENV=$(cd "$ROOT" && bash "$HERE/pyenv.sh")
OUT="$ROOT/target/e2e"
mkdir -p "$OUT"

failed=()
for mode in when_supported when_required; do
    log "=== AWS_REQUEST_CHECKSUM_CALCULATION=$mode (dev dir $DEV_DIR) ==="
    t=$(date +%s)
    rc=0
    (
        cd "$ROOT/tests/e2e"
        # Nothing from the caller's AWS_* environment (e.g. a machine-wide AWS_CA_BUNDLE) may
        # leak in: the suite takes endpoint, CA, keys and region from the env files only.
        for v in $(compgen -e | grep '^AWS_' || true); do unset "$v"; done
        export AWS_REQUEST_CHECKSUM_CALCULATION=$mode
        export TREUHAND_DEV_DIR="$DEV_DIR"
        if [[ -n $BACKEND_ENV ]]; then export TREUHAND_E2E_BACKEND_ENV=$BACKEND_ENV; else unset TREUHAND_E2E_BACKEND_ENV; fi
        # The bucket and auth conformance files pin server answers (listings, ACLs, missing
        # buckets, presigned URLs) that do not depend on how the client checksums uploads, so
        # they run in the first mode only; every file that uploads runs in both.
        skip=()
        if [[ $mode == when_required ]]; then
            skip=(--ignore=test_bucket_conformance.py --ignore=test_auth_conformance.py)
        fi
        exec "$VENV/bin/python" -m pytest -v --junitxml="$OUT/junit-$mode.xml" "${skip[@]}" "$@"
    ) || rc=$?
    log "mode $mode: pytest exit $rc after $(( $(date +%s) - t ))s"
    # exit 5 = no tests collected: count it as a failure, never as a pass
    [[ $rc -eq 0 ]] || failed+=("$mode(exit $rc)")
done

if [[ ${#failed[@]} -gt 0 ]]; then
    die "e2e failed in: ${failed[*]}"
fi
log "e2e passed in both checksum modes"
