//! Reopen: from a checkpoint plus log tail, and with a missing or corrupt checkpoint.
use crate::common::*;
use mnemo_engine::{RecallRequest, SpaceConfig};
use std::time::Duration;

fn fill(e: &mnemo_engine::Engine, from: usize, to: usize) -> Vec<Vec<f32>> {
    let mut r = rng(from as u64);
    (from..to)
        .map(|i| {
            let v = random_vec(&mut r, 12);
            let o = mnemo_engine::Observation {
                session_id: "agent".into(),
                session_seq: i as u64 + 1,
                ..obs(format!("m{i}"), v.clone())
            };
            e.observe_blocking("s", o).unwrap();
            v
        })
        .collect()
}

fn check_all(e: &mnemo_engine::Engine, vectors: &[Vec<f32>]) {
    for (i, v) in vectors.iter().enumerate() {
        let m = e.get("s", i as u64 + 1).unwrap();
        assert_eq!(m.content, format!("m{i}"));
        assert_eq!(&m.embedding, v);
        let hit = &e
            .recall("s", RecallRequest::new(v.clone(), 1))
            .unwrap()
            .collect_all()
            .unwrap()[0];
        assert_eq!(
            hit.lsn,
            i as u64 + 1,
            "record {i} must be its own nearest neighbour"
        );
    }
}

#[test]
fn reopen_from_checkpoint_and_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut vectors;
    {
        let e = open(dir.path());
        e.create_space("s", SpaceConfig::new(12)).unwrap();
        vectors = fill(&e, 0, 600);
        e.wait_indexed("s", 600, Duration::from_secs(30)).unwrap();
        assert_eq!(e.checkpoint("s").unwrap(), 600);
        vectors.extend(fill(&e, 600, 900)); // the tail, after the checkpoint
        e.close().unwrap();
    }
    let e = open(dir.path());
    let (_, stats) = e.describe_space("s").unwrap();
    assert_eq!(stats.committed_lsn, 900);
    assert!(stats.checkpoint_lsn >= 600);
    assert_eq!(
        e.session_high_water("s", "agent").unwrap(),
        Some((900, 900))
    );
    assert_eq!(e.session_lsn("s", "agent", 17).unwrap(), Some(17));
    check_all(&e, &vectors);
    // New appends continue the LSN sequence.
    assert_eq!(
        e.observe_blocking("s", obs("next", vec![0.5; 12]))
            .unwrap()
            .lsn,
        901
    );
}

#[test]
fn missing_or_corrupt_checkpoint_rebuilds_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let vectors;
    {
        let e = open(dir.path());
        e.create_space("s", SpaceConfig::new(12)).unwrap();
        vectors = fill(&e, 0, 500);
        e.wait_indexed("s", 500, Duration::from_secs(30)).unwrap();
        e.close().unwrap();
    }
    let space_dir = dir.path().join("spaces/0");
    let index_file = std::fs::read_dir(&space_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "usearch"))
        .expect("close writes a checkpoint");
    // Corrupt: flip a byte in the middle of the index file.
    let mut bytes = std::fs::read(&index_file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&index_file, &bytes).unwrap();
    {
        let e = open(dir.path());
        assert_eq!(
            e.describe_space("s").unwrap().1.checkpoint_lsn,
            0,
            "corrupt checkpoint must be ignored"
        );
        check_all(&e, &vectors);
        e.close().unwrap();
    }
    // Missing: delete the checkpoint entirely.
    std::fs::remove_file(space_dir.join("checkpoint.json")).unwrap();
    let e = open(dir.path());
    check_all(&e, &vectors);
}

#[test]
fn second_engine_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _e = open(dir.path());
    let err = mnemo_engine::Engine::open(config(dir.path())).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
}

/// A checkpoint taken while inserts go on into the shards already saved records
/// each file's own count, so after a crash it loads instead of being rejected (and
/// the whole index rebuilt from the log).
#[test]
fn a_checkpoint_taken_under_heavy_ingestion_is_used_after_a_crash() {
    use mnemo_engine::io::{FileSystem, SimFs};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let fs = SimFs::new();
    let mut cfg = mnemo_engine::EngineConfig::new("/data");
    cfg.index_threads = 2;
    cfg.log.min_free_bytes = 0;
    cfg.checkpoint_interval_s = 3600;
    let open = |fs: &SimFs| {
        mnemo_engine::Engine::open_in(cfg.clone(), Arc::new(fs.clone()) as Arc<dyn FileSystem>)
            .unwrap()
    };
    let e = Arc::new(open(&fs));
    e.create_space("s", SpaceConfig::new(32)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (e, stop) = (Arc::clone(&e), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut r = rng(3);
            while !stop.load(Ordering::Relaxed) {
                let tickets: Vec<_> = (0..64)
                    .map(|i| {
                        e.observe("s", obs(format!("w{i}"), random_vec(&mut r, 32)))
                            .unwrap()
                    })
                    .collect();
                for t in tickets {
                    t.wait().unwrap();
                }
            }
        })
    };
    let mut taken = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(30));
        taken = e.checkpoint("s").unwrap();
    }
    assert!(taken > 0, "nothing was indexed under load");
    let crashed = fs.power_cut();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let after = open(&crashed);
    let (_, stats) = after.describe_space("s").unwrap();
    assert_eq!(
        stats.checkpoint_lsn, taken,
        "the checkpoint was rejected at open"
    );
    after.close().unwrap();
}

/// With `durability = buffered`, a power loss can leave a checkpoint newer than
/// the log's end: it is discarded and the space rebuilt from the log.
#[test]
fn a_checkpoint_newer_than_the_log_is_discarded_and_the_index_rebuilt() {
    use mnemo_engine::io::{FileSystem, SimFs};
    use std::sync::Arc;
    let fs = SimFs::new();
    let mut cfg = mnemo_engine::EngineConfig::new("/data");
    cfg.log.durability = mnemo_engine::Durability::Buffered;
    cfg.log.min_free_bytes = 0;
    let open = |fs: &SimFs| {
        mnemo_engine::Engine::open_in(cfg.clone(), Arc::new(fs.clone()) as Arc<dyn FileSystem>)
            .unwrap()
    };
    let e = open(&fs);
    e.create_space("s", SpaceConfig::new(12)).unwrap();
    let vectors = fill(&e, 0, 40);
    e.wait_indexed("s", 40, Duration::from_secs(10)).unwrap();
    assert_eq!(e.checkpoint("s").unwrap(), 40);
    // Nothing of the log was ever synced; the checkpoint was.
    let lost_power = fs.power_cut();
    drop(e);
    let e = open(&lost_power);
    let (_, stats) = e.describe_space("s").unwrap();
    assert_eq!((stats.committed_lsn, stats.checkpoint_lsn), (0, 0));
    assert!(
        e.recall("s", RecallRequest::new(vectors[0].clone(), 5))
            .unwrap()
            .collect_all()
            .unwrap()
            .is_empty(),
        "the graph of the discarded checkpoint answered"
    );
    // Writing goes on from LSN 1.
    let done = e
        .observe_blocking("s", obs("again", vectors[1].clone()))
        .unwrap();
    assert_eq!(done.lsn, 1);
    e.close().unwrap();
}
