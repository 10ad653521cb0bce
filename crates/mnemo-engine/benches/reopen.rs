//! Reopen time: an engine with N records (default 1,000,000 × 32-d; MNEMO_REOPEN_N
//! and MNEMO_REOPEN_DIM change it), checkpointed, then closed and reopened. The data
//! is built once into target/bench-data/reopen-<n>-<dim>.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use mnemo_engine::Durability;
use mnemo_engine::{Engine, EngineConfig, Observation, SpaceConfig};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench(c: &mut Criterion) {
    let n = env("MNEMO_REOPEN_N", 1_000_000);
    let dim = env("MNEMO_REOPEN_DIM", 32);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../target/bench-data/reopen-{n}-{dim}"));
    let config = || {
        let mut cfg = EngineConfig::new(&dir);
        cfg.log.durability = Durability::Buffered;
        cfg
    };
    {
        let e = Engine::open(config()).unwrap();
        if e.describe_space("r")
            .map(|s| s.1.committed_lsn)
            .unwrap_or(0)
            < n as u64
        {
            let _ = e.drop_space("r");
            e.create_space("r", SpaceConfig::new(dim as u32)).unwrap();
            let t = Instant::now();
            let mut r = StdRng::seed_from_u64(1);
            for _ in 0..n / 1000 {
                let tickets: Vec<_> = (0..1000)
                    .map(|i| {
                        let v: Vec<f32> = (0..dim).map(|_| r.random_range(-1.0f32..1.0)).collect();
                        let o = Observation {
                            embedding: v,
                            content: format!("record {i} {}", "x".repeat(200)),
                            ..Default::default()
                        };
                        e.observe_waiting("r", o, Duration::from_secs(600)).unwrap()
                    })
                    .collect();
                for t in tickets {
                    t.wait().unwrap();
                }
            }
            e.wait_indexed("r", n as u64, Duration::from_secs(7200))
                .unwrap();
            e.checkpoint("r").unwrap();
            eprintln!("built {n} × {dim} in {:.0}s", t.elapsed().as_secs_f64());
        }
        e.close().unwrap();
    }
    let mut group = c.benchmark_group("reopen");
    group.sample_size(10);
    group.bench_function(format!("{n}x{dim}_from_checkpoint"), |b| {
        b.iter(|| {
            let e = Engine::open(config()).unwrap();
            assert_eq!(e.describe_space("r").unwrap().1.committed_lsn, n as u64);
            // Dropping closes it; the checkpoint is current, so none is written and
            // every reopen does the same work.
            drop(e);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
