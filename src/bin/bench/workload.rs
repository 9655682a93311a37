//! The benchmark workload: a stigmem-like SQLite database and the same database with 1% more
//! facts, built deterministically and cached under the work directory.
//!
//! The schema follows the shape of stigmem-node's `facts` table after its migrations: text
//! UUID primary keys (so new rows land all over the B-trees), about fifteen secondary indexes,
//! an FTS5 index kept in sync by triggers, `node_meta` and `schema_migrations`. What matters
//! for a snapshot store is how the file changes between two snapshots, and that is driven by
//! the random keys, the index count and the FTS index, which is why those are reproduced.

use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

/// Bump when the generator changes in a way that changes the files, so stale caches are
/// not reused.
const GENERATOR_VERSION: u32 = 1;

pub const PAGE_SIZE: usize = 4096;

/// Facts are inserted in committed batches of this many; the size check runs between batches,
/// so the fact count for a given size is deterministic.
const BATCH: u64 = 1000;

/// Distinct entities facts are about; several facts per entity, as in a real memory store.
const ENTITY_POOL: u64 = 30_000;

/// The stigmem migration versions our schema stands in for (the file stems stigmem records).
const MIGRATIONS: &[&str] = &[
    "001_init",
    "002_federation",
    "010_scope_propagation",
    "012_multi_tenant",
    "014_federation_trust",
    "017_vec_embeddings",
    "019_recall_audit",
    "026_cid_and_tombstone_key_id",
    "032_fact_interpret_as",
];

/// Our own schema, modelled on the shape of stigmem's: the column set of `facts` after the
/// migrations that matter for size, its indexes, and the FTS5 table with its triggers.
const SCHEMA: &str = r#"
CREATE TABLE schema_migrations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    version    TEXT NOT NULL UNIQUE,
    applied_at TEXT NOT NULL
);
CREATE TABLE node_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE facts (
    id                    TEXT PRIMARY KEY,
    entity                TEXT NOT NULL,
    relation              TEXT NOT NULL,
    value_type            TEXT NOT NULL,
    value_v               TEXT NOT NULL,
    source                TEXT NOT NULL,
    timestamp             TEXT NOT NULL,
    valid_until           TEXT,
    confidence            REAL NOT NULL,
    scope                 TEXT NOT NULL,
    hlc                   TEXT,
    received_from         TEXT,
    origin_node_id        TEXT,
    re_federation_blocked INTEGER NOT NULL DEFAULT 0,
    garden_id             TEXT,
    attested              INTEGER,
    tenant_id             TEXT NOT NULL DEFAULT 'default',
    quarantine_status     TEXT,
    source_trust          REAL,
    embedding_missing     INTEGER,
    cid                   TEXT,
    interpret_as          TEXT NOT NULL DEFAULT 'content'
);
CREATE INDEX fx_entity_relation       ON facts(entity, relation);
CREATE INDEX fx_entity_relation_scope ON facts(entity, relation, scope);
CREATE INDEX fx_scope                 ON facts(scope);
CREATE INDEX fx_timestamp             ON facts(timestamp);
CREATE INDEX fx_valid_until           ON facts(valid_until) WHERE valid_until IS NOT NULL;
CREATE INDEX fx_hlc                   ON facts(hlc) WHERE hlc IS NOT NULL;
CREATE INDEX fx_received_from         ON facts(received_from) WHERE received_from IS NOT NULL;
CREATE INDEX fx_re_federation         ON facts(re_federation_blocked, scope);
CREATE INDEX fx_garden                ON facts(garden_id) WHERE garden_id IS NOT NULL;
CREATE INDEX fx_tenant                ON facts(tenant_id);
CREATE INDEX fx_quarantine            ON facts(quarantine_status) WHERE quarantine_status IS NOT NULL;
CREATE INDEX fx_source_trust          ON facts(source_trust) WHERE source_trust IS NOT NULL;
CREATE INDEX fx_embedding_missing     ON facts(embedding_missing) WHERE embedding_missing = 1;
CREATE INDEX fx_cid                   ON facts(cid) WHERE cid IS NOT NULL;
CREATE INDEX fx_interpret_as          ON facts(interpret_as);
CREATE VIRTUAL TABLE facts_fts USING fts5(
    fact_id UNINDEXED, entity, relation, value_v,
    tokenize = 'unicode61 remove_diacritics 1'
);
CREATE TRIGGER facts_fts_ai AFTER INSERT ON facts BEGIN
    INSERT INTO facts_fts(fact_id, entity, relation, value_v)
    VALUES (new.id, new.entity, new.relation, new.value_v);
