//! Log recovery on arbitrary segment files: `FileLog::open` either refuses with a
//! `Corruption` error (naming file and offset) or recovers dense LSNs from 1 per space,
//! each readable back byte for byte; and opening again recovers exactly the same.
//!
//! Input: byte 0 picks the layout (bit 0: prepend a valid segment header; bit 1: split
//! into two segments at byte 1's fraction, each with a header), the rest is the content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnemo_engine::LogConfig;
use mnemo_engine::internals::{CommitSink, Committed, FileLog, Log};
use mnemo_engine::{Error, SpaceNo};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

const HEADER: &[u8; 16] = b"MNEMOLOG\x01\0\0\0\0\0\0\0";

struct NoSink;
impl CommitSink for NoSink {
    fn committed(&self, _: &[Committed<'_>]) {}
}

type Recovered = BTreeMap<(u32, u64), Vec<u8>>;

fn open(dir: &Path) -> Result<(FileLog, Recovered), Error> {
    let live: HashSet<SpaceNo> = (0..4).map(SpaceNo).collect();
    let mut got = Recovered::new();
    let mut take = |c: Committed<'_>| {
        got.insert((c.space.0, c.lsn), c.body.to_vec());
    };
    let cfg = LogConfig {
        durability: mnemo_engine::Durability::Buffered,
        min_free_bytes: 0,
        ..LogConfig::default()
    };
    let log = FileLog::open(dir, cfg, &live, &mut take, Arc::new(NoSink))?;
    Ok((log, got))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let base = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    };
    let Ok(dir) = base else { return };
    let with_header = |body: &[u8]| {
        let mut v = Vec::with_capacity(body.len() + 16);
        if mode & 1 == 1 {
            v.extend_from_slice(HEADER);
        }
        v.extend_from_slice(body);
        v
    };
    if mode & 2 == 2 && !rest.is_empty() {
        let cut = rest[0] as usize * (rest.len() - 1) / 255 + 1;
        let (a, b) = rest[1..].split_at((cut - 1).min(rest.len() - 1));
        std::fs::write(dir.path().join("0000000000.seg"), with_header(a)).unwrap();
        std::fs::write(dir.path().join("0000000001.seg"), with_header(b)).unwrap();
    } else {
        std::fs::write(dir.path().join("0000000000.seg"), with_header(rest)).unwrap();
    }

    match open(dir.path()) {
        Err(Error::Corruption { path, .. }) => {
            assert!(path.starts_with(dir.path()), "the error names a log file");
        }
        Err(e) => panic!("recovery failed with something else than Corruption: {e}"),
        Ok((log, got)) => {
            // Dense LSNs from 1 per space, and every record reads back as recovered.
            let mut next: BTreeMap<u32, u64> = BTreeMap::new();
            for ((space, lsn), body) in &got {
                let n = next.entry(*space).or_insert(1);
                assert_eq!(*lsn, *n, "space {space}: LSNs are dense");
                *n += 1;
                assert_eq!(&log.read(SpaceNo(*space), *lsn).unwrap(), body);
            }
            for (space, n) in &next {
                assert_eq!(log.last_lsn(SpaceNo(*space)), Some(n - 1));
            }
            log.shutdown();
            drop(log);
            // Recovery is idempotent: the cut tail stays cut, nothing else changes.
            let (again, got_again) = open(dir.path()).expect("a recovered log reopens");
            assert_eq!(got, got_again);
            again.shutdown();
        }
    }
});
