#!/usr/bin/env bash
# Installs (once per machine) and runs the real S3-compatible servers and the stigmem CLI that
# stigvault's tests use.
#
#   scripts/services.sh start   install what is missing, start Garage and moto on 127.0.0.1,
#                               write the env file
#   scripts/services.sh stop    stop what `start` started (by PID) and delete its data
#   scripts/services.sh env     print the env file
#
# The env file (default /tmp/stigvault-services.env, or $STIGVAULT_SERVICES_ENV) holds
# `export NAME=value` lines; `source` it before `cargo test`. Its PIDs live beside it in
# <env file>.pids. Set STIGVAULT_WITH_RESTIC=1 to also install restic (for benchmarks).
# See scripts/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=SCRIPTDIR/lib/garage.sh
source "$here/lib/garage.sh"
# shellcheck source=SCRIPTDIR/lib/moto.sh
source "$here/lib/moto.sh"
# shellcheck source=SCRIPTDIR/lib/stigmem.sh
source "$here/lib/stigmem.sh"

ENV_FILE=${STIGVAULT_SERVICES_ENV:-/tmp/stigvault-services.env}
PID_FILE=$ENV_FILE.pids

# One line per started process: "pid NAME PID STARTTIME". Written the moment a process exists,
# so that a start failing half-way (or interrupted) can still stop everything it started.
record_pid() {
    printf 'pid %s %s %s\n' "$1" "$2" "$(proc_starttime "$2" || echo gone)" >>"$PID_FILE"
}

# Stops what the PID file names. $1 says what happens to the data directory: "delete" it, or
# "keep-logs" after a failed start so its logs can be read.
stop_services() {
    local keep=$1
    [[ -f $PID_FILE ]] || {
        log "nothing to stop (no $PID_FILE)"
        rm -f "$ENV_FILE"
        return 0
    }
    local kind name pid start dir entry live=() i
    while read -r kind name pid start; do
        [[ $kind == pid ]] || continue
        # Only a process with the recorded start time is ours; the PID may have been reused.
        if [[ $(proc_starttime "$pid" 2>/dev/null) == "$start" ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            live+=("$name:$pid:$start")
        fi
    done <"$PID_FILE"
    for entry in ${live[@]+"${live[@]}"}; do
        IFS=: read -r name pid start <<<"$entry"
        for ((i = 0; i < 100; i++)); do
            [[ $(proc_starttime "$pid" 2>/dev/null) == "$start" ]] || break
            sleep 0.1
        done
        if [[ $(proc_starttime "$pid" 2>/dev/null) == "$start" ]]; then
            log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
            [[ $(proc_starttime "$pid" 2>/dev/null) == "$start" ]] && die "cannot stop $name (pid $pid)"
        fi
        log "stopped $name (pid $pid)"
    done
    # The data directory is removed only if it carries our marker, whatever the file says.
    while read -r kind dir _; do
        [[ $kind == dir && -f $dir/.stigvault-services ]] || continue
        if [[ $keep == keep-logs ]]; then
            log "logs kept in $dir"
        else
            rm -rf "$dir"
        fi
    done <"$PID_FILE"
    rm -f "$PID_FILE" "$ENV_FILE"
}

ensure_restic() {
    command -v restic >/dev/null && return 0
    log "installing restic (apt)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq restic >/dev/null; }; then
        die "apt-get install restic failed"
    fi
}

# Everything the services need, installed once per machine. The lock serialises concurrent
# starts (two checkouts, two check.sh runs), which would otherwise race on the same venvs.
install_all() {
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/install.lock"
    flock 9
    if [[ ${STIGVAULT_WITH_RESTIC:-0} == 1 ]]; then ensure_restic; fi
    ensure_moto
    ensure_stigmem
    ensure_garage
    flock -u 9
    exec 9>&-
}

# One line of the env file. Values are checked to be shell-safe, so the file can be sourced as
# it is and also read as plain NAME=value by anything that strips "export ".
env_line() {
    [[ $2 =~ ^[A-Za-z0-9+/:._-]+$ ]] || die "refusing to write an unsafe value for $1: $2"
    printf 'export %s=%s\n' "$1" "$2"
}

# The env contract the Rust tests read (names are fixed; see scripts/README.md).
env_lines() {
    printf '# stigvault test services, from scripts/services.sh start at %s\n' "$(date -u +%FT%TZ)"
    env_line STIGVAULT_TEST_GARAGE_ENDPOINT "http://127.0.0.1:$GARAGE_PORT"
    env_line STIGVAULT_TEST_GARAGE_BUCKET "$GARAGE_BUCKET"
    env_line STIGVAULT_TEST_GARAGE_BUCKET2 "$GARAGE_BUCKET2"
    env_line STIGVAULT_TEST_GARAGE_ACCESS_KEY_ID "$GARAGE_ACCESS_KEY_ID"
    env_line STIGVAULT_TEST_GARAGE_SECRET_ACCESS_KEY "$GARAGE_SECRET_ACCESS_KEY"
    env_line STIGVAULT_TEST_GARAGE_REGION "$GARAGE_REGION"
    env_line STIGVAULT_TEST_MOTO_ENDPOINT "http://127.0.0.1:$MOTO_PORT"
    env_line STIGVAULT_TEST_MOTO_BUCKET "$MOTO_BUCKET"
    env_line STIGVAULT_TEST_MOTO_BUCKET2 "$MOTO_BUCKET2"
    env_line STIGVAULT_TEST_MOTO_ACCESS_KEY_ID "$MOTO_ACCESS_KEY_ID"
    env_line STIGVAULT_TEST_MOTO_SECRET_ACCESS_KEY "$MOTO_SECRET_ACCESS_KEY"
    env_line STIGVAULT_TEST_MOTO_REGION "$MOTO_REGION"
    env_line STIGVAULT_TEST_STIGMEM "$STIGMEM_BIN"
    # Not read by tests: where the servers' data and logs are, for a failing run to show them.
    env_line STIGVAULT_SERVICES_DIR "$STIGVAULT_SERVICES_DIR"
}

# Creates Garage's second bucket (moto's were made during its bootstrap), then round-trips an
# object through every bucket of both servers using only what the env file says, so a start
# that succeeds has proved the exact contract the tests rely on.
setup_and_smoke_test() {
    (
        # shellcheck disable=SC1090
        source "$1"
        "$MOTO_PY" - <<'EOF'
import os, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

def client(server):
    e = lambda k: os.environ[f"STIGVAULT_TEST_{server}_{k}"]
    return boto3.client("s3", endpoint_url=e("ENDPOINT"), region_name=e("REGION"),
                        aws_access_key_id=e("ACCESS_KEY_ID"), aws_secret_access_key=e("SECRET_ACCESS_KEY"),
                        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 2}))

garage = client("GARAGE")
# Garage's default key may create buckets; the creator gets read/write/owner on it.
garage.create_bucket(Bucket=os.environ["STIGVAULT_TEST_GARAGE_BUCKET2"],
                     CreateBucketConfiguration={"LocationConstraint": os.environ["STIGVAULT_TEST_GARAGE_REGION"]})

for server in ("GARAGE", "MOTO"):
    s3 = client(server)
    for var in ("BUCKET", "BUCKET2"):
        bucket = os.environ[f"STIGVAULT_TEST_{server}_{var}"]
        body = os.urandom(1000)
        try:
            s3.put_object(Bucket=bucket, Key="smoke/object", Body=body)
            got = s3.get_object(Bucket=bucket, Key="smoke/object")["Body"].read()
            s3.delete_object(Bucket=bucket, Key="smoke/object")
        except ClientError as e:
            sys.exit(f"{server.lower()} bucket {bucket}: {e}")
        if got != body:
            sys.exit(f"{server.lower()} bucket {bucket}: GET returned other bytes than PUT")
print("smoke test: PUT/GET/DELETE work in both buckets of garage and moto", file=sys.stderr)
EOF
    ) || die "smoke test against the started servers failed (logs under $STIGVAULT_SERVICES_DIR)"
}

