"""Regenerate the manifest known-answer vectors by running stigmem's own snapshot_create.

Usage (Python 3.11, `cryptography` installed, stigmem-node 0.9.0a12 source unpacked):

    PYTHONPATH=/tmp/stig/stigmem_node-0.9.0a12/src python3 tests/vectors/gen_manifest_vectors.py

stigmem's node-id lookup and its clock are replaced with fixed values so the output is
stable; everything else (hashing, canonical body, signing, json.dumps) is stigmem's code.
The signing key is the seed bytes 0..31, given through a --sign-with key file.
"""

import base64
import json
import sqlite3
import sys
import tarfile
import tempfile
import types
from datetime import UTC, datetime
from pathlib import Path

import stigmem_node.snapshot as snapshot

OUT = Path(__file__).resolve().parent

CASES = {
    "manifest_ascii": (
        datetime(2026, 11, 26, 15, 20, 23, 21365, tzinfo=UTC),
        "stigmem:node:6f1c0a52-3b7e-4d2a-9c1e-5a8f0b2d4e61",
    ),
    "manifest_unicode": (
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        'caf\u00e9 \u65e5\u672c \U0001F600 \U0001D11E "q"\\/\t\x7f',
    ),
}


def run(name, when, node_id, work):
    class FixedClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return when

    fake_db = types.ModuleType("stigmem_node.db")
    fake_db.get_or_create_node_id = lambda db_path=None: node_id
    sys.modules["stigmem_node.db"] = fake_db
    snapshot.datetime = FixedClock

    db = work / f"{name}.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE schema_migrations (version TEXT NOT NULL UNIQUE)")
    conn.executemany("INSERT INTO schema_migrations VALUES (?)", [("0002",), ("0001",)])
    conn.commit()
    conn.close()

    key = work / "key"
    key.write_text(base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=") + "\n")
    out = snapshot.snapshot_create(str(db), out_path=work / f"{name}.tar.gz",
                                   sign_with_key_path=key)
    with tarfile.open(out) as tf:
        manifest = tf.extractfile("manifest.json").read()
        cursor = tf.extractfile("artifacts/schema_migration_cursor.json").read()
    (OUT / f"{name}.json").write_bytes(manifest)
    return cursor


def extra_fields():
    """A manifest from a hypothetical newer writer: unknown fields (one of them nested, with
    floats) sit in the signed body. Signed the way snapshot_create signs, through stigmem's
    own canonical-body helper."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    base = json.loads((OUT / "manifest_ascii.json").read_bytes())
    del base["signature"]
    base["comment"] = "r\u00e9sum\u00e9"
    base["future"] = {"b": [1.5, 1e16, 0.0001, -7], "a": {}, "Z": None}
    base["artifacts"]["artifacts/extra.bin"] = "sha256:" + "ab" * 32
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    sig = key.sign(snapshot._canonical_manifest_body(base))
    base["signature"] = snapshot._b64url_encode(sig)
    (OUT / "manifest_extra_fields.json").write_text(json.dumps(base, indent=2))


with tempfile.TemporaryDirectory() as tmp:
    for name, (when, node_id) in CASES.items():
        cursor = run(name, when, node_id, Path(tmp))
    (OUT / "cursor_0001_0002.json").write_bytes(cursor)
extra_fields()
