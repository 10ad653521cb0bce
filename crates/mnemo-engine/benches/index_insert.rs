//! Index insert throughput through the engine: observe N 768-d vectors (buffered log,
//! so the log is not the bottleneck) and wait until all are in the HNSW graph, with
//! index batches of 1 and of 64.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mnemo_engine::Durability;
use mnemo_engine::{Engine, EngineConfig, Observation, SpaceConfig};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::{Duration, Instant};

const DIM: usize = 768;
const N: usize = 2000;

fn vectors(seed: u64, n: usize) -> Vec<Vec<f32>> {
    let mut r = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..32)
        .map(|_| (0..DIM).map(|_| r.random_range(-1.0..1.0)).collect())
        .collect();
    (0..n)
        .map(|i| {
            centres[i % 32]
                .iter()
                .map(|c| c + r.random_range(-0.3..0.3))
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_insert_768d_f16");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements(N as u64));
    for batch in [1usize, 64] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = EngineConfig::new(dir.path());
        cfg.log.durability = Durability::Buffered;
        cfg.index_batch = batch;
        let e = Engine::open(cfg).unwrap();
        e.create_space("b", SpaceConfig::new(DIM as u32)).unwrap();
        let mut seed = 0;
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    seed += 1;
                    let vs = vectors(seed, N);
                    let start = Instant::now();
                    let tickets: Vec<_> = vs
                        .into_iter()
                        .map(|v| {
                            e.observe(
                                "b",
                                Observation {
                                    embedding: v,
                                    ..Default::default()
                                },
                            )
                            .unwrap()
                        })
                        .collect();
                    let last = tickets
                        .into_iter()
                        .map(|t| t.wait().unwrap().lsn)
                        .max()
                        .unwrap();
                    e.wait_indexed("b", last, Duration::from_secs(600)).unwrap();
                    elapsed += start.elapsed();
                }
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
