#!/usr/bin/env bash
# Start `treuhand dev` in the background, run the end-to-end suite (.ci/e2e.sh) against it,
# and stop the stack again, whatever happens.
#
#   .ci/dev-e2e.sh DEV_DIR                  # filesystem backend
#   .ci/dev-e2e.sh --rgw CEPH_DIR DEV_DIR   # Ceph RGW backend (.ci/ceph.sh start CEPH_DIR first)
#
# DEV_DIR is created fresh. The treuhand binary is target/debug/treuhand (TREUHAND_BIN to
# override); build it first (cargo build --locked).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
log() { printf '[dev-e2e.sh] %s\n' "$*" >&2; }
die() { printf '[dev-e2e.sh] ERROR: %s\n' "$*" >&2; exit 1; }

RGW_ENV=
if [[ ${1:-} == --rgw ]]; then
    [[ $# -ge 2 ]] || die "--rgw needs the ceph dir"
    RGW_ENV=$(realpath -- "$2")/rgw.env
    [[ -s $RGW_ENV ]] || die "$RGW_ENV missing: run .ci/ceph.sh start $2"
    shift 2
fi
[[ $# -eq 1 ]] || die "usage: $0 [--rgw CEPH_DIR] DEV_DIR"
DEV_DIR=$(realpath -m -- "$1")
BIN=${TREUHAND_BIN:-$ROOT/target/debug/treuhand}
[[ -x $BIN ]] || die "no $BIN: run cargo build --locked"

rm -rf "$DEV_DIR"
mkdir -p "$DEV_DIR"
args=(dev --dir "$DEV_DIR")
[[ -n $RGW_ENV ]] && args+=(--backend-env "$RGW_ENV")
"$BIN" "${args[@]}" >"$DEV_DIR.log" 2>&1 &
pid=$!
cleanup() {
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 600); do
    grep -q "Press Ctrl-C" "$DEV_DIR.log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$DEV_DIR.log" >&2; die "treuhand dev exited"; }
    sleep 0.1
done
grep -q "Press Ctrl-C" "$DEV_DIR.log" || { cat "$DEV_DIR.log" >&2; die "treuhand dev did not come up in 60 s"; }
log "dev stack up in $DEV_DIR (log: $DEV_DIR.log)"
if [[ -n $RGW_ENV ]]; then
    "$HERE/e2e.sh" --backend "$RGW_ENV" "$DEV_DIR"
else
    "$HERE/e2e.sh" "$DEV_DIR"
fi
