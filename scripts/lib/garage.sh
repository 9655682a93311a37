# Garage, a production S3-compatible store. It checks SigV4 but ignores conditional PUTs, which
# is exactly why stigvault is tested against it. Sourced by scripts/services.sh.
# shellcheck shell=bash
# Its globals are read by the other lib files and services.sh:
# shellcheck disable=SC2034

GARAGE_VERSION=2.5.0
GARAGE_ROOT=$CACHE_DIR/garage
GARAGE_BIN=$GARAGE_ROOT/bin/garage
GARAGE_BUILD_LOG=$CACHE_DIR/garage-build.log
GARAGE_REGION=garage
GARAGE_BUCKET=stigvault-test
GARAGE_BUCKET2=stigvault-test-2

garage_installed() {
    # Prints e.g. "garage cargo:2.5.0 [features: ...]".
    [[ -x $GARAGE_BIN ]] && "$GARAGE_BIN" --version 2>/dev/null | grep -qwF "$GARAGE_VERSION"
}

# There is no prebuilt binary we may download, so Garage is built from crates.io once per
# machine (~8.5 min, 1.4 GB RAM on 2 cores). A build already running with the same command
# (started by hand, or by another checkout's start) is waited for, not duplicated; the caller
# holds the install lock so two starts from these scripts never build at once.
ensure_garage() {
    garage_installed && return 0
    local waited=0
    while pgrep -f "cargo install garage" >/dev/null; do
        ((waited % 60 == 0)) && log "waiting for a running Garage build to finish (${waited}s; log: $GARAGE_BUILD_LOG)"
        sleep 5
        waited=$((waited + 5))
    done
    garage_installed && return 0
    log "building Garage $GARAGE_VERSION (once per machine, ~9 min; log: $GARAGE_BUILD_LOG)"
    # Built from the cache dir so that no project's .cargo/config.toml applies to it.
    (cd "$CACHE_DIR" && cargo install garage --version "$GARAGE_VERSION" --locked \
        --root "$GARAGE_ROOT") >"$GARAGE_BUILD_LOG" 2>&1 || {
        tail -n 30 "$GARAGE_BUILD_LOG" >&2
        die "cargo install garage $GARAGE_VERSION failed (log: $GARAGE_BUILD_LOG)"
    }
    garage_installed || die "Garage built, but $GARAGE_BIN --version does not say $GARAGE_VERSION"
}

# Starts a single-node Garage with fresh data in $1 and sets GARAGE_PORT, GARAGE_ADMIN_PORT,
# GARAGE_ACCESS_KEY_ID and GARAGE_SECRET_ACCESS_KEY. Returns once the process runs; call
# wait_garage to know it serves requests (so moto can start meanwhile).
start_garage() {
    local dir=$1/garage ports rpc_port
    mkdir -p "$dir/meta" "$dir/data"
    ports=$(free_ports 3) || die "cannot find free ports for garage"
    read -r GARAGE_PORT rpc_port GARAGE_ADMIN_PORT <<<"$ports"
    # Garage's own formats: key ids are "GK" + 24 hex, secrets 64 hex.
    GARAGE_ACCESS_KEY_ID=GK$(rand_hex 12)
    GARAGE_SECRET_ACCESS_KEY=$(rand_hex 32)

    # sqlite: the engine this setup was tested with; lmdb reserves a 1 TiB memory map by
    # default, pointless for a throwaway test node.
    # root_domain is required by the config parser even though clients use path-style URLs.
    (
        umask 077 # the file holds the RPC secret and admin token
        cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(rand_hex 32)"

[s3_api]
s3_region = "$GARAGE_REGION"
api_bind_addr = "127.0.0.1:$GARAGE_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$GARAGE_ADMIN_PORT"
admin_token = "$(rand_hex 32)"
EOF
    )

    # RUST_LOG is pinned so that a test run's RUST_LOG=debug does not flood Garage's log;
    # NO_COLOR keeps escape codes out of it.
    # --single-node lays out a one-node cluster; --default-bucket creates the key and bucket
    # from these variables before the APIs start listening.
    GARAGE_DEFAULT_ACCESS_KEY=$GARAGE_ACCESS_KEY_ID \
        GARAGE_DEFAULT_SECRET_KEY=$GARAGE_SECRET_ACCESS_KEY \
        GARAGE_DEFAULT_BUCKET=$GARAGE_BUCKET \
        RUST_LOG=garage=info NO_COLOR=1 \
        "$GARAGE_BIN" -c "$dir/garage.toml" server --single-node --default-bucket \
        >"$dir/garage.log" 2>&1 </dev/null &
    GARAGE_PID=$!
    record_pid garage "$GARAGE_PID"
}

wait_garage() {
    local log_file=$1/garage/garage.log i
    wait_tcp garage "$GARAGE_PORT" "$GARAGE_PID" "$log_file"
    # The S3 port opening is not enough: /health turns 200 only once the layout is live.
    for ((i = 0; i < 300; i++)); do
        [[ $(http_status "$GARAGE_ADMIN_PORT" /health) == 200 ]] && return 0
        is_running "$GARAGE_PID" || break
        sleep 0.1
    done
    tail -n 30 "$log_file" >&2 || true
    die "garage is not healthy (admin /health on port $GARAGE_ADMIN_PORT; log: $log_file)"
}
