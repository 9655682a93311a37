//! forget and prune: retiring snapshots by signed tombstones.
//!
//! Forgetting never deletes anything. It appends a signed [`EntryKind::Forget`] entry (a
//! tombstone) to the index; from then on the snapshot is not live: `ls`, `pull` and the
//! dedup of later pushes ignore it, while [`Index::forgotten`] still names it, so `verify`
//! can tell a forgotten snapshot from a missing one. The data goes later, in [`crate::gc`].
//!
//! prune decides which snapshots to forget with restic-style keep rules, per node, on the
//! manifest's `created_at` (in UTC). [`plan`] is that decision as a pure function.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::error::{Error, Result};
use crate::format::index::{Entry, EntryBody, EntryKind};
use crate::index::{ClientState, Index};
use crate::sign::SecretKey;
use crate::store::Store;

/// How many snapshots each rule keeps. A snapshot is kept if any rule keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeepPolicy {
    /// The newest `last` snapshots.
    pub last: u32,
    /// The newest snapshot of each of the `hourly` most recent hours that have one.
    pub hourly: u32,
    /// The same per day.
    pub daily: u32,
    /// The same per ISO week.
    pub weekly: u32,
    /// The same per calendar month.
    pub monthly: u32,
}

impl KeepPolicy {
    /// True when no rule keeps anything.
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
    }
}

/// One snapshot as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Snapshot id (hex).
    pub id: String,
    /// The node it belongs to.
    pub node_id: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// Snapshot id (hex).
    pub id: String,
    /// The node it belongs to.
    pub node_id: String,
    /// When it was taken (RFC 3339, UTC).
    pub created_at: String,
    /// Kept by at least one rule.
    pub keep: bool,
    /// The rules that keep it ("last", "hourly", "daily", "weekly", "monthly").
    pub reasons: Vec<&'static str>,
}

/// Apply `policy` to `snapshots`, each node on its own. The result lists every snapshot,
/// grouped by node (nodes in sorted order), newest first within a node. Equal timestamps are
/// ordered by id, so the outcome does not depend on the input order.
pub fn plan(snapshots: &[Candidate], policy: &KeepPolicy) -> Result<Vec<Decision>> {
    if policy.is_empty() {
        return Err(Error::EmptyRetentionPolicy);
    }
    let mut by_node: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for s in snapshots {
        by_node.entry(s.node_id.as_str()).or_default().push(s);
    }
    let mut out = Vec::with_capacity(snapshots.len());
    for (_, mut group) in by_node {
        group.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        // One bucket function per rule; a snapshot is kept by a rule when it is the newest in
        // a bucket not seen yet and the rule still has room.
        type Bucket = fn(&DateTime<Utc>) -> i64;
        let rules: [(&'static str, u32, Bucket); 5] = [
            ("last", policy.last, |_| 0),
            ("hourly", policy.hourly, |t| t.timestamp().div_euclid(3600)),
            ("daily", policy.daily, |t| {
                i64::from(t.year()) * 1000 + i64::from(t.ordinal())
            }),
            ("weekly", policy.weekly, |t| {
                let w = t.iso_week();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }),
            ("monthly", policy.monthly, |t| {
                i64::from(t.year()) * 100 + i64::from(t.month())
            }),
        ];
        let mut left: Vec<u32> = rules.iter().map(|r| r.1).collect();
        let mut last_bucket: Vec<Option<i64>> = vec![None; rules.len()];
        for s in group {
            let mut reasons = Vec::new();
            for (i, (name, _, bucket)) in rules.iter().enumerate() {
                if left[i] == 0 {
                    continue;
                }
                // keep-last counts snapshots, not buckets.
                let b = if i == 0 {
                    None
                } else {
                    Some(bucket(&s.created_at))
                };
                if i == 0 || b != last_bucket[i] {
                    last_bucket[i] = b;
                    left[i] -= 1;
                    reasons.push(*name);
                }
            }
            out.push(Decision {
                id: s.id.clone(),
                node_id: s.node_id.clone(),
                created_at: s.created_at.to_rfc3339(),
                keep: !reasons.is_empty(),
                reasons,
            });
        }
    }
    Ok(out)
}

/// Parse a manifest `created_at` (Python `isoformat()` of an aware datetime, which is
/// RFC 3339); fall back to the entry's write time when it does not parse.
pub fn created_at_of(entry: &Entry) -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(&entry.body.created_at) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => {
            tracing::warn!(
                snapshot = %entry.body.snapshot,
                created_at = %entry.body.created_at,
                "created_at does not parse; using the index entry's write time"
            );
            Utc.timestamp_millis_opt(entry.body.written_at_ms as i64)
                .single()
                .unwrap_or_default()
        }
    }
}

