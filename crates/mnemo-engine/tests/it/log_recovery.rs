//! The log on its own: torn tails, bit flips, dense LSNs under concurrency.
use mnemo_engine::internals::{CommitSink, Committed, FileLog, Log};
use mnemo_engine::{Durability, LogConfig};
use mnemo_engine::{Error, SpaceNo};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

struct NoSink;
impl CommitSink for NoSink {
    fn committed(&self, _: &[Committed<'_>]) {}
}

const S: SpaceNo = SpaceNo(1);

type Recovered = Vec<(u64, Vec<u8>)>;

fn open_log(dir: &Path, segment_bytes: u64) -> mnemo_engine::Result<(FileLog, Recovered)> {
    let mut seen = Vec::new();
    let live: HashSet<SpaceNo> = [S].into();
    let cfg = LogConfig {
        segment_bytes,
        durability: Durability::Fsync,
        ..LogConfig::default()
    };
    let log = FileLog::open(
        dir,
        cfg,
        &live,
        &mut |c| seen.push((c.lsn, c.body.to_vec())),
        Arc::new(NoSink),
    )?;
    Ok((log, seen))
}

fn body(i: u64) -> Vec<u8> {
    format!("record number {i}").into_bytes()
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.retain(|p| p.extension().is_some_and(|x| x == "seg"));
    v.sort();
    v
}

#[test]
fn torn_tail_is_cut_at_every_byte_of_the_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = open_log(dir.path(), 1 << 20).unwrap();
        for i in 1..=5 {
            assert_eq!(log.append(S, body(i)).wait().unwrap(), i);
        }
    }
    let seg = segments(dir.path()).remove(0);
    let full = std::fs::read(&seg).unwrap();
    let last_frame_len = 8 + 12 + body(5).len();
    let last_start = full.len() - last_frame_len;
    for cut in last_start..full.len() {
        std::fs::write(&seg, &full[..cut]).unwrap();
        let (log, seen) = open_log(dir.path(), 1 << 20).unwrap();
        assert_eq!(seen.len(), 4, "cut at {cut}");
        assert_eq!(seen[3], (4, body(4)));
        assert_eq!(log.last_lsn(S), Some(4));
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len() as usize,
            last_start,
            "tail not truncated"
        );
        // The log goes on from the cut: LSN 5 is reassigned to the next append.
        assert_eq!(log.append(S, body(55)).wait().unwrap(), 5);
        assert_eq!(log.read(S, 5).unwrap(), body(55));
        drop(log);
    }
}

#[test]
fn bit_flip_in_last_frame_cuts_it_and_in_sealed_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Tiny segments: every few records rotate.
        let (log, _) = open_log(dir.path(), 4096).unwrap();
        for i in 1..=400 {
            log.append(S, body(i)).wait().unwrap();
        }
        assert!(log.stats().segments > 2);
    }
    let segs = segments(dir.path());
    let last = segs.last().unwrap().clone();
    let mut bytes = std::fs::read(&last).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x10;
    std::fs::write(&last, &bytes).unwrap();
    let (log, seen) = open_log(dir.path(), 4096).unwrap();
    assert_eq!(seen.len(), 399);
    drop(log);

    let first = segs[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(&first, &bytes).unwrap();
    match open_log(dir.path(), 4096) {
        Err(Error::Corruption { path, offset, .. }) => {
            assert_eq!(path, first);
            assert!(
                offset <= 40,
                "offset {offset} should point at the damaged frame"
            );
        }
        other => panic!("expected a corruption error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn lsns_are_dense_and_monotonic_under_8_concurrent_appenders() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open_log(dir.path(), 64 << 10).unwrap();
    let log = Arc::new(log);
    let per_thread = 300;
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| log.append(S, body(t * 1000 + i)).wait().unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        let lsns = h.join().unwrap();
        assert!(
            lsns.windows(2).all(|w| w[0] < w[1]),
            "one appender's LSNs must rise"
        );
        all.extend(lsns);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=8 * per_thread).collect::<Vec<_>>());
    assert!(
        log.stats().group_commits < 8 * per_thread,
        "appends should share commits"
    );
    // Every record reads back, and reopening sees them all in LSN order.
    for lsn in [1, 1200, 2400] {
        assert!(log.read(S, lsn).is_ok());
    }
    drop(log);
    let (_log, seen) = open_log(dir.path(), 64 << 10).unwrap();
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=2400).collect::<Vec<_>>()
    );
}

#[test]
fn forgotten_space_segments_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open_log(dir.path(), 4096).unwrap();
    let other = SpaceNo(2);
    log.register_space(other);
    for i in 1..=600 {
        log.append(other, body(i)).wait().unwrap();
    }
    log.append(S, body(1)).wait().unwrap();
    let before = segments(dir.path()).len();
    assert!(before > 3);
    log.forget_space(other).unwrap();
    // Only the segment holding space 1's record (the active one) remains.
    assert_eq!(segments(dir.path()).len(), 1);
    assert_eq!(log.read(S, 1).unwrap(), body(1));
    assert!(log.append(other, body(9)).wait().is_err());
}
