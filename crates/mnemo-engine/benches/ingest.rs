//! End-to-end engine ingest on 768-d f16 (observe → durable → in the HNSW graph)
//! with 1, 2 and N index workers, against a bare usearch build of the same vectors
//! with the same parameters in the same run (1 thread, and 2 threads concurrently).
//! Also prints observe → visible latency percentiles below Warning and the pressure
//! monitor's CPU share. N records per iteration: MNEMO_INGEST_N (default 1000).
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mnemo_engine::Durability;
use mnemo_engine::{Engine, EngineConfig, Observation, RecallRequest, SpaceConfig};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::{Duration, Instant};

const DIM: usize = 768;

fn vectors(n: usize) -> Vec<Vec<f32>> {
    let mut r = StdRng::seed_from_u64(7);
    let centres: Vec<Vec<f32>> = (0..64)
        .map(|_| (0..DIM).map(|_| r.random_range(-1.0..1.0)).collect())
        .collect();
    (0..n)
        .map(|i| {
            centres[i % 64]
                .iter()
                .map(|c| c + r.random_range(-0.3..0.3))
                .collect()
        })
        .collect()
}

fn engine(dir: &std::path::Path, workers: usize) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.index_threads = workers;
    cfg.log.durability = Durability::Fsync;
    Engine::open(cfg).unwrap()
}

/// Observes everything (admission permitting) and waits until all is indexed.
fn ingest(e: &Engine, space: &str, data: &[Vec<f32>]) {
    let tickets: Vec<_> = data
        .iter()
        .map(|v| {
            let o = Observation {
                content: "bench".into(),
                embedding: v.clone(),
                ..Default::default()
            };
            e.observe_waiting(space, o, Duration::from_secs(600))
                .unwrap()
        })
        .collect();
    let mut last = 0;
    for t in tickets {
        last = t.wait().unwrap().lsn;
    }
    e.wait_indexed(space, last, Duration::from_secs(600))
        .unwrap();
}

fn raw_build(data: &[Vec<f32>], threads: usize) {
    let config = SpaceConfig::new(DIM as u32);
    let opts = usearch::IndexOptions {
        dimensions: DIM,
        metric: usearch::MetricKind::Cos,
        quantization: usearch::ScalarKind::F16,
        connectivity: config.index.m as usize,
        expansion_add: config.index.ef_construction as usize,
        expansion_search: config.index.ef_search as usize,
        multi: false,
    };
    let index = usearch::Index::new(&opts).unwrap();
    index
        .reserve_capacity_and_threads(data.len(), threads)
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..threads {
            let index = &index;
            s.spawn(move || {
                for (i, v) in data.iter().enumerate().skip(t).step_by(threads) {
                    index.add(i as u64, v).unwrap();
                }
            });
        }
    });
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("MNEMO_INGEST_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let data = vectors(n);
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(2);
    let mut g = c.benchmark_group("ingest_768d_f16");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));

    g.bench_function("raw_usearch_1_thread", |b| b.iter(|| raw_build(&data, 1)));
    g.bench_function("raw_usearch_2_threads", |b| b.iter(|| raw_build(&data, 2)));
    let mut worker_counts = vec![1, 2];
    if cores > 2 {
        worker_counts.push(cores);
    }
    for workers in worker_counts {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), workers);
        let mut round = 0;
        let monitor_before = e.ingest_stats().monitor_busy_ns;
        let started = Instant::now();
        g.bench_function(format!("engine_{workers}_workers"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let space = format!("s{round}");
                    e.create_space(&space, SpaceConfig::new(DIM as u32))
                        .unwrap();
                    let t = Instant::now();
                    ingest(&e, &space, &data);
                    total += t.elapsed();
                    e.drop_space(&space).unwrap();
                }
                total
            })
        });
        let monitor = e.ingest_stats().monitor_busy_ns - monitor_before;
        eprintln!(
            "engine_{workers}_workers: pressure monitor used {:.3} % of one core",
            monitor as f64 / started.elapsed().as_nanos() as f64 * 100.0
        );
        e.close().unwrap();
    }
    g.finish();

    // Observe → visible to recall, one observation at a time (Normal pressure),
    // fsync durability: ack latency, then a recall at the latest snapshot finds it.
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), 2);
    e.create_space("v", SpaceConfig::new(DIM as u32)).unwrap();
    let mut lat = Vec::new();
    for v in data.iter().take(500) {
        let o = Observation {
            content: "probe".into(),
            embedding: v.clone(),
            ..Default::default()
        };
        let t = Instant::now();
        let lsn = e.observe("v", o).unwrap().wait().unwrap().lsn;
        let hits = e
            .recall("v", RecallRequest::new(v.clone(), 1))
            .unwrap()
            .collect_all()
            .unwrap();
        lat.push(t.elapsed());
        assert_eq!(hits[0].lsn, lsn);
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    eprintln!(
        "observe -> visible (ack + recall finds it), 500 x 768-d, fsync: p50 {:?}, p99 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1]
    );
    e.close().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
