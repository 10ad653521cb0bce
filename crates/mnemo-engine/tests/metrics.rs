//! The engine's metrics hooks, seen through a recorder (its own test binary: the
//! recorder is process-global).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use mnemo_engine::{Engine, EngineConfig, Lane, Observation, SpaceConfig, metric_names};
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn ingest_emits_counters_gauges_and_latency_histograms() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.log.durability = mnemo_engine::Durability::Buffered;
    let e = Engine::open(cfg).unwrap();
    e.create_space("m", SpaceConfig::new(4)).unwrap();
    let s = e.open_session("m", None).unwrap();
    for seq in 1..=50 {
        let obs = Observation {
            content: "m".into(),
            embedding: vec![seq as f32, 1.0, 0.0, 0.0],
            ..Default::default()
        };
        s.observe(seq, obs, Lane::High).unwrap().wait().unwrap();
    }
    let dup = Observation {
        embedding: vec![0.0; 4],
        ..Default::default()
    };
    s.observe(3, dup.clone(), Lane::Normal)
        .unwrap()
        .wait()
        .unwrap();
    assert!(s.observe(99, dup, Lane::Normal).is_err());
    e.wait_indexed("m", 50, Duration::from_secs(20)).unwrap();
    std::thread::sleep(Duration::from_millis(50)); // a monitor sample after indexing

    let mut counters: HashMap<String, u64> = HashMap::new();
    let mut histograms: HashMap<String, usize> = HashMap::new();
    let mut gauges = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let name = key.key().name().to_string();
        match value {
            DebugValue::Counter(n) => *counters.entry(name).or_default() += n,
            DebugValue::Histogram(v) => *histograms.entry(name).or_default() += v.len(),
            DebugValue::Gauge(_) => gauges.push(name),
        }
    }
    assert_eq!(counters[metric_names::ACCEPTED], 50);
    assert_eq!(counters[metric_names::INDEXED], 50);
    assert_eq!(counters[metric_names::DUPLICATES], 1);
    assert_eq!(counters[metric_names::REFUSED], 1, "the gap");
    assert_eq!(histograms[metric_names::OBSERVE_DURABLE], 50);
    assert_eq!(histograms[metric_names::OBSERVE_INDEXED], 50);
    assert!(histograms[metric_names::BATCH_SIZE] >= 1);
    for g in [
        metric_names::QUEUE_DEPTH,
        metric_names::PRESSURE,
        metric_names::PRESSURE_STATE,
        metric_names::DRAIN_RATE,
        metric_names::FRESH_ROWS,
        metric_names::SESSIONS,
    ] {
        assert!(gauges.iter().any(|n| n == g), "gauge {g} missing");
    }
    e.close().unwrap();
}
