//! Index parameter sweep on a real data set (fvecs/ivecs layout of ../shared/data):
//! for each configuration, ingest the base vectors through the engine (buffered log),
//! wait until all are in the HNSW graph, then measure recall@10 and recall latency.
//!
//! `cargo run --release --example index_tuning -- DIR METRIC GT_FILE CONFIG...`
//! METRIC is cosine|l2; each CONFIG is `m,ef_construction,ef_search,precision`,
//! e.g. `16,128,160,f16`. Prints one markdown table row per configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mnemo_engine::Durability;
use mnemo_engine::{
    Engine, EngineConfig, IndexParams, Metric, Observation, Precision, RecallRequest, SpaceConfig,
};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, metric, gt_file, configs @ ..] = args.as_slice() else {
        eprintln!("usage: index_tuning DIR cosine|l2 GT_FILE m,efc,ef,prec ...");
        std::process::exit(2);
    };
    let dir = Path::new(dir);
    let metric = if metric == "l2" {
        Metric::L2
    } else {
        Metric::Cosine
    };
    let base = mnemo_engine::vecs::read_fvecs(&dir.join("base.fvecs")).unwrap();
    let queries: Vec<Vec<f32>> = mnemo_engine::vecs::read_fvecs(&dir.join("query.fvecs"))
        .unwrap()
        .into_iter()
        .take(1000)
        .collect();
    let gt = mnemo_engine::vecs::read_ivecs(&dir.join(gt_file)).unwrap();
    let dim = base[0].len();
    println!(
        "| data | n | dim | M | ef_construction | ef_search | precision | inserts/s | recall@10 | recall p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for c in configs {
        let f: Vec<&str> = c.split(',').collect();
        let precision = match f[3] {
            "f32" => Precision::F32,
            "i8" => Precision::I8,
            _ => Precision::F16,
        };
        let index = IndexParams {
            m: f[0].parse().unwrap(),
            ef_construction: f[1].parse().unwrap(),
            ef_search: f[2].parse().unwrap(),
            precision,
        };
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = EngineConfig::new(tmp.path());
        cfg.log.durability = Durability::Buffered;
        cfg.index_batch = 256;
        let e = Engine::open(cfg).unwrap();
        e.create_space(
            "t",
            SpaceConfig {
                metric,
                index,
                ..SpaceConfig::new(dim as u32)
            },
        )
        .unwrap();
        let started = Instant::now();
        for chunk in base.chunks(4096) {
            let tickets: Vec<_> = chunk
                .iter()
                .map(|v| {
                    e.observe_waiting(
                        "t",
                        Observation {
                            embedding: v.clone(),
                            ..Default::default()
                        },
                        std::time::Duration::from_secs(600),
                    )
                    .unwrap()
                })
                .collect();
            for t in tickets {
                t.wait().unwrap();
            }
        }
        e.wait_indexed("t", base.len() as u64, Duration::from_secs(7200))
            .unwrap();
        let rate = base.len() as f64 / started.elapsed().as_secs_f64();
        let mut hits = 0;
        let mut lat = Vec::new();
        for (q, g) in queries.iter().zip(&gt) {
            let t = Instant::now();
            let res = e
                .recall("t", RecallRequest::new(q.clone(), 10))
                .unwrap()
                .collect_all()
                .unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            let truth: HashSet<u64> = g[..10].iter().map(|&i| i as u64 + 1).collect();
            hits += res.iter().filter(|m| truth.contains(&m.lsn)).count();
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "| {} | {} | {dim} | {} | {} | {} | {:?} | {rate:.0} | {:.4} | {:.2} | {:.2} |",
            dir.file_name().unwrap().to_string_lossy(),
            base.len(),
            index.m,
            index.ef_construction,
            index.ef_search,
            precision,
            hits as f64 / (10.0 * queries.len() as f64),
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100],
        );
    }
}
