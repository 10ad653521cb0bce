//! Request validation on arbitrary protobuf bytes, against a real engine: a request
//! is either refused as INVALID_ARGUMENT (and nothing is written) or served correctly.
//!
//! Byte 0 picks the message: an `Observation` (observed into a 4-d space), a
//! `RecallRequest` (on that space), or a `CreateSpaceRequest` (validated).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnemo_engine::internals::ObservationRecord;
use mnemo_engine::{Engine, EngineConfig, Error};
use mnemo_server::internals::{observation, recall_request, space_config};
use mnemo_server::pb;
use prost::Message;
use std::sync::OnceLock;

const SPACE: &str = "fuzz";
const DIM: u32 = 4;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<(Engine, tempfile::TempDir)> = OnceLock::new();
    &ENGINE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = EngineConfig::new(dir.path());
            cfg.index_threads = 1;
            cfg.log.durability = mnemo_engine::Durability::Buffered;
            cfg.log.min_free_bytes = 0;
            let e = Engine::open(cfg).unwrap();
            e.create_space(SPACE, mnemo_engine::SpaceConfig::new(DIM)).unwrap();
            // A few records so recalls have something to rank.
            for i in 0..8 {
                let o = mnemo_engine::Observation {
                    content: format!("seed {i}"),
                    embedding: vec![i as f32, 1.0, 0.5, -1.0],
                    ..Default::default()
                };
                e.observe_blocking(SPACE, o).unwrap();
            }
            (e, dir)
        })
        .0
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Ok(o) = pb::Observation::decode(rest) {
                check_observation(o);
            }
        }
        1 => {
            if let Ok(r) = pb::RecallRequest::decode(rest) {
                check_recall(r);
            }
        }
        _ => {
            if let Ok(c) = pb::CreateSpaceRequest::decode(rest) {
                let cfg = space_config(&c);
                if let Err(e) = cfg.validate() {
                    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
                }
                if let Err(e) = mnemo_engine::validate_space_name(&c.name) {
                    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
                }
            }
        }
    }
});

fn check_observation(o: pb::Observation) {
    let e = engine();
    let Ok(obs) = observation(o) else {
        return; // a malformed id: refused before the engine
    };
    let before = e.snapshot(SPACE).unwrap();
    let valid = ObservationRecord::from_observation(obs.clone(), DIM);
    let result = e.observe_blocking(SPACE, obs.clone());
    let after = e.snapshot(SPACE).unwrap();
    match (valid, result) {
        (Ok(rec), Ok(done)) => {
            assert_eq!(after, before + 1);
            let stored = e.get(SPACE, done.lsn).unwrap();
            assert_eq!(stored.content, rec.content);
            assert_eq!(stored.embedding, rec.embedding);
            assert_eq!(stored.id, done.id);
            let again = ObservationRecord::decode(&rec.encode()).unwrap();
            assert_eq!(again.encode(), rec.encode());
        }
        (Err(why), Err(refused)) => {
            assert!(matches!(why, Error::InvalidArgument(_)), "{why}");
            assert!(matches!(refused, Error::InvalidArgument(_)), "{refused}");
            assert_eq!(after, before, "a refused observation writes nothing");
        }
        (v, r) => panic!("validation and the engine disagree: {v:?} vs {r:?}"),
    }
}

fn check_recall(mut r: pb::RecallRequest) {
    let e = engine();
    // A read-your-writes wait on an LSN nobody writes would only test the clock.
    r.min_lsn = 0;
    let Ok(req) = recall_request(&r) else {
        return; // refused before the engine (a max_wait past the bound)
    };
    let k = req.k;
    match e.recall(SPACE, req).and_then(|c| {
        let snapshot = c.snapshot();
        c.collect_all().map(|m| (snapshot, m))
    }) {
        Ok((snapshot, found)) => {
            assert!(found.len() <= k);
            let mut seen = std::collections::HashSet::new();
            for m in &found {
                assert!(m.lsn >= 1 && m.lsn <= snapshot, "LSN {} above {snapshot}", m.lsn);
                assert!(seen.insert(m.lsn), "LSN {} twice", m.lsn);
                assert!(m.score.is_finite(), "score {}", m.score);
            }
        }
        Err(Error::InvalidArgument(_)) | Err(Error::SnapshotInFuture { .. }) => {}
        Err(other) => panic!("unexpected recall error: {other}"),
    }
}