END;
CREATE TRIGGER facts_fts_au AFTER UPDATE OF entity, relation, value_v ON facts BEGIN
    DELETE FROM facts_fts WHERE fact_id = old.id;
    INSERT INTO facts_fts(fact_id, entity, relation, value_v)
    VALUES (new.id, new.entity, new.relation, new.value_v);
END;
CREATE TRIGGER facts_fts_ad AFTER DELETE ON facts BEGIN
    DELETE FROM facts_fts WHERE fact_id = old.id;
END;
"#;

const INSERT_FACT: &str = "INSERT INTO facts (id, entity, relation, value_type, value_v, source, \
     timestamp, valid_until, confidence, scope, hlc, received_from, origin_node_id, \
     re_federation_blocked, garden_id, attested, tenant_id, quarantine_status, source_trust, \
     embedding_missing, cid, interpret_as) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
     ?19, ?20, ?21, ?22)";

/// xorshift64*: tiny, fast and reproducible across platforms, which is all a workload needs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // A zero state would stay zero; splitmix the seed so nearby seeds diverge at once.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A random version-4 UUID in its usual text form.
    pub fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(b)
            .into_uuid()
            .hyphenated()
            .to_string()
    }
}

/// What was built, kept beside the databases so a cached workload reports the same figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Workload {
    pub generator_version: u32,
    pub seed: u64,
    pub size_mb: u64,
    pub base_facts: u64,
    pub plus1_facts: u64,
    pub base_bytes: u64,
    pub plus1_bytes: u64,
    pub base_build_secs: f64,
    pub plus1_build_secs: f64,
    pub federation_pubkey: String,
    pub diff: PageDiff,
    #[serde(skip)]
    pub base: PathBuf,
    #[serde(skip)]
    pub plus1: PathBuf,
    #[serde(skip)]
    pub cached: bool,
}

/// How the +1% file differs from the base file, page by page and for coarser fixed chunks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PageDiff {
    pub base_pages: u64,
    pub plus1_pages: u64,
    /// Pages present in both files whose bytes differ.
    pub changed_pages: u64,
    /// Pages past the end of the base file.
    pub appended_pages: u64,
    /// For fixed chunk sizes of 4 KiB … 1 MiB: how many chunks of the +1% file differ from
    /// the base file's chunk at the same offset (appended ones included).
    pub fixed_chunks: Vec<ChunkShare>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChunkShare {
    pub chunk_bytes: u64,
    pub changed: u64,
    pub total: u64,
}

impl PageDiff {
    pub fn changed_or_new(&self) -> u64 {
        self.changed_pages + self.appended_pages
    }

    pub fn share(&self) -> f64 {
        self.changed_or_new() as f64 / self.plus1_pages.max(1) as f64
    }
}

