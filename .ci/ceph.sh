#!/usr/bin/env bash
# Single-node Ceph (one mon, one OSD on a sparse-file bluestore, radosgw) on 127.0.0.1,
# without systemd and with `auth ... = none`. TEST-ONLY: it has no authentication between
# daemons and fixed, public dev S3 keys.
#
#   .ci/ceph.sh start  DIR   install packages if missing, start (or reuse) the cluster,
#                            create the dev S3 user and write DIR/rgw.env
#   .ci/ceph.sh stop   DIR   stop every daemon started from DIR (data is kept)
#   .ci/ceph.sh status DIR   exit 0 if rgw answers
#   .ci/ceph.sh purge  DIR   stop, then delete DIR
#   .ci/ceph.sh smoke  DIR   with the aws cli (AWS_CLI, else target/pyenv/bin/aws, else PATH):
#                            create a bucket, put, get and compare, path-style, then clean up
#
# Everything (ceph.conf, data, run dir, sockets, logs, pid files) lives under DIR.
# `start` is idempotent: a running cluster is reused, a stopped one is restarted with its data.
#
# DIR/rgw.env (shell `export` lines) afterwards holds:
#   RGW_ENDPOINT=http://127.0.0.1:PORT      plain HTTP (what the proxy uses as its backend)
#   RGW_HTTPS_ENDPOINT=https://127.0.0.1:P  HTTPS with a self-signed TEST-ONLY certificate
#   RGW_CA_BUNDLE=DIR/tls/rgw.crt           the certificate to trust for RGW_HTTPS_ENDPOINT
#   RGW_ACCESS_KEY_ID / RGW_SECRET_ACCESS_KEY / RGW_REGION
#
# Environment knobs (all optional):
#   CEPH_OSD_SIZE_GB   size of the sparse bluestore file (default 20; only written blocks use disk)
#   CEPH_WAIT_SECS     timeout of each wait step (default 90)
#   CEPH_MIN_FREE_GB   refuse to start with less free disk than this under DIR (default 2)
#   CEPH_MON_PORT / CEPH_RGW_PORT / CEPH_RGW_TLS_PORT   fixed ports instead of free ones
#   CEPH_NO_INSTALL=1  never call apt-get (fail if the binaries are missing)

set -euo pipefail

readonly DEV_ACCESS_KEY="TREUHANDDEVACCESSKEY"
readonly DEV_SECRET_KEY="treuhand-dev-secret-key-TEST-ONLY-0000000"
readonly DEV_UID="treuhand-dev"
# rgw's default zonegroup is named "default"; with SigV4 it accepts any region name in the
# credential scope unless a zonegroup "api_name" is set, so "us-east-1" works as well.
readonly DEV_REGION="us-east-1"
readonly WAIT_SECS="${CEPH_WAIT_SECS:-90}"
readonly OSD_SIZE_GB="${CEPH_OSD_SIZE_GB:-20}"
readonly MIN_FREE_GB="${CEPH_MIN_FREE_GB:-2}"
readonly PACKAGES=(radosgw ceph-mon ceph-osd ceph-common)
readonly BINARIES=(ceph ceph-mon ceph-osd radosgw radosgw-admin ceph-authtool monmaptool)