/// What forget or prune did (or, with `dry_run`, would do).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForgetReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// The key that signed (or would sign) the tombstones (base64url).
    pub signer_pubkey: String,
    /// Snapshots forgotten (or to be forgotten).
    pub forgotten: Vec<String>,
    /// Index keys of the tombstones written.
    pub tombstones: Vec<String>,
    /// prune only: the verdict on every snapshot considered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<Decision>,
}

/// Forget the snapshots `queries` name (ids or unique prefixes): one signed tombstone each.
/// Every query is resolved before anything is written, so a typo forgets nothing.
pub async fn forget(
    store: &Store,
    state: &ClientState,
    queries: &[String],
    key: &SecretKey,
    dry_run: bool,
) -> Result<ForgetReport> {
    let mut index = Index::load(store, state).await?;
    let mut targets: Vec<Entry> = Vec::new();
    let mut seen = HashSet::new();
    for q in queries {
        let (id, e) = index.resolve(q)?;
        if seen.insert(id) {
            targets.push(e.clone());
        }
    }
    write_tombstones(store, state, &mut index, targets, key, dry_run, Vec::new()).await
}

/// Forget every live snapshot that `policy` does not keep, per node; only the snapshots of
/// `node` when given.
pub async fn prune(
    store: &Store,
    state: &ClientState,
    policy: &KeepPolicy,
    node: Option<&str>,
    key: &SecretKey,
    dry_run: bool,
) -> Result<ForgetReport> {
    let mut index = Index::load(store, state).await?;
    let live: Vec<&Entry> = index
        .snapshots()
        .into_iter()
        .filter(|e| node.is_none_or(|n| e.body.node_id == n))
        .collect();
    let candidates: Vec<Candidate> = live
        .iter()
        .map(|e| Candidate {
            id: e.body.snapshot.clone(),
            node_id: e.body.node_id.clone(),
            created_at: created_at_of(e),
        })
        .collect();
    let decisions = plan(&candidates, policy)?;
    let drop: HashSet<&str> = decisions
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.id.as_str())
        .collect();
    let targets: Vec<Entry> = live
        .into_iter()
        .filter(|e| drop.contains(e.body.snapshot.as_str()))
        .cloned()
        .collect();
    write_tombstones(store, state, &mut index, targets, key, dry_run, decisions).await
}

