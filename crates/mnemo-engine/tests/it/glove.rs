//! Recall quality on real data: GloVe-50 (399K words, 1K queries, cosine), built by
//! `../shared/data/get.sh glove DIR` and found through MNEMO_GLOVE_DIR. With
//! MNEMO_REQUIRE_DATASETS=1 (as in CI) a missing dataset fails the test.
//!
//! By default the first 50,000 base vectors are inserted (the test must stay fast on
//! 2 cores) and the exact ground truth over them is computed here by brute force.
//! MNEMO_GLOVE_LIMIT=all inserts all 399,000 and uses the shipped exact ground truth
//! (the figure in docs/benchmarks.md).
use crate::common::*;
use mnemo_engine::{Observation, RecallRequest, SpaceConfig};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// Exact cosine top-10 over `base` (1-based ids, like LSNs).
fn exact_top10(base: &[Vec<f32>], q: &[f32]) -> HashSet<u64> {
    let q = unit(q);
    let mut scored: Vec<(f32, u64)> = base
        .iter()
        .enumerate()
        .map(|(i, b)| {
            (
                b.iter().zip(&q).map(|(x, y)| x * y).sum::<f32>(),
                i as u64 + 1,
            )
        })
        .collect();
    scored.select_nth_unstable_by(10, |a, b| b.0.total_cmp(&a.0));
    scored[..10].iter().map(|s| s.1).collect()
}

#[test]
fn glove50_recall_at_10_with_default_parameters() {
    let Some(data) = std::env::var_os("MNEMO_GLOVE_DIR") else {
        assert!(
            std::env::var_os("MNEMO_REQUIRE_DATASETS").is_none(),
            "MNEMO_GLOVE_DIR is required"
        );
        eprintln!("skipping: MNEMO_GLOVE_DIR not set (see ../shared/data/README.md)");
        return;
    };
    let data = Path::new(&data);
    let mut base = mnemo_engine::vecs::read_fvecs(&data.join("base.fvecs")).unwrap();
    let queries = mnemo_engine::vecs::read_fvecs(&data.join("query.fvecs")).unwrap();
    assert_eq!((base.len(), queries.len()), (399_000, 1_000));
    let full = std::env::var("MNEMO_GLOVE_LIMIT").is_ok_and(|v| v == "all");
    let truth: Vec<HashSet<u64>> = if full {
        let gt = mnemo_engine::vecs::read_ivecs(&data.join("gt_cosine_top100.ivecs")).unwrap();
        gt.iter()
            .map(|g| g[..10].iter().map(|&i| i as u64 + 1).collect())
            .collect()
    } else {
        base.truncate(50_000);
        let unit_base: Vec<Vec<f32>> = base.iter().map(|b| unit(b)).collect();
        queries.iter().map(|q| exact_top10(&unit_base, q)).collect()
    };

    let dir = tempfile::tempdir().unwrap();
    let e = mnemo_engine::Engine::open(config(dir.path())).unwrap();
    e.create_space("glove", SpaceConfig::new(50)).unwrap(); // default parameters
    let started = Instant::now();
    let mut last = 0;
    for chunk in base.chunks(4096) {
        let tickets: Vec<_> = chunk
            .iter()
            .map(|v| {
                e.observe_waiting(
                    "glove",
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
            last = t.wait().unwrap().lsn;
        }
    }
    assert_eq!(last, base.len() as u64);
    e.wait_indexed("glove", last, Duration::from_secs(3600))
        .unwrap();
    let built = started.elapsed();

    let started = Instant::now();
    let mut hits = 0usize;
    for (q, truth) in queries.iter().zip(&truth) {
        let res = e
            .recall("glove", RecallRequest::new(q.clone(), 10))
            .unwrap()
            .collect_all()
            .unwrap();
        hits += res.iter().filter(|m| truth.contains(&m.lsn)).count();
    }
    let recall = hits as f64 / (10.0 * queries.len() as f64);
    eprintln!(
        "GloVe-50 n={} recall@10 = {recall:.4} (ingest+index {:.1}s, {} queries in {:.2}s)",
        base.len(),
        built.as_secs_f64(),
        queries.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(recall >= 0.95, "recall@10 {recall:.4} < 0.95");
}
