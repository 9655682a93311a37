# The stigmem CLI, the reference implementation whose snapshot tarballs stigvault must read
# and write. Sourced by scripts/services.sh after lib/common.sh.
# shellcheck shell=bash
# Its globals are read by the other lib files and services.sh:
# shellcheck disable=SC2034

STIGMEM_VERSION=0.9.0a12
STIGMEM_VENV=$CACHE_DIR/stigmem-venv
STIGMEM_BIN=$STIGMEM_VENV/bin/stigmem
# The marker also names the migrations step, so a venv from a plain pip install is redone.
STIGMEM_SPEC="stigmem-node==$STIGMEM_VERSION +sdist-migrations +snapshot-checked"

ensure_stigmem() {
    venv_is_marked "$STIGMEM_VENV" "$STIGMEM_SPEC" && [[ -x $STIGMEM_BIN ]] && return 0
    install_venv "$STIGMEM_VENV" "stigmem-node==$STIGMEM_VERSION"

    # The wheel ships without the SQL migrations, so on a fresh database `snapshot create`
    # dies with "no such table: node_meta". The sdist has them; stigmem looks for them three
    # directories above its db.py, i.e. <venv>/lib/python3.X/migrations. Ask stigmem itself
    # for that path rather than rebuilding it.
    local tmp dest
    tmp=$(mktemp -d)
    "$STIGMEM_VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps \
        --no-binary :all: -d "$tmp" "stigmem-node==$STIGMEM_VERSION" ||
        die "cannot download the stigmem-node $STIGMEM_VERSION sdist"
    tar -xzf "$tmp"/stigmem_node-*.tar.gz -C "$tmp" || die "cannot unpack the stigmem-node sdist"
    dest=$(cd "$tmp" && "$STIGMEM_VENV/bin/python" -c \
        'import stigmem_node.db as d; print(d._MIGRATIONS_DIR)') ||
        die "cannot find where stigmem-node looks for its migrations"
    mkdir -p "$dest"
    cp "$tmp"/stigmem_node-*/migrations/*.sql "$dest"/ || die "the stigmem-node sdist has no migrations/*.sql"
    rm -rf "$tmp"

    check_stigmem
    mark_venv "$STIGMEM_VENV" "$STIGMEM_SPEC"
}

# Proves the install is usable: a snapshot of a brand-new database (schema built from the
# migrations) and its verified restore elsewhere. Runs in a temp dir because stigmem's settings
# also read a `.env` from the working directory.
check_stigmem() {
    local tmp out
    tmp=$(mktemp -d)
    if ! out=$(cd "$tmp" && STIGMEM_DB_PATH="$tmp/fresh.db" "$STIGMEM_BIN" snapshot create \
        --out "$tmp/snap.tar.gz" 2>&1); then
        printf '%s\n' "$out" >&2
        die "stigmem snapshot create failed on a fresh database"
    fi
    if ! out=$(cd "$tmp" && "$STIGMEM_BIN" snapshot restore --from "$tmp/snap.tar.gz" \
        --db "$tmp/restored.db" 2>&1); then
        printf '%s\n' "$out" >&2
        die "stigmem snapshot restore failed on a snapshot it had just made"
    fi
    rm -rf "$tmp"
    log "stigmem $STIGMEM_VERSION: snapshot create + restore work on a fresh database"
}
