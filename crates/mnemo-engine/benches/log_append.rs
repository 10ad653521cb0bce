//! Group-commit append throughput: 1, 8 and 128 concurrent producers, 2 KB records,
//! fsync durability. Each producer appends and waits for its record to be durable
//! before the next. `threads`: each producer is an OS thread blocking on its ticket;
//! `tasks`: each producer is a task on a 2-worker tokio runtime awaiting its ticket
//! (how the server drives the log).
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mnemo_engine::LogConfig;
use mnemo_engine::SpaceNo;
use mnemo_engine::internals::{CommitSink, Committed, FileLog, Log};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct NoSink;
impl CommitSink for NoSink {
    fn committed(&self, _: &[Committed<'_>]) {}
}

const RECORD: usize = 2048;
const TOTAL: u64 = 16_384; // records per measured iteration, split over the producers

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_append_2KB_fsync");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(TOTAL));
    for producers in [1u64, 8, 128] {
        let dir = tempfile::tempdir().unwrap();
        let live: HashSet<SpaceNo> = [SpaceNo(0)].into();
        let log = Arc::new(
            FileLog::open(
                dir.path(),
                LogConfig::default(),
                &live,
                &mut |_| {},
                Arc::new(NoSink),
            )
            .unwrap(),
        );
        let total = if producers == 1 { 1024 } else { TOTAL }; // one producer = one fsync per record
        group.throughput(Throughput::Elements(total));
        group.bench_function(format!("{producers}_producers_threads"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let handles: Vec<_> = (0..producers)
                        .map(|_| {
                            let log = Arc::clone(&log);
                            std::thread::spawn(move || {
                                for _ in 0..total / producers {
                                    log.append(SpaceNo(0), vec![7u8; RECORD]).wait().unwrap();
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.join().unwrap();
                    }
                    elapsed += start.elapsed();
                }
                elapsed
            })
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        group.bench_function(format!("{producers}_producers_tasks"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    rt.block_on(async {
                        let tasks: Vec<_> = (0..producers)
                            .map(|_| {
                                let log = Arc::clone(&log);
                                tokio::spawn(async move {
                                    for _ in 0..total / producers {
                                        log.append(SpaceNo(0), vec![7u8; RECORD]).await.unwrap();
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.unwrap();
                        }
                    });
                    elapsed += start.elapsed();
                }
                elapsed
            })
        });
        eprintln!("{producers} producers: {:.1} records per group commit", {
            let s = log.stats();
            s.records_committed as f64 / s.group_commits.max(1) as f64
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