/// Returns the cached workload for these parameters, building it first if needed.
pub fn prepare(work_dir: &Path, size_mb: u64, seed: u64) -> Result<Workload> {
    let dir = work_dir.join(format!(
        "workload-v{GENERATOR_VERSION}-{size_mb}mb-seed{seed:x}"
    ));
    let meta_path = dir.join("workload.json");
    if meta_path.is_file() {
        let text = fs::read_to_string(&meta_path)
            .with_context(|| format!("reading {}", meta_path.display()))?;
        let mut w: Workload = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", meta_path.display()))?;
        w.base = dir.join("base.db");
        w.plus1 = dir.join("plus1.db");
        w.cached = true;
        if w.base.is_file() && w.plus1.is_file() {
            return Ok(w);
        }
        eprintln!(
            "cached workload in {} is incomplete; rebuilding",
            dir.display()
        );
    }

    // Build in a side directory and rename it into place, so an interrupted build is never
    // mistaken for a finished one.
    let partial = work_dir.join(format!(
        "workload-v{GENERATOR_VERSION}-{size_mb}mb-seed{seed:x}.partial"
    ));
    if partial.exists() {
        fs::remove_dir_all(&partial).with_context(|| format!("removing {}", partial.display()))?;
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;

    let base = partial.join("base.db");
    let plus1 = partial.join("plus1.db");
    let target_bytes = size_mb * 1_000_000;

    eprintln!(
        "building a {size_mb} MB stigmem-like database in {} ...",
        dir.display()
    );
    let t = Instant::now();
    let mut gen = FactGen::new(seed);
    let federation_pubkey = create_base(&base, &mut gen, target_bytes)?;
    let base_build_secs = t.elapsed().as_secs_f64();
    let base_facts = gen.made;
    eprintln!("  base: {base_facts} facts in {base_build_secs:.1} s");

    // The +1% step continues the same fact stream (later timestamps, fresh random ids), as a
    // node that kept running would.
    let t = Instant::now();
    fs::copy(&base, &plus1)
        .with_context(|| format!("copying {} to {}", base.display(), plus1.display()))?;
    let extra = base_facts.div_ceil(100);
    add_facts(&plus1, &mut gen, extra)?;
    let plus1_build_secs = t.elapsed().as_secs_f64();
    eprintln!("  +1%: {extra} more facts in {plus1_build_secs:.1} s");

    let diff = page_diff(&base, &plus1)?;
    let mut w = Workload {
        generator_version: GENERATOR_VERSION,
        seed,
        size_mb,
        base_facts,
        plus1_facts: base_facts + extra,
        base_bytes: fs::metadata(&base)?.len(),
        plus1_bytes: fs::metadata(&plus1)?.len(),
        base_build_secs,
        plus1_build_secs,
        federation_pubkey,
        diff,
        base: PathBuf::new(),
        plus1: PathBuf::new(),
        cached: false,
    };
    fs::write(
        partial.join("workload.json"),
        serde_json::to_string_pretty(&w)?,
    )?;
    fs::rename(&partial, &dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    w.base = dir.join("base.db");
    w.plus1 = dir.join("plus1.db");
    Ok(w)
}

fn open_for_build(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.execute_batch(
        "PRAGMA synchronous = OFF;
         PRAGMA cache_size = -131072;
         PRAGMA temp_store = MEMORY;",
    )?;
    Ok(conn)
}

/// Folds the WAL into the main file and drops it, so each database is one self-contained
/// file: restic backs up only that file, and both tools must see the same bytes.
fn close_checkpointed(conn: Connection, path: &Path) -> Result<()> {
    let (busy, _, _): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if busy != 0 {
        bail!("checkpoint of {} was blocked", path.display());
    }
    conn.close()
        .map_err(|(_, e)| e)
        .with_context(|| format!("closing {}", path.display()))?;
    Ok(())
}

/// Creates the base database and fills it until it reaches `target_bytes`. Returns the
/// node's federation public key.
fn create_base(path: &Path, gen: &mut FactGen, target_bytes: u64) -> Result<String> {
    let mut conn = open_for_build(path)?;
    // page_size must precede the first write; WAL as stigmem runs it.
    conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE};"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("{}: journal_mode is {mode}, expected wal", path.display());
    }
    conn.execute_batch(SCHEMA)
        .context("creating the schema (does the bundled SQLite have FTS5?)")?;

    let mut rng = Rng::new(gen.seed ^ 0x6e6f_6465);
    let tx = conn.transaction()?;
    for (i, version) in MIGRATIONS.iter().enumerate() {
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, iso(gen.epoch - 86_400 + i as i64 * 60, 0)],
        )?;
    }
    // A node that has run has an identity; stigmem creates these entries on first use. They
    // are made here so both databases carry the same identity and no tool has to write one.
    let mut secret = [0u8; 32];
    for c in secret.chunks_mut(8) {
        c.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    let key = ed25519_dalek::SigningKey::from_bytes(&secret);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let pubkey = b64.encode(key.verifying_key().to_bytes());
    let node_id = format!("stigmem:node:{}", rng.uuid());
    for (k, v) in [
        ("node_id", node_id),
        ("federation_pubkey", pubkey.clone()),
        ("federation_privkey", b64.encode(secret)),
    ] {
        tx.execute(
            "INSERT INTO node_meta (key, value) VALUES (?1, ?2)",
            params![k, v],
        )?;
    }
    tx.commit()?;

    loop {
        insert_batch(&mut conn, gen, BATCH)?;
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let pages = pages as u64;
        if pages * PAGE_SIZE as u64 >= target_bytes {
            break;
        }
        if gen.made % 20_000 == 0 {
            eprintln!(
                "  {} facts, {:.0} MB",
                gen.made,
                (pages * PAGE_SIZE as u64) as f64 / 1e6
            );
        }
    }
    close_checkpointed(conn, path)?;
    Ok(pubkey)
}

