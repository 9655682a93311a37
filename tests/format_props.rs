//! Property tests for the on-store encodings: round trips, and decoders that refuse arbitrary
//! or mutated bytes with an error instead of panicking or allocating without bound.

use proptest::prelude::*;
use stigvault::format::id::{ChunkId, PackId, SnapshotId};
use stigvault::format::index::{decode_checkpoint, Entry};
use stigvault::format::pack::{parse_trailer, PackBuilder};
use stigvault::format::recipe::{Location, Locations, Recipe};
use stigvault::format::snapshot::SnapshotRoot;

fn recipe_strategy() -> impl Strategy<Value = Recipe> {
    (
        prop::sample::select(vec![512u32, 1024, 4096, 65536]),
        1u32..4,
        0u64..200_000,
    )
        .prop_map(|(page, pages, db_bytes)| {
            let chunk_size = page * pages;
            let n = db_bytes.div_ceil(chunk_size as u64);
            Recipe {
                db_bytes,
                page_size: page,
                chunk_size,
                chunks: (0..n).map(|i| ChunkId::of(&i.to_le_bytes())).collect(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn recipe_round_trips(r in recipe_strategy()) {
        prop_assert_eq!(Recipe::decode(&r.encode(), "r").unwrap(), r);
    }

    #[test]
    fn locations_round_trip(rows in prop::collection::vec((any::<[u8; 32]>(), 0u8..5, any::<u32>(), any::<u32>(), any::<u32>()), 0..50)) {
        let mut l = Locations::default();
        for (c, p, offset, stored_len, raw_len) in rows {
            l.map.insert(ChunkId::from_bytes(c), Location { pack: PackId::of(&[p]), offset, stored_len, raw_len });
        }
        prop_assert_eq!(Locations::decode(&l.encode(), "l").unwrap(), l);
    }

    #[test]
    fn packs_round_trip(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..20)) {
        let mut b = PackBuilder::new(0);
        for c in &chunks {
            b.add(ChunkId::of(c), &zstd::bulk::compress(c, 3).unwrap(), c.len() as u32);
        }
        let p = b.finish();
        prop_assert_eq!(parse_trailer(&p.bytes, "p").unwrap(), p.entries);
    }

    /// Random bytes behind each header: every decoder answers with an error, never a panic.
    #[test]
    fn decoders_refuse_garbage(tag in 0usize..6, body in prop::collection::vec(any::<u8>(), 0..400)) {
        let headers: [&[u8; 8]; 6] = [b"SVRCPE\0\x01", b"SVLOCS\0\x01", b"SVPACK\0\x01", b"SVSNAP\0\x01", b"SVENTR\0\x01", b"SVCKPT\0\x01"];
        let mut obj = headers[tag].to_vec();
        obj.extend_from_slice(&body);
        let _ = Recipe::decode(&obj, "x");
        let _ = Locations::decode(&obj, "x");
        let _ = parse_trailer(&obj, "x");
        let _ = SnapshotRoot::decode_verified(&obj, &SnapshotId::of(&obj));
        let _ = Entry::verify("index/entries/0000000000001-00", &obj);
        let _ = decode_checkpoint("index/checkpoints/0000000001-00", &obj);
    }
}
