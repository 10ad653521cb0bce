//! What the load generator sends: seeded clustered synthetic vectors (made on the
//! fly from their index, so a million of them cost no client memory) or the rows of
//! a `.fvecs` data set; the queries; and exact ground truth by brute force.

use anyhow::Context;
use mnemo_client::pb::Metric;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use std::path::Path;
use uuid::Uuid;

/// Similarity as the server ranks it: higher is nearer.
fn score(metric: Metric, q: &[f32], q_norm: f32, v: &[f32]) -> f32 {
    match metric {
        Metric::L2 => -q.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
        Metric::InnerProduct => dot(q, v),
        Metric::Cosine => {
            let n = q_norm * dot(v, v).sqrt();
            if n == 0.0 { 0.0 } else { dot(q, v) / n }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const CLUSTER_NOISE: f32 = 0.3;
/// Marks probe ids apart from workload ids (same run nonce, top bit set).
const PROBE_MARK: u64 = 1 << 63;

enum Vectors {
    /// Centres drawn from the seed; row i = centre (i mod C) + seeded noise of row i.
    Synthetic {
        seed: u64,
        centres: Vec<Vec<f32>>,
    },
    Dataset(Vec<Vec<f32>>),
}

/// The rows to observe and how to name them.
pub(crate) struct Workload {
    vectors: Vectors,
    dim: usize,
    /// Ids are `nonce:index` UUIDs, so a recall result maps back to its row.
    nonce: u64,
}

impl Workload {
    pub(crate) fn synthetic(dim: usize, clusters: usize, seed: u64, nonce: u64) -> Self {
        let mut r = SmallRng::seed_from_u64(seed);
        let centres = (0..clusters.max(1))
            .map(|_| (0..dim).map(|_| r.random_range(-1.0f32..1.0)).collect())
            .collect();
        Workload {
            vectors: Vectors::Synthetic { seed, centres },
            dim,
            nonce: nonce & !PROBE_MARK,
        }
    }

    pub(crate) fn dataset(path: &Path, nonce: u64) -> anyhow::Result<Self> {
        let rows = read_fvecs(path)?;
        let dim = rows.first().map_or(0, Vec::len);
        anyhow::ensure!(dim > 0, "{} holds no vectors", path.display());
        anyhow::ensure!(
            rows.iter().all(|r| r.len() == dim),
            "{} mixes dimensions",
            path.display()
        );
        Ok(Workload {
            vectors: Vectors::Dataset(rows),
            dim,
            nonce: nonce & !PROBE_MARK,
        })
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Rows available: `None` = unbounded (synthetic).
    pub(crate) fn len(&self) -> Option<u64> {
        match &self.vectors {
            Vectors::Synthetic { .. } => None,
            Vectors::Dataset(rows) => Some(rows.len() as u64),
        }
    }

    /// Row `i` (deterministic).
    pub(crate) fn vector(&self, i: u64) -> Vec<f32> {
        match &self.vectors {
            Vectors::Dataset(rows) => rows[i as usize % rows.len()].clone(),
            Vectors::Synthetic { seed, centres } => {
                let mut r =
                    SmallRng::seed_from_u64(seed ^ (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                centres[i as usize % centres.len()]
                    .iter()
                    .map(|c| c + r.random_range(-CLUSTER_NOISE..CLUSTER_NOISE))
                    .collect()
            }
        }
    }

    pub(crate) fn id(&self, i: u64) -> String {
        Uuid::from_u64_pair(self.nonce, i).to_string()
    }

    /// The row index of a workload id; `None` for probes and foreign ids.
    #[cfg(test)]
    fn index_of(&self, id: &str) -> Option<u64> {
        let (nonce, i) = Uuid::parse_str(id).ok()?.as_u64_pair();
        (nonce == self.nonce).then_some(i)
    }

    /// The probe number of a probe id; `None` for rows and foreign ids.
    pub(crate) fn probe_index(&self, id: &str) -> Option<u64> {
        let (nonce, p) = Uuid::parse_str(id).ok()?.as_u64_pair();
        (nonce == self.nonce | PROBE_MARK).then_some(p)
    }

    /// Similarity of `v` to `query` as the server ranks it (higher is nearer).
    pub(crate) fn score(&self, metric: Metric, query: &[f32], v: &[f32]) -> f32 {
        score(metric, query, dot(query, query).sqrt(), v)
    }

    pub(crate) fn probe_id(&self, p: u64) -> String {
        Uuid::from_u64_pair(self.nonce | PROBE_MARK, p).to_string()
    }

    /// A probe's vector, drawn like the rows (a memory like any other) from a seed
    /// stream of its own: a point far from all the data would test how an
    /// approximate graph reaches outliers, not how soon a record is visible.
    pub(crate) fn probe_vector(&self, seed: u64, p: u64) -> Vec<f32> {
        let mut r =
            SmallRng::seed_from_u64(seed ^ PROBE_MARK ^ p.wrapping_mul(0xD1B5_4A32_D192_ED03));
        match &self.vectors {
            Vectors::Synthetic { centres, .. } => {
                let c = &centres[r.random_range(0..centres.len())];
                c.iter()
                    .map(|x| x + r.random_range(-CLUSTER_NOISE..CLUSTER_NOISE))
                    .collect()
            }
            Vectors::Dataset(rows) => rows[r.random_range(0..rows.len())]
                .iter()
                .map(|x| x * r.random_range(0.9f32..1.1))
                .collect(),
        }
    }

    /// `n` query vectors drawn like the rows but from their own seed stream.
    pub(crate) fn synthetic_queries(&self, seed: u64, n: usize) -> Vec<Vec<f32>> {
        let mut r = SmallRng::seed_from_u64(seed.rotate_left(17) ^ 0x5151);
        match &self.vectors {
            Vectors::Synthetic { centres, .. } => (0..n)
                .map(|_| {
                    let c = &centres[r.random_range(0..centres.len())];
                    c.iter()
                        .map(|x| x + r.random_range(-CLUSTER_NOISE..CLUSTER_NOISE))
                        .collect()
                })
                .collect(),
            // Rows of the set itself, jittered, when it has no query file.
            Vectors::Dataset(rows) => (0..n)
                .map(|_| {
                    rows[r.random_range(0..rows.len())]
                        .iter()
                        .map(|x| x * r.random_range(0.95f32..1.05))
                        .collect()
                })
                .collect(),
        }
    }

    /// The exact `k` nearest among `rows` for each query (all cores).
    pub(crate) fn exact_top_k(
        &self,
        metric: Metric,
        rows: &[u64],
        queries: &[Vec<f32>],
        k: usize,
    ) -> Vec<Vec<u64>> {
        let threads = std::thread::available_parallelism().map_or(2, |c| c.get());
        let chunk = queries.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let parts: Vec<_> = queries
                .chunks(chunk)
                .map(|qs| s.spawn(move || self.scan_top_k(metric, rows, qs, k)))
                .collect();
            parts
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    }

    fn scan_top_k(
        &self,
        metric: Metric,
        rows: &[u64],
        queries: &[Vec<f32>],
        k: usize,
    ) -> Vec<Vec<u64>> {
        let norms: Vec<f32> = queries.iter().map(|q| dot(q, q).sqrt()).collect();
        // Per query: the best k so far, sorted best first.
        let mut best: Vec<Vec<(f32, u64)>> = vec![Vec::with_capacity(k + 1); queries.len()];
        for &i in rows {
            let v = self.vector(i);
            for ((q, norm), top) in queries.iter().zip(&norms).zip(best.iter_mut()) {
                let s = score(metric, q, *norm, &v);
                if top.len() == k && top.last().is_some_and(|w| w.0 >= s) {
                    continue;
                }
                let at = top.partition_point(|e| e.0 >= s);
                top.insert(at, (s, i));
                top.truncate(k);
            }
        }
        best.into_iter()
            .map(|t| t.into_iter().map(|(_, i)| i).collect())
            .collect()
    }
}

pub(crate) fn read_fvecs(path: &Path) -> anyhow::Result<Vec<Vec<f32>>> {
    mnemo_engine::vecs::read_fvecs(path).with_context(|| format!("reading {}", path.display()))
}

pub(crate) fn read_ivecs(path: &Path) -> anyhow::Result<Vec<Vec<i32>>> {
    mnemo_engine::vecs::read_ivecs(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_deterministic_and_ids_map_back() {
        let w = Workload::synthetic(16, 4, 9, 77);
        assert_eq!(w.vector(5), w.vector(5));
        assert_ne!(w.vector(5), w.vector(6));
        assert_eq!(w.index_of(&w.id(123)), Some(123));
        assert_eq!(w.index_of(&w.probe_id(3)), None);
        assert_eq!(w.probe_index(&w.probe_id(3)), Some(3));
        assert_eq!(w.probe_index(&w.id(3)), None);
        assert_eq!(Workload::synthetic(16, 4, 9, 78).index_of(&w.id(1)), None);
    }

    #[test]
    fn exact_top_k_finds_the_rows_themselves() {
        let w = Workload::synthetic(8, 3, 1, 1);
        let queries: Vec<Vec<f32>> = [4u64, 17, 40].iter().map(|&i| w.vector(i)).collect();
        for metric in [Metric::Cosine, Metric::L2] {
            let rows: Vec<u64> = (0..50).collect();
            let top = w.exact_top_k(metric, &rows, &queries, 3);
            assert_eq!(
                top.iter().map(|t| t[0]).collect::<Vec<_>>(),
                vec![4, 17, 40]
            );
            assert!(top.iter().all(|t| t.len() == 3));
        }
    }
}