/// Adds `n` facts to the database at `path`, from a generator seeded with `seed`; the
/// copy-verify case grows its series of +1% snapshots this way.
pub fn grow(path: &Path, seed: u64, n: u64) -> Result<()> {
    add_facts(path, &mut FactGen::new(seed), n)
}

fn add_facts(path: &Path, gen: &mut FactGen, n: u64) -> Result<()> {
    let mut conn = open_for_build(path)?;
    let mut left = n;
    while left > 0 {
        let k = left.min(BATCH);
        insert_batch(&mut conn, gen, k)?;
        left -= k;
    }
    close_checkpointed(conn, path)
}

fn insert_batch(conn: &mut Connection, gen: &mut FactGen, n: u64) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(INSERT_FACT)?;
        for _ in 0..n {
            let f = gen.next();
            stmt.execute(params![
                f.id,
                f.entity,
                f.relation,
                f.value_type,
                f.value_v,
                f.source,
                f.timestamp,
                f.valid_until,
                f.confidence,
                f.scope,
                f.hlc,
                f.received_from,
                f.origin_node_id,
                f.re_federation_blocked,
                f.garden_id,
                f.attested,
                f.tenant_id,
                f.quarantine_status,
                f.source_trust,
                f.embedding_missing,
                f.cid,
                f.interpret_as,
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn iso(secs: i64, micros: u32) -> String {
    chrono::DateTime::from_timestamp(secs, micros * 1000)
        .expect("workload timestamps are within chrono's range")
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

struct Fact {
    id: String,
    entity: String,
    relation: &'static str,
    value_type: &'static str,
    value_v: String,
    source: String,
    timestamp: String,
    valid_until: Option<String>,
    confidence: f64,
    scope: &'static str,
    hlc: String,
    received_from: Option<String>,
    origin_node_id: Option<String>,
    re_federation_blocked: i64,
    garden_id: Option<String>,
    attested: Option<i64>,
    tenant_id: &'static str,
    quarantine_status: Option<&'static str>,
    source_trust: Option<f64>,
    embedding_missing: Option<i64>,
    cid: Option<String>,
    interpret_as: &'static str,
}

const KINDS: &[&str] = &[
    "user", "project", "doc", "repo", "service", "team", "meeting", "ticket",
];

const RELATIONS: &[&str] = &[
    "mentions",
    "works_on",
    "status",
    "summary",
    "prefers",
    "owner",
    "depends_on",
    "decided",
    "note",
    "located_in",
    "member_of",
    "blocked_by",
    "deadline",
    "priority",
    "language",
    "uses_tool",
    "reviewed_by",
    "related_to",
    "opinion",
    "last_seen",
    "email",
    "title",
    "description",
    "observed",
];

const SYLLABLES: &[&str] = &[
    "ka", "to", "ri", "mes", "lan", "dor", "vi", "sel", "pra", "qu", "ent", "ol", "mar", "tis",
    "ne", "bu", "ghe", "zo", "fin", "al", "stra", "por", "ce", "dy", "wen", "ix", "hu", "lo",
];

/// Generates facts in a fixed order from a seed.
struct FactGen {
    seed: u64,
    rng: Rng,
    words: Vec<String>,
    sources: Vec<String>,
    peers: Vec<String>,
    gardens: Vec<String>,
    /// Unix seconds of the first fact.
    epoch: i64,
    made: u64,
}

impl FactGen {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let words = (0..4096)
            .map(|_| {
                let n = 1 + rng.below(4) as usize;
                (0..n)
                    .map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize])
                    .collect::<String>()
            })
            .collect();
        let sources = (0..200)
            .map(|i| match i % 4 {
                0 => format!("agent:session-{}", rng.uuid()),
                1 => format!("user:{}", SYLLABLES[i % SYLLABLES.len()]),
                2 => format!("import:slack/{}", rng.below(10_000)),
                _ => format!("stigmem://acme/service/ingest-{i}"),
            })
            .collect();
        let peers = (0..5)
            .map(|_| format!("stigmem:node:{}", rng.uuid()))
            .collect();
        let gardens = (0..20).map(|_| rng.uuid()).collect();
        FactGen {
            seed,
            rng,
            words,
            sources,
            peers,
            gardens,
            epoch: 1_735_689_600, // 2025-01-01T00:00:00Z
            made: 0,
        }
    }

    /// A word, skewed towards the front of the vocabulary as real text is.
    fn word(&mut self) -> &str {
        let a = self.rng.below(4096);
        let b = self.rng.below(4096);
        &self.words[(a * b / 4096) as usize]
    }

    fn words(&mut self, n: u64) -> String {
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            let w = self.word().to_owned();
            s.push_str(&w);
        }
        s
    }

    fn entity(&mut self) -> String {
        let idx = self.rng.below(ENTITY_POOL);
        let name = &self.words[(idx.wrapping_mul(2_654_435_761) % 4096) as usize];
        format!(
            "stigmem://acme/{}/{name}-{idx}",
            KINDS[(idx % KINDS.len() as u64) as usize]
        )
    }

    fn next(&mut self) -> Fact {
        let i = self.made;
        self.made += 1;
        let r = &mut self.rng;
        // About one fact every 30 s on average, with jitter; HLC follows the wall clock.
        let secs = self.epoch + (i * 30) as i64 + r.below(30) as i64;
        let micros = r.below(1_000_000) as u32;
        let timestamp = iso(secs, micros);
        let hlc = format!("{}.{}", secs * 1000 + (micros / 1000) as i64, r.below(3));
        let id = r.uuid();

        let kind = r.below(100);
        let (value_type, nwords) = match kind {
            0..45 => ("string", 2 + r.below(8)),
            45..70 => ("text", 25 + r.below(80)),
            70..82 => ("number", 0),
            82..87 => ("boolean", 0),
            87..95 => ("datetime", 0),
            _ => ("ref", 0),
        };
        let value_v = match value_type {
            "number" => format!("{:.3}", self.rng.unit() * 10_000.0),
            "boolean" => if self.rng.chance(0.5) {
                "true"
            } else {
                "false"
            }
            .to_owned(),
            "datetime" => iso(secs + self.rng.below(90 * 86_400) as i64, 0),
            "ref" => self.entity(),
            _ => self.words(nwords),
        };
        let entity = self.entity();
        let r = &mut self.rng;
        // Relations are skewed too: a few are very common.
        let rel = (r.below(RELATIONS.len() as u64) * r.below(RELATIONS.len() as u64))
            / RELATIONS.len() as u64;
        let relation = RELATIONS[rel as usize];
        let source = self.sources[r.below(self.sources.len() as u64) as usize].clone();
        let valid_until = r
            .chance(0.1)
            .then(|| iso(secs + (30 + r.below(335)) as i64 * 86_400, 0));
        let confidence = 0.5 + r.unit() * 0.5;
        let scope = match r.below(20) {
            0..12 => "local",
            12..17 => "team",
            17..19 => "company",
            _ => "public",
        };
        let received_from = r
            .chance(0.15)
            .then(|| self.peers[r.below(self.peers.len() as u64) as usize].clone());
        let origin_node_id = received_from.clone();
        let re_federation_blocked = i64::from(r.chance(0.05));
        let garden_id = r
            .chance(0.2)
            .then(|| self.gardens[r.below(self.gardens.len() as u64) as usize].clone());
        let attested = match r.below(3) {
            0 => None,
            n => Some(n as i64 - 1),
        };
        let tenant_id = match r.below(20) {
            0 => "tenant-b",
            1 => "tenant-c",
            _ => "default",
        };
        let quarantine_status = r.chance(0.01).then_some("pending");
        let source_trust = r.chance(0.3).then(|| r.unit());
        let embedding_missing = r.chance(0.05).then_some(1);
        let cid = r.chance(0.7).then(|| {
            const B32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
            let mut s = String::from("bafkrei");
            for _ in 0..52 {
                s.push(B32[r.below(32) as usize] as char);
            }
            s
        });
        let interpret_as = if r.chance(0.03) {
            "instruction"
        } else {
            "content"
        };
        Fact {
            id,
            entity,
            relation,
            value_type,
            value_v,
            source,
            timestamp,
            valid_until,
            confidence,
            scope,
            hlc,
            received_from,
            origin_node_id,
            re_federation_blocked,
            garden_id,
            attested,
            tenant_id,
            quarantine_status,
            source_trust,
            embedding_missing,
            cid,
            interpret_as,
        }
    }
}

