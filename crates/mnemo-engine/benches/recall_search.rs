//! Recall latency at 100K × 768-d (f16 index, default parameters), k = 10.
//! The space is built once (≈ 3 min) and kept in target/bench-data/recall-100k; later
//! runs reopen it from its checkpoint. Prints p50/p99 over 2,000 queries as well.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use mnemo_engine::Durability;
use mnemo_engine::{Engine, EngineConfig, Observation, RecallRequest, SpaceConfig};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::{Duration, Instant};

const DIM: usize = 768;
const N: usize = 100_000;

fn clustered(r: &mut StdRng, centres: &[Vec<f32>], i: usize) -> Vec<f32> {
    centres[i % centres.len()]
        .iter()
        .map(|c| c + r.random_range(-0.3..0.3))
        .collect()
}

fn open_space() -> (Engine, Vec<Vec<f32>>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/bench-data/recall-100k");
    let mut cfg = EngineConfig::new(&dir);
    cfg.log.durability = Durability::Buffered;
    let mut r = StdRng::seed_from_u64(42);
    let centres: Vec<Vec<f32>> = (0..100)
        .map(|_| (0..DIM).map(|_| r.random_range(-1.0..1.0)).collect())
        .collect();
    let t = Instant::now();
    let e = Engine::open(cfg).unwrap();
    if e.describe_space("b")
        .map(|s| s.1.committed_lsn)
        .unwrap_or(0)
        < N as u64
    {
        let _ = e.drop_space("b");
        e.create_space("b", SpaceConfig::new(DIM as u32)).unwrap();
        eprintln!("building {N} × {DIM} (once) ...");
        for chunk in 0..N / 1000 {
            let tickets: Vec<_> = (0..1000)
                .map(|i| {
                    let v = clustered(&mut r, &centres, chunk * 1000 + i);
                    e.observe_waiting(
                        "b",
                        Observation {
                            embedding: v,
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
        e.wait_indexed("b", N as u64, Duration::from_secs(3600))
            .unwrap();
        e.checkpoint("b").unwrap();
        eprintln!("built in {:.0}s", t.elapsed().as_secs_f64());
    } else {
        eprintln!(
            "reopened {N} × {DIM} from its checkpoint in {:.2}s",
            t.elapsed().as_secs_f64()
        );
    }
    let mut q = StdRng::seed_from_u64(7);
    let cues = (0..2000)
        .map(|i| clustered(&mut q, &centres, i * 7))
        .collect();
    (e, cues)
}

fn bench(c: &mut Criterion) {
    let (e, cues) = open_space();
    let mut lat: Vec<f64> = cues
        .iter()
        .map(|cue| {
            let t = Instant::now();
            let hits = e
                .recall("b", RecallRequest::new(cue.clone(), 10))
                .unwrap()
                .collect_all()
                .unwrap();
            assert_eq!(hits.len(), 10);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    eprintln!(
        "recall k=10 over {} queries: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        lat.len(),
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1]
    );
    let mut i = 0;
    c.bench_function("recall_100k_768d_k10", |b| {
        b.iter(|| {
            i = (i + 1) % cues.len();
            e.recall("b", RecallRequest::new(cues[i].clone(), 10))
                .unwrap()
                .collect_all()
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
