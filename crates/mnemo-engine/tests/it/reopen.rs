//! Bounded reopen: with each space's state checkpointed and sealed segments
//! indexed, an open reads the checkpoint, the indexes and the log after the
//! checkpoint, not every segment, and answers exactly as before: memories,
//! filters, ids, deaths, session marks.
use mnemo_engine::{
    Engine, EngineConfig, Filter, Memory, Observation, SpaceConfig, TagClause, TagTest,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

use crate::common::{config, random_vec, rng};

const DIM: usize = 8;

fn cfg(dir: &Path) -> EngineConfig {
    let mut c = config(dir);
    c.log.segment_bytes = 8 << 10;
    c.retention.maintenance_interval_ms = 3_600_000;
    c
}

fn observation(i: u64) -> Observation {
    Observation {
        id: Some(Uuid::from_u128(7000 + i as u128)),
        content: format!("memory {i}"),
        embedding: random_vec(&mut rng(i), DIM),
        tags: [("user".to_string(), format!("u{}", i % 7))].into(),
        session_id: format!("s{}", i % 3),
        session_seq: i / 3 + 1,
        ..Default::default()
    }
}

/// Everything a reader can see of space `s`: every memory exported, what each
/// user filter selects, and each session's high-water mark.
/// Memories, matches per user, session marks.
type View = (Vec<Memory>, Vec<u64>, Vec<Option<(u64, u64)>>);

fn view(e: &Engine) -> View {
    let snap = e.snapshot("s").unwrap();
    let (all, _) = e.export("s", 0, snap, 1_000_000, None).unwrap();
    let per_user = (0..7)
        .map(|u| {
            let f = Filter {
                tags: vec![TagClause {
                    key: "user".into(),
                    test: TagTest::Equals(format!("u{u}")),
                }],
                ..Default::default()
            };
            e.select("s", &f, snap).unwrap().len()
        })
        .collect();
    let sessions = (0..3)
        .map(|s| e.session_high_water("s", &format!("s{s}")).unwrap())
        .collect();
    (all, per_user, sessions)
}

#[test]
fn reopen_reads_the_checkpoint_and_the_tail_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    e.create_space("s", SpaceConfig::new(DIM as u32)).unwrap();
    let mut ids = BTreeMap::new();
    for i in 0..3000 {
        ids.insert(i, e.observe_blocking("s", observation(i)).unwrap().lsn);
    }
    let _ = e
        .forget(
            "s",
            &[],
            &Filter {
                tags: vec![TagClause {
                    key: "user".into(),
                    test: TagTest::Equals("u3".into()),
                }],
                ..Default::default()
            },
        )
        .unwrap();
    let fix = Observation {
        supersedes: Some(Uuid::from_u128(7001)),
        content: "memory 1, corrected".into(),
        embedding: random_vec(&mut rng(1), DIM),
        ..Default::default()
    };
    e.observe_blocking("s", fix).unwrap();
    e.wait_indexed("s", e.snapshot("s").unwrap(), Duration::from_secs(60))
        .unwrap();
    e.maintain().unwrap(); // purge, and the indexes of sealed segments
    let ckpt = e.checkpoint("s").unwrap();
    // A tail after the checkpoint: replayed at open.
    for i in 3000..3200 {
        e.observe_blocking("s", observation(i)).unwrap();
    }
    let before = view(&e);
    let sealed = e.log_stats().segments - 1;
    assert!(sealed > 20, "the test needs many segments: {sealed}");
    // A crash (no close, so no checkpoint at close): the tail comes from the log.
    std::mem::forget(e);
    let dir2 = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), dir2.path());
    std::fs::remove_file(dir2.path().join("LOCK")).ok();

    let e = Engine::open(cfg(dir2.path())).unwrap();
    // Segments sealed after the last maintenance have no index yet: the tail's.
    let stats = e.log_stats();
    assert!(
        stats.opened_by_index >= sealed - 4 && stats.opened_by_scan <= 5,
        "segments read by index {} / scanned {} of {sealed} sealed",
        stats.opened_by_index,
        stats.opened_by_scan
    );
    let (_, s) = e.describe_space("s").unwrap();
    assert_eq!(s.checkpoint_lsn, ckpt);
    assert_eq!(view(&e), before, "the same memories, filters and sessions");
    let got = e.get_memories("s", &[Uuid::from_u128(7001)], None).unwrap();
    assert_eq!(got.superseded.len(), 1);
    // It goes on: new LSNs after the old ones, sessions resume.
    let next = e.observe_blocking("s", observation(3200)).unwrap();
    assert_eq!(next.lsn, before.0.last().unwrap().lsn + 1);
    e.close().unwrap();
    // Closed cleanly: the next open scans only the active segment.
    let e = Engine::open(cfg(dir2.path())).unwrap();
    assert!(e.log_stats().opened_by_scan <= 1, "{:?}", e.log_stats());
    assert_eq!(view(&e).0.len(), before.0.len() + 1);
    e.close().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