T0=$(date +%s)
log() { printf '[ceph.sh +%3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
die() { printf '[ceph.sh] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ $# -eq 2 ]] || usage
CMD=$1
DIR=$(realpath -m -- "$2")
CONF="$DIR/ceph.conf"

# --- helpers -----------------------------------------------------------------

# wait_for DESCRIPTION COMMAND...: retry COMMAND every second until it succeeds or
# WAIT_SECS pass. On timeout, print the tail of the logs and fail.
wait_for() {
    local what=$1; shift
    local deadline=$(( $(date +%s) + WAIT_SECS ))
    log "waiting for $what (timeout ${WAIT_SECS}s)"
    until "$@" >/dev/null 2>&1; do
        if (( $(date +%s) >= deadline )); then
            log "timed out waiting for $what; last log lines:"
            tail -n 20 "$DIR"/log/*.log >&2 2>/dev/null || true
            die "timed out after ${WAIT_SECS}s waiting for $what"
        fi
        sleep 1
    done
}

new_uuid() { python3 -c 'import uuid; print(uuid.uuid4())'; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

ceph_cli() { timeout 20 ceph -c "$CONF" --connect-timeout 10 "$@"; }

ours() { # ours PID: a live process whose command line names this DIR's ceph.conf
    kill -0 "$1" 2>/dev/null && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$CONF"
}

pid_alive() { # pid_alive PIDFILE: the daemon of that pid file runs (a stale or reused pid does not count)
    [[ -s $1 ]] && ours "$(cat "$1")"
}

http_up() { # http_up URL [CAFILE]: rgw answers anything HTTP-ish (an anonymous ListBuckets)
    python3 - "$@" <<'EOF'
import sys, ssl, urllib.request, urllib.error
url = sys.argv[1]
ctx = ssl.create_default_context(cafile=sys.argv[2]) if len(sys.argv) > 2 else None
try:
    urllib.request.urlopen(url, timeout=3, context=ctx)
except urllib.error.HTTPError:
    pass  # any S3 error document means rgw is serving
EOF
}

ensure_packages() {
    local missing=() pkgs=("${PACKAGES[@]}")
    for b in "${BINARIES[@]}"; do command -v "$b" >/dev/null || missing+=("$b"); done
    command -v openssl >/dev/null || { missing+=(openssl); pkgs+=(openssl); }
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ ${CEPH_NO_INSTALL:-} == 1 ]] && die "missing ${missing[*]} and CEPH_NO_INSTALL=1"
    [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run as root so apt-get can install ${PACKAGES[*]}"
    local t
    t=$(date +%s)
    export DEBIAN_FRONTEND=noninteractive
    # Only refresh the package lists when apt does not know the packages yet.
    if ! apt-cache show radosgw >/dev/null 2>&1; then
        log "apt-get update"
        apt-get update -qq
    fi
    log "installing ${pkgs[*]} (about a minute)"
    if ! apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >"${TMPDIR:-/tmp}/ceph-apt.log" 2>&1; then
        log "install failed; retrying after apt-get update"
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >"${TMPDIR:-/tmp}/ceph-apt.log" 2>&1 \
            || { tail -n 30 "${TMPDIR:-/tmp}/ceph-apt.log" >&2; die "apt-get install ${pkgs[*]} failed"; }
    fi
    log "installed $(ceph --version | cut -d' ' -f1-3) in $(( $(date +%s) - t ))s"
}

write_conf() {
    local fsid=$1 mon_port=$2 rgw_port=$3 rgw_tls_port=$4
    cat >"$CONF" <<EOF
# Generated by .ci/ceph.sh. TEST-ONLY single-node cluster: no cephx, size-1 pools.
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
ms bind msgr2 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = true
crash dir = $DIR/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
# The mon refuses to start (exit 28, ENOSPC) once its filesystem has less than
# 'mon data avail crit' percent free (default 5). This throwaway cluster shares the disk with
# cargo's target dirs, so a percentage of a large shared disk says nothing about whether the
# cluster fits; ceph.sh checks an absolute floor (MIN_FREE_GB) itself before it starts.
mon data avail crit = 0
mon data avail warn = 0

[mon]
mon data = $DIR/mon/\$id

[osd]
osd data = $DIR/osd/\$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = $(( OSD_SIZE_GB * 1024 * 1024 * 1024 ))
bluestore fsck on mount = false
osd memory target = 1073741824
# The OSD's own crush update on start sends a mon command with a zero fsid, which the mon
# refuses ("wrong fsid") when cephx is off; ceph.sh puts osd.0 into the crush map itself.
osd crush update on start = false
osd class update on start = false
osd max object name len = 256
osd max object namespace len = 64

[client.rgw.a]
# tcp_nodelay=1: without it small GETs wait ~40 ms for delayed ACKs (Nagle).
rgw frontends = beast endpoint=127.0.0.1:$rgw_port ssl_endpoint=127.0.0.1:$rgw_tls_port ssl_certificate=$DIR/tls/rgw.crt ssl_private_key=$DIR/tls/rgw.key tcp_nodelay=1
rgw data = $DIR/rgw/\$id
rgw enable usage log = false
rgw thread pool size = 128
EOF
}

make_cert() {
    [[ -s $DIR/tls/rgw.crt && -s $DIR/tls/rgw.key ]] && return 0
    log "creating a TEST-ONLY self-signed certificate for rgw's HTTPS endpoint"
    mkdir -p "$DIR/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/CN=treuhand-dev-rgw" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -keyout "$DIR/tls/rgw.key" -out "$DIR/tls/rgw.crt" >/dev/null 2>&1 \
        || die "openssl could not create $DIR/tls/rgw.crt"
}

check_free_space() {
    local free_gb
    free_gb=$(df -Pk -- "$DIR" | awk 'NR==2 { print int($4 / 1048576) }')
    log "free disk under $DIR: ${free_gb} GiB"
    (( free_gb >= MIN_FREE_GB )) \
        || die "only ${free_gb} GiB free under $DIR; the cluster needs ${MIN_FREE_GB} GiB. Free some space (old target/ dirs, /tmp) or set CEPH_MIN_FREE_GB"
}

# --- start -------------------------------------------------------------------

start() {
    command -v python3 >/dev/null || die "python3 is required"
    ensure_packages
    mkdir -p "$DIR"/{run,log,mon,osd,rgw,crash}
    check_free_space
    : >"$DIR/keyring"
    rm -f "$DIR/rgw.env"  # written again only once rgw answers and the user exists

    local ports="$DIR/ports.env"
    if [[ ! -s $ports ]]; then
        {
            echo "MON_PORT=${CEPH_MON_PORT:-$(free_port)}"
            echo "RGW_PORT=${CEPH_RGW_PORT:-$(free_port)}"
            echo "RGW_TLS_PORT=${CEPH_RGW_TLS_PORT:-$(free_port)}"
            echo "FSID=$(new_uuid)"
        } >"$ports"
    fi
    # shellcheck disable=SC1090  # sets MON_PORT RGW_PORT RGW_TLS_PORT FSID
    source "$ports"
    # shellcheck disable=SC2153
    : "${MON_PORT:?} ${RGW_PORT:?} ${RGW_TLS_PORT:?} ${FSID:?}"
    [[ $RGW_PORT != "$RGW_TLS_PORT" && $RGW_PORT != "$MON_PORT" ]] || die "port clash in $ports; delete DIR and retry"
    make_cert
    write_conf "$FSID" "$MON_PORT" "$RGW_PORT" "$RGW_TLS_PORT"
    log "cluster dir $DIR (mon :$MON_PORT, rgw http :$RGW_PORT, https :$RGW_TLS_PORT)"

    # 1. monitor
    if [[ ! -e $DIR/mon/a/done ]]; then
        log "creating monitor a"
        rm -rf "$DIR/mon/a"
        ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
        monmaptool --create --clobber --fsid "$FSID" --addv a "[v1:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
        ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring" \
            || die "ceph-mon --mkfs failed (see $DIR/log/mon.a.log)"
        touch "$DIR/mon/a/done"
    fi
    if pid_alive "$DIR/run/mon.a.pid"; then
        log "monitor already running"
    else
        log "starting ceph-mon"
        ceph-mon -c "$CONF" -i a 2>>"$DIR/log/mon.a.stderr" \
            || { local rc=$?; tail -n 5 "$DIR/log/mon.a.stderr" >&2
                 die "ceph-mon exited with $rc (see $DIR/log/mon.a.log)"; }
    fi
    wait_for "the monitor to answer" ceph_cli mon stat

    # 2. one OSD on a sparse file
    if [[ ! -e $DIR/osd/0/done ]]; then
        log "creating OSD 0 (bluestore on a ${OSD_SIZE_GB} GiB sparse file)"
        local uuid id
        # keep the uuid: `osd new` with the same uuid is idempotent if this step is retried
        [[ -s $DIR/osd.uuid ]] || new_uuid >"$DIR/osd.uuid"
        uuid=$(cat "$DIR/osd.uuid")
        id=$(ceph_cli osd new "$uuid")
        [[ $id == 0 ]] || die "expected OSD id 0, got '$id' (delete $DIR and start again)"
        rm -rf "$DIR/osd/0"; mkdir -p "$DIR/osd/0"
        ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >>"$DIR/log/osd-mkfs.log" 2>&1 \
            || { tail -n 20 "$DIR/log/osd-mkfs.log" >&2; die "ceph-osd --mkfs failed"; }
        ceph_cli osd crush add osd.0 1.0 root=default >/dev/null 2>&1 || die "could not add osd.0 to the crush map"
        touch "$DIR/osd/0/done"
    fi
    if pid_alive "$DIR/run/osd.0.pid"; then
        log "OSD already running"
    else
        log "starting ceph-osd"
        ceph-osd -c "$CONF" -i 0 2>>"$DIR/log/osd.0.stderr" \
            || { tail -n 20 "$DIR/log/osd.0.stderr" >&2; die "ceph-osd did not start (see $DIR/log/osd.0.log)"; }
    fi
    wait_for "OSD 0 to be up and in" osd_up

    # 3. radosgw (creates its pools on first start)
    if pid_alive "$DIR/run/client.rgw.a.pid"; then
        log "radosgw already running"
    else
        log "starting radosgw"
        radosgw -c "$CONF" -n client.rgw.a 2>>"$DIR/log/client.rgw.a.stderr" \
            || { tail -n 20 "$DIR/log/client.rgw.a.stderr" >&2; die "radosgw did not start (see $DIR/log/client.rgw.a.log)"; }
    fi
    wait_for "radosgw on http://127.0.0.1:$RGW_PORT" http_up "http://127.0.0.1:$RGW_PORT/"
    wait_for "radosgw on https://127.0.0.1:$RGW_TLS_PORT" http_up "https://127.0.0.1:$RGW_TLS_PORT/" "$DIR/tls/rgw.crt"

    # 4. the dev S3 user with fixed keys
    if timeout 60 radosgw-admin -c "$CONF" user info --uid="$DEV_UID" >/dev/null 2>&1; then
        log "S3 user $DEV_UID exists"
    else
        log "creating S3 user $DEV_UID"
        timeout 60 radosgw-admin -c "$CONF" user create --uid="$DEV_UID" --display-name="treuhand dev (TEST-ONLY)" \
            --access-key="$DEV_ACCESS_KEY" --secret-key="$DEV_SECRET_KEY" >/dev/null \
            || die "radosgw-admin user create failed"
    fi

    cat >"$DIR/rgw.env" <<EOF
# Written by .ci/ceph.sh: TEST-ONLY single-node Ceph RGW with fixed dev keys.
export RGW_ENDPOINT=http://127.0.0.1:$RGW_PORT
export RGW_HTTPS_ENDPOINT=https://127.0.0.1:$RGW_TLS_PORT
export RGW_CA_BUNDLE=$DIR/tls/rgw.crt
export RGW_ACCESS_KEY_ID=$DEV_ACCESS_KEY
export RGW_SECRET_ACCESS_KEY=$DEV_SECRET_KEY
export RGW_REGION=$DEV_REGION
EOF
    log "ready: source $DIR/rgw.env  (RGW_ENDPOINT=http://127.0.0.1:$RGW_PORT)"
}

osd_up() {
    ceph_cli osd dump 2>/dev/null | grep -Eq '^osd\.0 up +in '
}

# --- smoke test --------------------------------------------------------------

smoke() {
    [[ -s $DIR/rgw.env ]] || die "no $DIR/rgw.env: run $0 start $DIR"
    local aws=${AWS_CLI:-}
    if [[ -z $aws ]]; then
        for c in "${TREUHAND_PYENV:-$PWD/target/pyenv}/bin/aws" "$(command -v aws || true)"; do
            [[ -n $c && -x $c ]] && { aws=$c; break; }
        done
    fi
    [[ -n $aws ]] || die "no aws cli found: run .ci/pyenv.sh or set AWS_CLI"
    (
        # only rgw's settings: no inherited AWS_* (e.g. a machine-wide AWS_CA_BUNDLE), no ~/.aws
        for v in $(compgen -e | grep '^AWS_' || true); do unset "$v"; done
        # shellcheck disable=SC1091
        source "$DIR/rgw.env"
        export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$RGW_SECRET_ACCESS_KEY \
            AWS_DEFAULT_REGION=$RGW_REGION AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
        local bucket tmp debug
        bucket="smoke-$$-$(date +%s)"
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        head -c 100000 /dev/urandom >"$tmp/in"
        run() { "$aws" --endpoint-url "$RGW_ENDPOINT" "$@"; }
        run s3api create-bucket --bucket "$bucket" >/dev/null
        run s3 cp --only-show-errors "$tmp/in" "s3://$bucket/obj"
        run s3 cp --only-show-errors "s3://$bucket/obj" "$tmp/out"
        cmp -s "$tmp/in" "$tmp/out" || die "object read back from rgw differs"
        # the aws cli uses path-style URLs (http://127.0.0.1:PORT/bucket/key) for an IP endpoint
        debug=$(run --debug s3api head-object --bucket "$bucket" --key obj 2>&1)
        grep -q "\"HEAD /$bucket/obj HTTP/1.1\" 200" <<<"$debug" \
            || die "path-style HEAD /$bucket/obj did not answer 200"
        run s3 rm --only-show-errors "s3://$bucket/obj"
        run s3api delete-bucket --bucket "$bucket"
        log "smoke test passed: bucket create, put, get, path-style HEAD, delete against $RGW_ENDPOINT"
    )
}

# --- stop --------------------------------------------------------------------

stop() {
    [[ -d $DIR/run ]] || { log "nothing to stop in $DIR"; return 0; }
    local f pid name
    # rgw first, then the OSD, the monitor last.
    for name in client.rgw.a osd.0 mon.a; do
        f="$DIR/run/$name.pid"
        [[ -s $f ]] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            # only kill what really is a ceph daemon started from this DIR
            if ours "$pid"; then
                log "stopping $name (pid $pid)"
                kill -TERM "$pid" 2>/dev/null || true
                for _ in $(seq 1 "$WAIT_SECS"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
                if kill -0 "$pid" 2>/dev/null; then
                    log "$name did not stop in ${WAIT_SECS}s; sending SIGKILL"
                    kill -KILL "$pid" 2>/dev/null || true
                fi
            else
                log "pid $pid in $f is not ours; leaving it alone"
            fi
        fi
        rm -f "$f"
    done
    log "stopped"
}

case $CMD in
    start) start ;;
    stop) stop ;;
    status)
        [[ -s $DIR/rgw.env ]] || die "no $DIR/rgw.env"
        # shellcheck disable=SC1091
        source "$DIR/rgw.env"
        http_up "$RGW_ENDPOINT/" || die "rgw at $RGW_ENDPOINT does not answer"
        log "rgw answers at $RGW_ENDPOINT" ;;
    purge) stop; rm -rf -- "$DIR"; log "removed $DIR" ;;
    smoke) smoke ;;
    *) usage ;;
esac
