#!/usr/bin/env bash
# The main job on the default local store, end to end, with a generated stigmem-like database:
# push, a +1% change, push again (only changed pages are stored), ls, and a verified pull.
#
#   bash scripts/demo.sh
#
# The store is stigvault's default (~/.local/share/stigvault/store, or $STIGVAULT_STORE);
# the databases live in a temp dir that is removed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --quiet --bin stigvault --bin stigvault-bench
sv=target/release/stigvault
work=$(mktemp -d "${TMPDIR:-/tmp}/stigvault-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "==> generating a 20 MB stigmem-like database (WAL mode, FTS5, 15 indexes) and a +1% version"
target/release/stigvault-bench --workload-only --size-mb 20 --work-dir "$work" >/dev/null 2>&1
db=$(find "$work" -name base.db)
plus1=$(find "$work" -name plus1.db)

echo "==> push"
"$sv" push --db "$db"
echo "==> push after +1% more facts: only the changed pages are stored"
cp "$plus1" "$work/node.db"
id=$("$sv" push --db "$work/node.db" | tail -n 1)

echo "==> ls"
"$sv" ls

echo "==> pull ${id:0:12} into a fresh file, trusting the node's key"
signer=$("$sv" ls --json | grep -A3 "\"$id\"" | grep signer_pubkey | cut -d'"' -f4)
"$sv" pull "${id:0:12}" --db "$work/restored.db" --trust "$signer"
echo "==> done: restored $(stat -c %s "$work/restored.db") bytes, verified chunk by chunk"
