//! The index queue under contention: P producers push 100K items over the three
//! lanes while C consumers pop batches of 64, until all are out.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mnemo_engine::Lane;
use mnemo_engine::internals::{Item, SpaceQueue};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const ITEMS: u64 = 100_000;

fn run(producers: u64, consumers: usize) {
    let q = Arc::new(SpaceQueue::default());
    let popped = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for p in 0..producers {
            let q = Arc::clone(&q);
            s.spawn(move || {
                for i in 0..ITEMS / producers {
                    let item = Item {
                        lsn: p * ITEMS + i,
                        bytes: 3000,
                        recorded_at_us: 0,
                        retried: false,
                    };
                    q.push(Lane::ALL[(i % 3) as usize], item);
                }
            });
        }
        for _ in 0..consumers {
            let (q, popped) = (Arc::clone(&q), Arc::clone(&popped));
            s.spawn(move || {
                while popped.load(Ordering::Relaxed) < ITEMS {
                    let n = q.pop_batch(64).len() as u64;
                    if n == 0 {
                        std::hint::spin_loop();
                    }
                    popped.fetch_add(n, Ordering::Relaxed);
                }
            });
        }
    });
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("index_queue");
    g.throughput(Throughput::Elements(ITEMS));
    g.sample_size(20);
    for (p, cons) in [(1, 1), (1, 2), (4, 4), (16, 2)] {
        g.bench_function(format!("{p}_producers_{cons}_consumers"), |b| {
            b.iter(|| run(p, cons))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
