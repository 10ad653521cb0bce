//! Snapshot isolation while writers and index workers run.
use crate::common::*;
use mnemo_engine::{Engine, Metric, RecallRequest, SnapshotSpec, SpaceConfig};
use proptest::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn brute_force(
    e: &Engine,
    space: &str,
    metric: Metric,
    cue: &[f32],
    snapshot: u64,
    k: usize,
) -> Vec<u64> {
    let mut all: Vec<(u64, f32)> = (1..=snapshot)
        .map(|lsn| {
            let v = e.get(space, lsn).unwrap().embedding;
            let s = match metric {
                Metric::L2 => -v
                    .iter()
                    .zip(cue)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>(),
                _ => v.iter().zip(cue).map(|(a, b)| a * b).sum::<f32>(),
            };
            (lsn, s)
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.into_iter().take(k).map(|x| x.0).collect()
}

#[test]
fn recall_never_sees_past_its_snapshot_while_writers_run() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(open(dir.path()));
    e.create_space("s", SpaceConfig::new(16)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (e, stop) = (e.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut r = rng(100 + t);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 1500 {
                    e.observe_blocking("s", obs("w", random_vec(&mut r, 16)))
                        .unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    let mut r = rng(7);
    let mut checked = 0;
    while checked < 300 {
        let cursor = e
            .recall("s", RecallRequest::new(random_vec(&mut r, 16), 20))
            .unwrap();
        let s = cursor.snapshot();
        let hits = cursor.collect_all().unwrap();
        assert!(hits.iter().all(|h| h.lsn <= s), "result above snapshot {s}");
        assert_eq!(hits.len() as u64, s.min(20));
        // An explicit older snapshot still holds.
        if s > 10 {
            let req = RecallRequest {
                snapshot: SnapshotSpec::At(s / 2),
                ..RecallRequest::new(random_vec(&mut r, 16), 50)
            };
            let old = e.recall("s", req).unwrap().collect_all().unwrap();
            assert!(old.iter().all(|h| h.lsn <= s / 2));
        }
        checked += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
}

/// An acked observation is found by the next recall with its own vector as cue,
/// while writers fill a fresh tier of thousands of rows (so recalls scan it in two
/// passes: sign codes, then 8-bit codes) and index workers move rows into the graph
/// and drop finished chunks under the scan.
#[test]
fn acked_observations_are_found_while_the_tier_moves_into_the_graph() {
    const DIM: usize = 384;
    const PER_WRITER: usize = 4000;
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(open(dir.path()));
    e.create_space("s", SpaceConfig::new(DIM as u32)).unwrap();
    let last = Arc::new(std::sync::Mutex::new(None::<(u64, Vec<f32>)>));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (e, last) = (e.clone(), last.clone());
            std::thread::spawn(move || {
                let mut r = rng(300 + t);
                for _ in 0..PER_WRITER {
                    let v = random_vec(&mut r, DIM);
                    let acked = e.observe_blocking("s", obs("w", v.clone())).unwrap();
                    *last.lock().unwrap() = Some((acked.lsn, v));
                }
            })
        })
        .collect();
    let (mut checked, mut largest_tier) = (0, 0);
    while writers.iter().any(|w| !w.is_finished()) || checked < 50 {
        let Some((lsn, v)) = last.lock().unwrap().clone() else {
            continue;
        };
        let fresh = e.describe_space("s").unwrap().1.fresh_count;
        largest_tier = largest_tier.max(fresh);
        let hits = e
            .recall("s", RecallRequest::new(v, 10))
            .unwrap()
            .collect_all()
            .unwrap();
        assert!(
            hits.iter().any(|h| h.lsn == lsn),
            "acked LSN {lsn} not recalled (fresh tier {fresh} rows)"
        );
        checked += 1;
    }
    for w in writers {
        w.join().unwrap();
    }
    eprintln!("{checked} recalls, fresh tier up to {largest_tier} rows");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// On a small space, a recall at snapshot S returns exactly the brute-force
    /// top-k of the records with LSN <= S, while writers append past S and index
    /// workers move records from the fresh tier into HNSW.
    #[test]
    fn small_space_recall_is_exact_top_k_of_the_snapshot(
        seed in any::<u64>(),
        n_before in 1usize..400,
        k in 1usize..30,
        l2 in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let e = Arc::new(open(dir.path()));
        let metric = if l2 { Metric::L2 } else { Metric::Cosine };
        let mut cfg = SpaceConfig { metric, ..SpaceConfig::new(8) };
        cfg.index.ef_search = 512; // small space: make the graph search exhaustive
        cfg.index.precision = mnemo_engine::Precision::F32;
        e.create_space("p", cfg).unwrap();
        let mut r = rng(seed);
        let mk = |r: &mut rand::rngs::StdRng| {
            let v = random_vec(r, 8);
            if l2 { v } else { let n = v.iter().map(|x| x * x).sum::<f32>().sqrt(); v.iter().map(|x| x / n).collect() }
        };
        for _ in 0..n_before {
            e.observe_blocking("p", obs("b", mk(&mut r))).unwrap();
        }
        let writer = {
            let e = e.clone();
            let mut r2 = rng(seed ^ 0xfeed);
            std::thread::spawn(move || for _ in 0..200 { e.observe_blocking("p", obs("a", random_vec(&mut r2, 8))).unwrap(); })
        };
        let snap = n_before as u64;
        let cue = mk(&mut r);
        let req = RecallRequest { snapshot: SnapshotSpec::At(snap), ..RecallRequest::new(cue.clone(), k) };
        let got: Vec<u64> = e.recall("p", req).unwrap().collect_all().unwrap().iter().map(|m| m.lsn).collect();
        writer.join().unwrap();
        let want = brute_force(&e, "p", metric, &cue, snap, k);
        prop_assert_eq!(got, want);
    }
}
