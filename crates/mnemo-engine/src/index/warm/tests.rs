use super::*;
use crate::index::score;

/// `n` unit vectors around `clusters` random centers (cosine-prepared).
fn clustered(seed: u64, n: usize, dim: usize, clusters: usize) -> Vec<Vec<f32>> {
    let centers = crate::index::test_noise(seed, clusters, dim);
    let noise = crate::index::test_noise(seed + 1, n, dim);
    noise
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let c = &centers[i % clusters];
            let v: Vec<f32> = c.iter().zip(e).map(|(c, e)| c + 0.6 * e).collect();
            score::prepare(Metric::Cosine, &v)
        })
        .collect()
}

/// What a k = 10 recall asks the warm tier for.
const POOL: usize = 10 + crate::recall::RESCORE_MARGIN;

fn filled(rows: &[Vec<f32>], dim: usize) -> WarmTier {
    let t = WarmTier::new(dim, Metric::Cosine, 1 << 20, 1);
    let sample: Vec<f32> = rows.iter().take(TRAIN_ROWS).flatten().copied().collect();
    assert!(t.train(&sample));
    for (i, part) in rows.chunks(500).enumerate() {
        let batch: Vec<(Lsn, Vec<f32>)> = part
            .iter()
            .enumerate()
            .map(|(j, v)| ((i * 500 + j) as Lsn + 1, v.clone()))
            .collect();
        assert!(t.insert(&batch));
    }
    t
}

/// Estimated candidates, the best re-scored exactly: the true top 10 is kept (with
/// the pool a k = 10 recall asks the tier for: 10 and the re-score margin).
#[test]
fn candidates_rescored_exactly_keep_the_true_top_ten() {
    let (dim, n) = (384, 20_000);
    let rows = clustered(7, n, dim, 100);
    let t = filled(&rows, dim);
    assert_eq!(t.len(), n);
    let queries = clustered(99, 50, dim, 100);
    let (mut hits, mut total) = (0, 0);
    for q in &queries {
        let mut exact: Vec<(Lsn, f32)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (i as Lsn + 1, score::dot(q, r)))
            .collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1));
        let truth: Vec<Lsn> = exact[..10].iter().map(|e| e.0).collect();
        let mut cue = WarmCue::new(q);
        let found = t.scan(
            &mut cue,
            WarmTier::rescore_count(POOL),
            WarmTier::default_probe(POOL),
            Lsn::MAX,
            &|_| false,
        );
        let mut rescored: Vec<(Lsn, f32)> = found
            .iter()
            .map(|&(l, _)| (l, score::dot(q, &rows[l as usize - 1])))
            .collect();
        rescored.sort_by(|a, b| b.1.total_cmp(&a.1));
        hits += rescored[..10]
            .iter()
            .filter(|r| truth.contains(&r.0))
            .count();
        total += 10;
    }
    let recall = hits as f64 / total as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
}

#[test]
fn scans_respect_the_snapshot_and_the_predicate() {
    let dim = 64;
    let rows = clustered(3, 3000, dim, 10);
    let t = filled(&rows, dim);
    let mut cue = WarmCue::new(&rows[0]);
    let got = t.scan(&mut cue, 50, LISTS, 1000, &|l| l % 2 == 0);
    assert_eq!(got.len(), 50);
    assert!(got.iter().all(|&(l, _)| l <= 1000 && l % 2 == 1));
    assert_eq!(got[0].0, 1, "the cue itself first");
}

/// Rows move to the graph in LSN order, one segment at a time; moved rows are no
/// longer scanned; the lowest pending LSN follows; an emptied segment is dropped.
#[test]
fn rows_move_in_order_and_leave_when_moved() {
    let dim = 64;
    let rows = clustered(5, 2000, dim, 8);
    let t = filled(&rows, dim);
    assert_eq!(t.lowest_pending(), Some(1));
    let mut seen = Vec::new();
    let moved = t
        .move_to_graph(700, |lsns, retry| {
            assert!(!retry);
            seen.extend_from_slice(lsns);
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(moved, 700);
    assert_eq!(seen, (1..=700).collect::<Vec<Lsn>>());
    assert_eq!(t.lowest_pending(), Some(701));
    let mut cue = WarmCue::new(&rows[0]);
    let got = t.scan(&mut cue, 2000, LISTS, Lsn::MAX, &|_| false);
    assert_eq!(got.len(), 1300);
    assert!(got.iter().all(|&(l, _)| l > 700));
    // Sealed: new rows go to a new segment, and do not join this move.
    assert!(t.insert(&[(5000, rows[0].clone())]));
    // A failed batch is offered again, flagged as a retry.
    assert!(t.move_to_graph(100, |_, _| Err(())).is_err());
    let again = t
        .move_to_graph(2000, |lsns, retry| {
            assert!(retry);
            assert_eq!(lsns.first(), Some(&701));
            assert_eq!(lsns.len(), 1300);
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(again, 1300);
    assert_eq!(t.len(), 1, "the first segment was dropped");
    assert_eq!(t.lowest_pending(), Some(5000));
    assert_eq!(t.flow(), (2001, 2000));
}

#[test]
fn no_codebook_no_rows_and_drift_asks_for_a_new_one() {
    let dim = 64;
    let t = WarmTier::new(dim, Metric::L2, 1 << 20, 1);
    assert!(!t.ready());
    assert!(!t.insert(&[(1, vec![0.0; dim])]));
    assert!(!t.train(&[0.0; 10]), "too small a sample");
    let rows = crate::index::test_noise(1, 2000, dim);
    let sample: Vec<f32> = rows.iter().flatten().copied().collect();
    assert!(t.train(&sample));
    assert!(t.ready());
    // Rows far from everything trained on: the segment, once full, flags drift.
    let far: Vec<(Lsn, Vec<f32>)> = (0..SEGMENT_ROWS)
        .map(|i| {
            (
                i as Lsn + 1,
                rows[i % rows.len()].iter().map(|x| x * 8.0).collect(),
            )
        })
        .collect();
    assert!(t.insert(&far));
    assert!(!t.ready(), "a new codebook is due");
    assert!(t.train(&sample));
    assert!(t.ready());
}

#[test]
fn no_warm_tier_below_the_minimum_dimension() {
    assert!(!WarmTier::new(MIN_DIM - 1, Metric::Cosine, 1 << 20, 1).enabled());
    assert!(WarmTier::new(MIN_DIM, Metric::Cosine, 1 << 20, 1).enabled());
}