/// Compares two files page by page, and for a few coarser fixed chunk sizes.
pub fn page_diff(a: &Path, b: &Path) -> Result<PageDiff> {
    const CHUNKS: [u64; 5] = [4096, 16 << 10, 64 << 10, 256 << 10, 1 << 20];
    let mut ra = BufReader::with_capacity(1 << 20, fs::File::open(a)?);
    let mut rb = BufReader::with_capacity(1 << 20, fs::File::open(b)?);
    let len_a = fs::metadata(a)?.len();
    let len_b = fs::metadata(b)?.len();
    let pages_a = len_a.div_ceil(PAGE_SIZE as u64);
    let pages_b = len_b.div_ceil(PAGE_SIZE as u64);

    let mut changed_pages = 0;
    let mut appended_pages = 0;
    // Chunk i of size CHUNKS[k] changed if any of its pages did.
    let mut chunk_changed: Vec<Vec<bool>> = CHUNKS
        .iter()
        .map(|&c| vec![false; len_b.div_ceil(c) as usize])
        .collect();
    let mut pa = vec![0u8; PAGE_SIZE];
    let mut pb = vec![0u8; PAGE_SIZE];
    for page in 0..pages_b {
        let nb = read_page(&mut rb, &mut pb)?;
        let differs = if page < pages_a {
            let na = read_page(&mut ra, &mut pa)?;
            let d = pa[..na] != pb[..nb];
            changed_pages += u64::from(d);
            d
        } else {
            appended_pages += 1;
            true
        };
        if differs {
            let off = page * PAGE_SIZE as u64;
            for (k, &c) in CHUNKS.iter().enumerate() {
                chunk_changed[k][(off / c) as usize] = true;
            }
        }
    }
    let fixed_chunks = CHUNKS
        .iter()
        .zip(&chunk_changed)
        .map(|(&c, v)| ChunkShare {
            chunk_bytes: c,
            changed: v.iter().filter(|&&x| x).count() as u64,
            total: v.len() as u64,
        })
        .collect();
    Ok(PageDiff {
        base_pages: pages_a,
        plus1_pages: pages_b,
        changed_pages,
        appended_pages,
        fixed_chunks,
    })
}

fn read_page(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = r.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

/// Fact count, as a cheap check that a restored database holds what was pushed.
pub fn count_facts(path: &Path) -> Result<u64> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", path.display()))?;
    let n: i64 = conn.query_row("SELECT count(*) FROM facts", [], |r| r.get(0))?;
    Ok(n as u64)
}

/// Reads `node_meta.federation_pubkey`, if the table and key exist.
pub fn federation_pubkey(path: &Path) -> Result<Option<String>> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", path.display()))?;
    let r = conn.query_row(
        "SELECT value FROM node_meta WHERE key = 'federation_pubkey'",
        [],
        |r| r.get(0),
    );
    match r {
        Ok(v) => Ok(Some(v)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading node_meta in {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_uuids_are_v4() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let u = a.uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'4');
        assert!(uuid::Uuid::parse_str(&u).is_ok());
    }
}
