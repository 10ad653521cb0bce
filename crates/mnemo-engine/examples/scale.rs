//! Scale run: N clustered observations of DIM dimensions through the engine with
//! default settings (fsync log), until all are in the HNSW graph; then peak RSS,
//! a checkpoint, close, and the time to reopen from the checkpoint. Then half the
//! memories are forgotten by one filter and the space compacted: the data
//! directory before and after, recall@10 of what remains (against brute force),
//! and the time to reopen again.
//!
//! `cargo run --release --example scale -- DATA_DIR [N=1000000] [DIM=768]`
//! With N = 0 it only times reopening an existing DATA_DIR.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mnemo_engine::{
    Engine, EngineConfig, Filter, Observation, RecallRequest, SpaceConfig, TagClause, TagTest,
};
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
                        // Which half a forget takes: half of every cluster.
                        ("half".to_string(), ((id / 256) % 2).to_string()),
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
    println!("{:?}", engine.log_stats());
    forget_half_and_compact(&engine, &dir, &centres)?;
    engine.close()?;
    let t = Instant::now();
    let engine = Engine::open(EngineConfig::new(&dir))?;
    println!(
        "reopened after the compaction in {:.2}s: {:?}",
        t.elapsed().as_secs_f64(),
        engine.log_stats()
    );
    engine.close()
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_bytes(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

/// The exact top 10 (LSNs) of each cue among the memories of the latest snapshot.
fn exact_top10(
    engine: &Engine,
    cues: &[Vec<f32>],
) -> mnemo_engine::Result<Vec<std::collections::HashSet<u64>>> {
    let snap = engine.snapshot("scale")?;
    let mut best: Vec<Vec<(f32, u64)>> = vec![Vec::new(); cues.len()];
    let mut after_lsn = 0;
    while after_lsn < snap {
        let (batch, next) = engine.export("scale", after_lsn, snap, 4096, None)?;
        after_lsn = next;
        for m in batch {
            for (q, b) in cues.iter().zip(best.iter_mut()) {
                b.push((cosine(q, &m.embedding), m.lsn));
                if b.len() > 64 {
                    b.sort_by(|x, y| y.0.total_cmp(&x.0));
                    b.truncate(10);
                }
            }
        }
    }
    Ok(best
        .into_iter()
        .map(|mut b| {
            b.sort_by(|x, y| y.0.total_cmp(&x.0));
            b.truncate(10);
            b.into_iter().map(|x| x.1).collect()
        })
        .collect())
}

/// recall@10 against `truth`, and the mean time of a recall (ms).
fn recall_at_10(
    engine: &Engine,
    cues: &[Vec<f32>],
    truth: &[std::collections::HashSet<u64>],
) -> mnemo_engine::Result<(f64, f64)> {
    let (mut found, t) = (0, Instant::now());
    for (q, want) in cues.iter().zip(truth) {
        let hits = engine
            .recall("scale", RecallRequest::new(q.clone(), 10))?
            .collect_all()?;
        found += hits.iter().filter(|h| want.contains(&h.lsn)).count();
    }
    Ok((
        found as f64 / (10 * cues.len()) as f64,
        t.elapsed().as_secs_f64() * 1e3 / cues.len() as f64,
    ))
}

/// Forgets the even memories (one filter), compacts, and measures the data
/// directory and recall@10 of the odd ones against brute force.
fn forget_half_and_compact(
    engine: &Engine,
    dir: &str,
    centres: &[Vec<f32>],
) -> mnemo_engine::Result<()> {
    let before = dir_bytes(dir.as_ref());
    // 50 cues near the centres, exact top 10 by brute force over every memory
    // (streamed through an export): the full graph's recall@10 first.
    let mut r = StdRng::seed_from_u64(77);
    let cues: Vec<Vec<f32>> = (0..50)
        .map(|i| {
            centres[i * 5 % centres.len()]
                .iter()
                .map(|c| c + r.random_range(-0.3..0.3))
                .collect()
        })
        .collect();
    let truth = exact_top10(engine, &cues)?;
    let (recall, ms) = recall_at_10(engine, &cues, &truth)?;
    println!("before forgetting: recall@10 {recall:.3}, {ms:.2} ms a recall");
    let half = Filter {
        tags: vec![TagClause {
            key: "half".into(),
            test: TagTest::Equals("0".into()),
        }],
        ..Default::default()
    };
    let t = Instant::now();
    let f = engine.forget("scale", &[], &half)?;
    println!(
        "forgot {} memories (one filter) in {:.2}s at LSN {}",
        f.count,
        t.elapsed().as_secs_f64(),
        f.lsn
    );
    // recall@10 of what remains, against brute force over it.
    let truth = exact_top10(engine, &cues)?;
    // Purged (out of the graph: half its nodes are removed ones), not yet rebuilt.
    engine.maintain()?;
    let (recall, ms) = recall_at_10(engine, &cues, &truth)?;
    println!("with half the graph's nodes removed: recall@10 {recall:.3}, {ms:.2} ms a recall");
    let t = Instant::now();
    let c = engine.compact("scale")?;
    let after = dir_bytes(dir.as_ref());
    println!(
        "compacted in {:.1}s: {c:?}; data directory {:.2} GB -> {:.2} GB ({:.1} % smaller)",
        t.elapsed().as_secs_f64(),
        before as f64 / 1e9,
        after as f64 / 1e9,
        100.0 * (1.0 - after as f64 / before as f64)
    );
    let (recall, ms) = recall_at_10(engine, &cues, &truth)?;
    println!(
        "after the compaction: recall@10 of the memories left {recall:.3}, \
         {ms:.2} ms a recall ({} cues)",
        cues.len()
    );
    Ok(())
}
