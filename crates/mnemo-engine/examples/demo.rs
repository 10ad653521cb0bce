//! A one-command tour of the engine: open a data directory, create a space, stream
//! observations into it while recalling from it, then reopen and recall again.
//!
//! `cargo run --release --example demo -- [DATA_DIR] [COUNT]` (default: `mnemo-demo` in
//! the system temporary directory, emptied first).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mnemo_engine::{Engine, EngineConfig, Observation, RecallRequest, SpaceConfig};
use std::time::{Duration, Instant};

const DIM: usize = 64;

fn embedding(i: u64) -> Vec<f32> {
    // A cheap deterministic pseudo-random vector, clustered by `i % 10`.
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIM)
        .map(|d| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x % 1000) as f32 / 1000.0 - 0.5;
            let centre = if d as u64 % 10 == i % 10 { 3.0 } else { 0.0 };
            centre + noise
        })
        .collect()
}

fn main() -> mnemo_engine::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| {
        std::env::temp_dir()
            .join("mnemo-demo")
            .display()
            .to_string()
    });
    let count: u64 = args.next().and_then(|c| c.parse().ok()).unwrap_or(20_000);
    let _ = std::fs::remove_dir_all(&dir);

    let engine = Engine::open(EngineConfig::new(&dir))?;
    engine.create_space("demo", SpaceConfig::new(DIM as u32))?;
    println!("streaming {count} observations into {dir}/ (fsync group commit) ...");
    let started = Instant::now();
    let mut tickets = std::collections::VecDeque::new();
    let mut probes = Vec::new();
    for i in 0..count {
        let obs = Observation {
            content: format!("observation #{i} about topic {}", i % 10),
            embedding: embedding(i),
            tags: [("topic".to_string(), (i % 10).to_string())].into(),
            ..Default::default()
        };
        tickets.push_back((
            i,
            engine.observe_waiting("demo", obs, Duration::from_secs(600))?,
        ));
        // Keep a window of 512 in flight, and check now and then that an acked
        // observation is immediately recallable.
        while tickets.len() > 512 {
            let (j, t) = tickets.pop_front().expect("non-empty");
            let done = t.wait()?;
            if j % 2_000 == 0 {
                let t0 = Instant::now();
                let hit = &engine
                    .recall("demo", RecallRequest::new(embedding(j), 1))?
                    .collect_all()?[0];
                probes.push((done.lsn == hit.lsn, t0.elapsed()));
            }
        }
    }
    for (_, t) in tickets {
        t.wait()?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  {count} durable in {secs:.2}s = {:.0} obs/s",
        count as f64 / secs
    );
    let found = probes.iter().filter(|p| p.0).count();
    println!(
        "  visibility probes: {found}/{} found by recall right after their ack",
        probes.len()
    );

    let cursor = engine.recall("demo", RecallRequest::new(embedding(7), 5))?;
    println!(
        "top 5 for the cue of observation #7 (snapshot LSN {}):",
        cursor.snapshot()
    );
    for m in cursor.collect_all()? {
        println!("  lsn {:>6}  score {:.3}  {}", m.lsn, m.score, m.content);
    }
    let (_, stats) = engine.describe_space("demo")?;
    println!("stats: {stats:?}");
    print!("waiting for the HNSW graph to catch up ... ");
    let t0 = Instant::now();
    engine.wait_indexed("demo", stats.committed_lsn, Duration::from_secs(600))?;
    println!("{:.1}s", t0.elapsed().as_secs_f64());
    engine.close()?;

    let t0 = Instant::now();
    let engine = Engine::open(EngineConfig::new(&dir))?;
    println!(
        "reopened in {:.0} ms: {:?}",
        t0.elapsed().as_secs_f64() * 1e3,
        engine.describe_space("demo")?.1
    );
    engine.close()
}
