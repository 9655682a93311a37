# Shared helpers for scripts/services.sh and its lib/ files. Sourced, never run.
# shellcheck shell=bash
# Its globals are read by the other lib files and services.sh:
# shellcheck disable=SC2034

# Everything installed is cached per machine here, so only the first run on a new machine pays
# for the Garage build (~8.5 min on 2 cores) and the two pip installs.
CACHE_DIR=${STIGVAULT_CI_CACHE:-/root/.cache/stigvault-ci}

log() { printf '[services] %s\n' "$*" >&2; }

die() {
    printf '[services] ERROR: %s\n' "$*" >&2
    exit 1
}

# Random lowercase hex of $1 bytes. /dev/urandom and od are always there; openssl may not be.
rand_hex() {
    od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

# Sets PYTHON to a Python >= 3.11.4, the version line stigmem-node was checked with (its
# restore needs tarfile's filter='data'). It is used to create the venvs and for small helpers;
# each venv's own python is what runs afterwards. pyenv's own 3.11 is tried before the PATH
# because a pyenv shim costs ~0.3 s per call; the result is kept for the same reason.
PYTHON=
find_python() {
    [[ -n $PYTHON ]] && return 0
    local p
    for p in /root/.pyenv/versions/3.11*/bin/python3.11 python3.11 python3; do
        if command -v "$p" >/dev/null 2>&1 &&
            "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11, 4))' 2>/dev/null; then
            PYTHON=$("$p" -c 'import sys; print(sys.executable)')
            return 0
        fi
    done
    die "no Python >= 3.11.4 found; install python3.11"
}

# True if the venv at $1 was fully set up for exactly the package list in the remaining
# arguments. The marker is written last (mark_venv), so a half-finished install never counts,
# and checking it is faster than asking pip (~0.5 s a call).
venv_is_marked() {
    local venv=$1
    shift
    [[ -f $venv/.stigvault-installed && "$(cat "$venv/.stigvault-installed")" == "$*" ]] &&
        "$venv/bin/python" -c '' 2>/dev/null
}

mark_venv() {
    local venv=$1
    shift
    printf '%s' "$*" >"$venv/.stigvault-installed"
}

# (Re)creates the venv at $1 from scratch and pip-installs the remaining arguments into it.
install_venv() {
    local venv=$1
    shift
    log "installing into $venv: $*"
    rm -rf "$venv"
    find_python
    "$PYTHON" -m venv "$venv" || die "cannot create venv $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" ||
        die "pip install $* into $venv failed"
}

# Prints $1 TCP ports on 127.0.0.1 that are free right now. All are bound at once before any is
# released, so the kernel never hands out the same one twice. A server started later could
# still lose its port to someone else; that shows up as a failed start, not as a silent clash.
free_ports() {
    find_python
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# True once something accepts TCP connections on 127.0.0.1:$1. Only connects and closes: no
# HTTP request is sent, which matters for moto, whose unauthenticated-call budget any request
# would spend.
tcp_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Waits until $2 accepts connections, failing early if process $3 ($1 names it) died.
wait_tcp() {
    local name=$1 port=$2 pid=$3 log_file=$4 i
    for ((i = 0; i < 600; i++)); do
        tcp_open "$port" && return 0
        if ! is_running "$pid"; then
            tail -n 30 "$log_file" >&2 || true
            die "$name exited during start-up (log above, full log: $log_file)"
        fi
        sleep 0.1
    done
    tail -n 30 "$log_file" >&2 || true
    die "$name did not listen on 127.0.0.1:$port within 60 s (log: $log_file)"
}

# HTTP status of GET http://127.0.0.1:$1$2, or 000. Plain bash, so curl is not a dependency.
# The subshell keeps a failed connect from touching the caller's file descriptors.
http_status() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$2" "$1" >&3
        read -r -t 5 _ code _ <&3 || exit 1
        printf '%s' "$code"
    ) 2>/dev/null || printf '000'
}

# Kernel start time of a live process (field 22 of /proc/PID/stat). Stored next to each PID so
# that `stop` never kills an unrelated process that happens to reuse the number later. A zombie
# counts as gone: it has exited, and whether its parent ever reaps it is not ours to wait for.
proc_starttime() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    # The command name (field 2) may contain spaces; everything after its ')' is space-separated.
    stat=${stat##*) }
    # shellcheck disable=SC2086 # deliberate word splitting
    set -- $stat
    [[ $1 != Z ]] || return 1
    printf '%s' "${20}"
}

is_running() {
    proc_starttime "$1" >/dev/null
}
