//! Exact similarity kernels. Loops are written over fixed-width lanes so the
//! compiler vectorises them; scores are "higher is better" for every metric.

use crate::types::Metric;

const LANES: usize = 8;

/// Dot product.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ac, at) = a.split_at(a.len() - a.len() % LANES);
    let (bc, bt) = b.split_at(ac.len().min(b.len()));
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + at.iter().zip(bt).map(|(x, y)| x * y).sum::<f32>()
}

/// Squared Euclidean distance.
pub(crate) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ac, at) = a.split_at(a.len() - a.len() % LANES);
    let (bc, bt) = b.split_at(ac.len().min(b.len()));
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>()
        + at.iter()
            .zip(bt)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
}

/// Returns `v` prepared for scoring under `metric`: unit length for cosine
/// (a zero vector stays zero), unchanged otherwise.
pub(crate) fn prepare(metric: Metric, v: &[f32]) -> Vec<f32> {
    let mut out = v.to_vec();
    if metric == Metric::Cosine {
        let norm = dot(v, v).sqrt();
        if norm > 0.0 {
            out.iter_mut().for_each(|x| *x /= norm);
        }
    }
    out
}

/// Score of a prepared row against a prepared cue.
pub(crate) fn score(metric: Metric, cue: &[f32], row: &[f32]) -> f32 {
    match metric {
        Metric::Cosine | Metric::InnerProduct => dot(cue, row),
        Metric::L2 => -l2sq(cue, row),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_naive_sums() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.25).collect();
        let naive_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let naive_l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((dot(&a, &b) - naive_dot).abs() < 1e-2);
        assert!((l2sq(&a, &b) - naive_l2).abs() < 1e-2);
    }

    #[test]
    fn cosine_prepares_unit_vectors() {
        let p = prepare(Metric::Cosine, &[3.0, 4.0]);
        assert!((p[0] - 0.6).abs() < 1e-6 && (p[1] - 0.8).abs() < 1e-6);
        assert_eq!(prepare(Metric::Cosine, &[0.0, 0.0]), vec![0.0, 0.0]);
        assert_eq!(prepare(Metric::L2, &[3.0, 4.0]), vec![3.0, 4.0]);
        assert!((score(Metric::Cosine, &p, &p) - 1.0).abs() < 1e-6);
        assert_eq!(score(Metric::L2, &[0.0, 0.0], &[3.0, 4.0]), -25.0);
    }
}
