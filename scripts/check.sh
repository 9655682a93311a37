#!/usr/bin/env bash
# The one test command: formatting, lints, then every test against real S3 servers.
#
#   bash scripts/check.sh
#
# Phases run in order and stop at the first failure: fmt and clippy need no servers, so they
# come first and fail fast; then scripts/services.sh starts Garage and moto (installing them on
# a new machine), the tests run with its env file sourced, and the servers are stopped by PID
# on any exit. Each phase prints its time; the last line is the total test count.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# CI runs in a fresh clone on a machine that is kept between runs: building into a per-machine
# target directory reuses every compiled dependency instead of rebuilding ~400 crates.
if [[ "${CI:-}" == "true" && -z "${CARGO_TARGET_DIR:-}" ]]; then
    export CARGO_TARGET_DIR=/root/.cache/stigvault-ci/target
fi

# --locked: CI must build exactly what Cargo.lock says, never quietly update it.
locked=()
[[ -f Cargo.lock ]] && locked=(--locked)

# A private env file per run, so a developer's own `services.sh start` (default path) and a
# second check.sh running at the same time never stop each other's servers.
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/stigvault-check.XXXXXX")
export STIGVAULT_SERVICES_ENV=$run_dir/services.env
test_log=$run_dir/cargo-test.log
services_started=0
timings=()

# `phase NAME CMD...` runs CMD and times it. A failing CMD ends the script with its exit code.
phase() {
    local name=$1 t0 rc=0 ds secs
    shift
    printf '\n==> %s: %s\n' "$name" "$*"
    t0=$(date +%s%N)
    "$@" || rc=$?
    ds=$((($(date +%s%N) - t0) / 100000000)) # tenths of a second
    secs=$((ds / 10)).$((ds % 10))
    if ((rc == 0)); then
        timings+=("$(printf '%-10s %7ss' "$name" "$secs")")
        printf '<== %s: ok in %ss\n' "$name" "$secs"
    else
        timings+=("$(printf '%-10s %7ss  FAILED (exit %d)' "$name" "$secs" "$rc")")
        printf '<== %s: FAILED (exit %d) after %ss\n' "$name" "$rc" "$secs"
        exit "$rc"
    fi
}

start_services() {
    # Set first: if this script is interrupted while `start` runs, `stop` must still be run.
    # `stop` with nothing started is a no-op.
    services_started=1
    bash scripts/services.sh start || return
    # shellcheck disable=SC1090 # written by services.sh start
    source "$STIGVAULT_SERVICES_ENV"
}

# cargo test output goes to the terminal and to a log, so the counts can be summed at the end:
# with --all-targets the last binary cargo runs may well have no tests, and its "0 passed"
# must not be the closing line a reader (or CI) takes for the whole run.
cargo_test() {
    cargo test "$@" 2>&1 | tee -a "$test_log"
}

finish() {
    local rc=$?
    trap - EXIT
    if ((services_started)); then
        if ((rc != 0)) && [[ -n ${STIGVAULT_SERVICES_DIR:-} ]]; then
            # The servers' side of a failing test; their logs go with `stop`.
            for f in "$STIGVAULT_SERVICES_DIR"/*/*.log; do
                [[ -f $f ]] && { printf '\n--- last lines of %s\n' "$f"; tail -n 15 "$f"; }
            done
        fi
        bash scripts/services.sh stop || { ((rc)) || rc=1; }
    fi
    printf '\n==> timings\n'
    printf '  %s\n' ${timings[@]+"${timings[@]}"}
    if [[ -f $test_log ]]; then
        awk '/^test result: / {
                for (i = 1; i <= NF; i++) {
                    if ($(i + 1) ~ /^passed/) p += $i
                    if ($(i + 1) ~ /^failed/) f += $i
                    if ($(i + 1) ~ /^ignored/) s += $i
                }
            }
            END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$test_log"
    fi
    rm -rf "$run_dir"
    exit "$rc"
}
trap finish EXIT
# Turn Ctrl-C or a CI timeout's TERM into a normal exit, so finish still stops the servers.
trap 'exit 130' INT
trap 'exit 143' TERM

cargo fmt --version >/dev/null 2>&1 || { echo "rustfmt is missing: rustup component add rustfmt" >&2; exit 1; }
cargo clippy --version >/dev/null 2>&1 || { echo "clippy is missing: rustup component add clippy" >&2; exit 1; }

phase fmt cargo fmt --all --check
phase clippy cargo clippy "${locked[@]}" --all-targets -- -D warnings
phase services start_services
phase test cargo_test "${locked[@]}" --all-targets --no-fail-fast
phase doctest cargo_test "${locked[@]}" --doc
