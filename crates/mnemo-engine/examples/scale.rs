//! Scale run: N clustered observations of DIM dimensions through the engine with
//! default settings (fsync log), until all are in the HNSW graph; then peak RSS,
//! a checkpoint, close, and the time to reopen from the checkpoint.
//!
//! `cargo run --release --example scale -- DATA_DIR [N=1000000] [DIM=768]`
//! With N = 0 it only times reopening an existing DATA_DIR.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mnemo_engine::{Engine, EngineConfig, Observation, RecallRequest, SpaceConfig};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::{Duration, Instant};

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() -> mnemo_engine::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: scale DATA_DIR [N] [DIM]");
    let n: u64 = args
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dim: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(768);
    if n == 0 {
        let t = Instant::now();
        let engine = Engine::open(EngineConfig::new(&dir))?;
        println!(
            "reopened in {:.2}s, RSS {} MiB",
            t.elapsed().as_secs_f64(),
            rss_kib("VmRSS:") / 1024
        );
        for s in engine.list_spaces() {
            println!("  {}: {:?}", s.name, engine.describe_space(&s.name)?.1);
        }
        return engine.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut r = StdRng::seed_from_u64(9);
    let centres: Vec<Vec<f32>> = (0..256)
        .map(|_| (0..dim).map(|_| r.random_range(-1.0..1.0)).collect())
        .collect();

    let engine = Engine::open(EngineConfig::new(&dir))?;
    engine.create_space("scale", SpaceConfig::new(dim as u32))?;
    let started = Instant::now();
    let mut next_report = 100_000;
    for chunk in 0..n.div_ceil(1000) {
        let tickets: Vec<_> = (0..1000.min(n - chunk * 1000))
            .map(|i| {
                let id = chunk * 1000 + i;
                let v: Vec<f32> = centres[(id % 256) as usize]
                    .iter()
                    .map(|c| c + r.random_range(-0.3..0.3))
                    .collect();
                // Two tags, as a multi-user memory would have: its user (one of a
                // thousand) and a kind.
                let obs = Observation {
                    content: format!("scale observation {id}"),
                    embedding: v,
                    tags: [
                        ("user".to_string(), format!("u{}", id % 1000)),
                        (
                            "kind".to_string(),
                            ["fact", "note", "plan"][(id % 3) as usize].to_string(),
                        ),
                    ]
                    .into(),
                    ..Default::default()
                };
                engine
                    .observe_waiting("scale", obs, Duration::from_secs(600))
                    .unwrap()
            })
            .collect();
        for t in tickets {
            t.wait()?;
        }
        if (chunk + 1) * 1000 >= next_report {
            next_report += 100_000;
            let (_, s) = engine.describe_space("scale")?;
            println!(
                "{:>7} committed, {:>7} indexed, {:>6} fresh, {:.0}s, RSS {} MiB",
                s.committed_lsn,
                s.indexed_count,
                s.fresh_count,
                started.elapsed().as_secs_f64(),
                rss_kib("VmRSS:") / 1024
            );
        }
    }
    let ingest = started.elapsed();
    engine.wait_indexed("scale", n, Duration::from_secs(24 * 3600))?;
    let indexed = started.elapsed();
    let cue = centres[3].clone();
    let t = Instant::now();
    let hits = engine
        .recall("scale", RecallRequest::new(cue, 10))?
        .collect_all()?;
    println!(
        "recall k=10 at {n}: {} hits in {:.2} ms",
        hits.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "ingested {n} × {dim} in {:.0}s ({:.0}/s), all indexed after {:.0}s ({:.0}/s)",
        ingest.as_secs_f64(),
        n as f64 / ingest.as_secs_f64(),
        indexed.as_secs_f64(),
        n as f64 / indexed.as_secs_f64()
    );
    println!(
        "peak RSS {} MiB, RSS now {} MiB",
        rss_kib("VmHWM:") / 1024,
        rss_kib("VmRSS:") / 1024
    );
    let t = Instant::now();
    engine.checkpoint("scale")?;
    println!("checkpoint in {:.1}s", t.elapsed().as_secs_f64());
    engine.close()?;

    let t = Instant::now();
    let engine = Engine::open(EngineConfig::new(&dir))?;
    let (_, s) = engine.describe_space("scale")?;
    println!(
        "reopened from the checkpoint in {:.2}s: {s:?}",
        t.elapsed().as_secs_f64()
    );
    println!("RSS after reopen {} MiB", rss_kib("VmRSS:") / 1024);
    engine.close()
}
