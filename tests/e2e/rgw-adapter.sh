#!/usr/bin/env bash
# Self-test of the e2e suite without treuhand: write env files in the format of `treuhand dev`
# that point straight at the Ceph RGW of `.ci/ceph.sh start CEPH_DIR`.
#
#   tests/e2e/rgw-adapter.sh CEPH_DIR OUT_DIR && .ci/e2e.sh OUT_DIR
#
# OUT_DIR/dev.env         rgw over HTTPS with SSE-C (a random 32-byte key stands in for the
#                         customer share); rgw enforces SSE-C, so the negative tests are real
# OUT_DIR/dev-holder.env  rgw over plain HTTP, no SSE-C
# rgw rejects aws-chunked uploads without Content-Length, which boto3/aws cli send over HTTPS
# when AWS_REQUEST_CHECKSUM_CALCULATION=when_supported; TREUHAND_E2E_NO_AWS_CHUNKED=1 makes
# the suite skip that one combination. treuhand itself must accept them.
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 CEPH_DIR OUT_DIR" >&2; exit 2; }
CEPH_DIR=$(realpath -- "$1")
OUT=$(realpath -m -- "$2")
[[ -s $CEPH_DIR/rgw.env ]] || { echo "no $CEPH_DIR/rgw.env: run .ci/ceph.sh start $CEPH_DIR" >&2; exit 1; }
# shellcheck disable=SC1091
source "$CEPH_DIR/rgw.env"
mkdir -p "$OUT"
[[ -s $OUT/customer.share ]] || head -c 32 /dev/urandom >"$OUT/customer.share"
cat >"$OUT/dev.env" <<EOT
# rgw adapter (tests/e2e/rgw-adapter.sh): SSE-C tenant stand-in
export TREUHAND_ENDPOINT=$RGW_HTTPS_ENDPOINT
export AWS_CA_BUNDLE=$RGW_CA_BUNDLE
export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$RGW_SECRET_ACCESS_KEY
export AWS_DEFAULT_REGION=$RGW_REGION
export TREUHAND_BUCKET=e2e-ssec
export TREUHAND_SHARE_FILE=$OUT/customer.share
export TREUHAND_E2E_NO_AWS_CHUNKED=1
EOT
cat >"$OUT/dev-holder.env" <<EOT
# rgw adapter (tests/e2e/rgw-adapter.sh): holder tenant stand-in (plain requests)
export TREUHAND_ENDPOINT=$RGW_ENDPOINT
export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$RGW_SECRET_ACCESS_KEY
export AWS_DEFAULT_REGION=$RGW_REGION
export TREUHAND_BUCKET=e2e-holder
EOT
echo "$OUT"