start_services() {
    local t0
    t0=$(date +%s%N)
    if [[ -f $PID_FILE ]]; then
        log "services from an earlier start are recorded in $PID_FILE; stopping them first"
        stop_services delete
    fi
    install_all

    STIGVAULT_SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/stigvault-services.XXXXXX")
    touch "$STIGVAULT_SERVICES_DIR/.stigvault-services"
    printf 'dir %s\n' "$STIGVAULT_SERVICES_DIR" >"$PID_FILE"
    # From here on, any failure or interruption stops whatever was already started.
    trap 'log "start did not finish; stopping what it started"; stop_services keep-logs' EXIT
    trap 'exit 130' INT TERM

    # Garage needs a second or so to lay out its cluster; moto's bootstrap runs meanwhile.
    start_garage "$STIGVAULT_SERVICES_DIR"
    start_moto "$STIGVAULT_SERVICES_DIR"
    wait_garage "$STIGVAULT_SERVICES_DIR"

    # Written in the data dir and renamed into place, so a reader never sees half a file and a
    # failed start leaves no stray copy; 0600 because it holds secrets.
    local tmp_env=$STIGVAULT_SERVICES_DIR/services.env
    (umask 077 && env_lines >"$tmp_env")
    setup_and_smoke_test "$tmp_env"
    mv "$tmp_env" "$ENV_FILE"

    trap - EXIT INT TERM
    log "garage $GARAGE_VERSION on 127.0.0.1:$GARAGE_PORT, moto $MOTO_VERSION on 127.0.0.1:$MOTO_PORT"
    log "env file: $ENV_FILE (source it); data and logs: $STIGVAULT_SERVICES_DIR"
    log "started in $((($(date +%s%N) - t0) / 1000000)) ms"
}

case ${1:-} in
start) start_services ;;
stop) stop_services delete ;;
env)
    [[ -f $ENV_FILE ]] || die "no services are running (no $ENV_FILE); run: $0 start"
    cat "$ENV_FILE"
    ;;
*)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