async fn write_tombstones(
    store: &Store,
    state: &ClientState,
    index: &mut Index,
    targets: Vec<Entry>,
    key: &SecretKey,
    dry_run: bool,
    decisions: Vec<Decision>,
) -> Result<ForgetReport> {
    let signer = key.public().to_b64url();
    let mut report = ForgetReport {
        dry_run,
        signer_pubkey: signer.clone(),
        forgotten: targets.iter().map(|e| e.body.snapshot.clone()).collect(),
        tombstones: Vec::new(),
        decisions,
    };
    if dry_run {
        return Ok(report);
    }
    for e in targets {
        let body = EntryBody {
            kind: EntryKind::Forget,
            snapshot: e.body.snapshot.clone(),
            created_at: e.body.created_at.clone(),
            node_id: e.body.node_id.clone(),
            signer_pubkey: signer.clone(),
            db_sha256: e.body.db_sha256.clone(),
            db_bytes: e.body.db_bytes,
            new_bytes: 0,
            parents: Vec::new(),
            written_at_ms: 0,
        };
        let t = index.append(store, state, body, key).await?;
        tracing::info!(snapshot = %e.body.snapshot, tombstone = %t.key, "forgot");
        report.tombstones.push(t.key);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn snap(id: &str, node: &str, t: &str) -> Candidate {
        Candidate {
            id: id.into(),
            node_id: node.into(),
            created_at: at(t),
        }
    }

    fn kept(d: &[Decision]) -> Vec<&str> {
        d.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect()
    }

    /// A synthetic timeline: every 6 hours for 70 days, from 2026-01-01 (a Thursday).
    fn timeline(node: &str) -> Vec<Candidate> {
        let start = at("2026-01-01T00:00:00+00:00");
        (0..70 * 4)
            .map(|i| Candidate {
                id: format!("{node}-{i:04}"),
                node_id: node.into(),
                created_at: start + chrono::Duration::hours(6 * i),
            })
            .collect()
    }

    #[test]
    fn empty_policy_is_refused() {
        assert!(matches!(
            plan(&timeline("a"), &KeepPolicy::default()),
            Err(Error::EmptyRetentionPolicy)
        ));
    }

    #[test]
    fn keep_last() {
        let p = KeepPolicy {
            last: 3,
            ..Default::default()
        };
        let d = plan(&timeline("a"), &p).unwrap();
        assert_eq!(kept(&d), ["a-0279", "a-0278", "a-0277"]);
        assert_eq!(d.len(), 280);
    }

    #[test]
    fn keep_daily_takes_the_newest_of_each_day() {
        let p = KeepPolicy {
            daily: 3,
            ..Default::default()
        };
        let d = plan(&timeline("a"), &p).unwrap();
        // Day 69 holds 276..279; the newest of each of the last three days.
        assert_eq!(kept(&d), ["a-0279", "a-0275", "a-0271"]);
        assert!(d.iter().filter(|d| d.keep).all(|d| d.reasons == ["daily"]));
    }

    #[test]
    fn keep_hourly_counts_hours_with_snapshots_only() {
        let p = KeepPolicy {
            hourly: 2,
            ..Default::default()
        };
        // Snapshots 6 hours apart: two hourly slots reach back two snapshots, not 2 hours.
        assert_eq!(
            kept(&plan(&timeline("a"), &p).unwrap()),
            ["a-0279", "a-0278"]
        );
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        // 2026-01-01 is a Thursday in ISO week 2026-W01; Sunday 2026-01-04 closes it and
        // Monday 2026-01-05 opens W02.
        let s = vec![
            snap("thu", "n", "2026-01-01T10:00:00+00:00"),
            snap("sun", "n", "2026-01-04T23:59:59+00:00"),
            snap("mon", "n", "2026-01-05T00:00:00+00:00"),
            snap("tue", "n", "2026-01-06T00:00:00+00:00"),
        ];
        let p = KeepPolicy {
            weekly: 5,
            ..Default::default()
        };
        assert_eq!(kept(&plan(&s, &p).unwrap()), ["tue", "sun"]);
    }

    #[test]
    fn keep_monthly_and_combined_rules() {
        let p = KeepPolicy {
            last: 2,
            daily: 7,
            weekly: 4,
            monthly: 3,
            ..Default::default()
        };
        let d = plan(&timeline("a"), &p).unwrap();
        let k = kept(&d);
        // Months: Mar (newest 0279), Feb (last of Feb 28 = day 58 → 4*58+3 = 0235),
        // Jan (day 30 → 0123).
        for id in ["a-0279", "a-0278", "a-0235", "a-0123"] {
            assert!(k.contains(&id), "{id} not kept: {k:?}");
        }
        let first = d.iter().find(|x| x.id == "a-0279").unwrap();
        assert_eq!(first.reasons, ["last", "daily", "weekly", "monthly"]);
        // 2 last (one shares a day) + 7 days + 4 weeks (one shares the newest) + 3 months,
        // minus overlaps: count by brute force instead of by hand.
        let mut expect = HashSet::new();
        let tl = timeline("a");
        let newest_per = |key: &dyn Fn(&DateTime<Utc>) -> i64, n: usize| {
            let mut seen = Vec::new();
            let mut ids = Vec::new();
            for c in tl.iter().rev() {
                let b = key(&c.created_at);
                if !seen.contains(&b) && seen.len() < n {
                    seen.push(b);
                    ids.push(c.id.clone());
                }
            }
            ids
        };
        expect.extend(newest_per(&|_| 0, 1));
        expect.insert("a-0278".to_string());
        expect.extend(newest_per(&|t| t.timestamp().div_euclid(86400), 7));
        expect.extend(newest_per(
            &|t| i64::from(t.iso_week().year()) * 100 + i64::from(t.iso_week().week()),
            4,
        ));
        expect.extend(newest_per(
            &|t| i64::from(t.year()) * 100 + i64::from(t.month()),
            3,
        ));
        let got: HashSet<String> = k.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn nodes_are_pruned_independently_and_input_order_does_not_matter() {
        let mut s = timeline("a");
        s.extend(timeline("b").into_iter().take(10));
        let p = KeepPolicy {
            last: 2,
            ..Default::default()
        };
        let d = plan(&s, &p).unwrap();
        assert_eq!(kept(&d), ["a-0279", "a-0278", "b-0009", "b-0008"]);
        s.reverse();
        assert_eq!(plan(&s, &p).unwrap(), d);
        // Equal timestamps: decided by id, whatever the order given.
        let t = "2026-05-05T05:05:05+00:00";
        let mut same = vec![snap("x1", "n", t), snap("x2", "n", t)];
        let one = KeepPolicy {
            last: 1,
            ..Default::default()
        };
        let a = plan(&same, &one).unwrap();
        same.reverse();
        assert_eq!(plan(&same, &one).unwrap(), a);
        assert_eq!(kept(&a), ["x2"]);
    }
}
