//! Centroids for the warm tier's lists: k-means trained on a sample of the space's
//! own rows, and the nearest-centroid assignment of batches. Both are dominated by
//! rows × centroids dot products, done as one matrix product (`matrixmultiply`,
//! which picks AVX/FMA kernels at run time) rather than a dot per pair.

use super::codes::SplitMix;

/// `out[i * k + j] = rows[i] · centroids[j]` for `n` rows and `k` centroids of `dim`.
pub(crate) fn dots(rows: &[f32], centroids: &[f32], dim: usize, out: &mut Vec<f32>) {
    let n = rows.len() / dim.max(1);
    let k = centroids.len() / dim.max(1);
    out.clear();
    out.resize(n * k, 0.0);
    if n == 0 || k == 0 {
        return;
    }
    assert!(rows.len() == n * dim && centroids.len() == k * dim);
    gemm::rows_times_centroids(n, k, dim, rows, centroids, out);
}

#[allow(unsafe_code)] // one call into matrixmultiply's raw-pointer GEMM
mod gemm {
    /// `out (n×k) = rows (n×dim) · centroidsᵀ (dim×k)`, all row-major.
    pub(super) fn rows_times_centroids(
        n: usize,
        k: usize,
        dim: usize,
        rows: &[f32],
        centroids: &[f32],
        out: &mut [f32],
    ) {
        assert!(rows.len() >= n * dim && centroids.len() >= k * dim && out.len() >= n * k);
        // SAFETY: the strides below address exactly `rows[..n*dim]` (row-major n×dim),
        // `centroids[..k*dim]` read as its transpose (dim×k), and `out[..n*k]`
        // (row-major n×k); the lengths were checked above and the slices do not alias
        // (`out` is borrowed mutably).
        unsafe {
            matrixmultiply::sgemm(
                n,
                dim,
                k,
                1.0,
                rows.as_ptr(),
                dim as isize,
                1,
                centroids.as_ptr(),
                1,
                dim as isize,
                0.0,
                out.as_mut_ptr(),
                k as isize,
                1,
            );
        }
    }
}

/// Index of the nearest centroid (squared L2) of each row: the largest
/// `row·c - |c|²/2`. `half_sq[j] = |c_j|² / 2`.
pub(crate) fn assign(
    rows: &[f32],
    centroids: &[f32],
    half_sq: &[f32],
    dim: usize,
    scratch: &mut Vec<f32>,
) -> Vec<u32> {
    dots(rows, centroids, dim, scratch);
    let k = half_sq.len();
    scratch
        .chunks_exact(k.max(1))
        .map(|d| {
            let mut best = (0u32, f32::NEG_INFINITY);
            for (j, (x, h)) in d.iter().zip(half_sq).enumerate() {
                let s = x - h;
                if s > best.1 {
                    best = (j as u32, s);
                }
            }
            best.0
        })
        .collect()
}

/// `|c|² / 2` for each centroid.
pub(crate) fn half_squares(centroids: &[f32], dim: usize) -> Vec<f32> {
    centroids
        .chunks_exact(dim.max(1))
        .map(|c| crate::index::score::dot(c, c) / 2.0)
        .collect()
}

/// Rows (of a `sample` holding `sample.len() / dim`) per centroid below which
/// fewer centroids are trained.
pub(crate) const ROWS_PER_LIST: usize = 32;

/// Trains up to `lists` centroids on `sample` (row-major, `dim` per row) with
/// `iterations` of Lloyd's algorithm, seeded from distinct sample rows. An empty
/// cluster is re-seeded from a random row. Returns the centroids, row-major.
pub(crate) fn train(
    sample: &[f32],
    dim: usize,
    lists: usize,
    iterations: usize,
    seed: u64,
) -> Vec<f32> {
    let n = sample.len() / dim.max(1);
    let k = lists.min(n / ROWS_PER_LIST).max(1).min(n.max(1));
    if n == 0 {
        return vec![0.0; dim];
    }
    let mut rng = SplitMix(seed);
    // Distinct rows as the first centroids (a partial shuffle of the indexes).
    let mut order: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + rng.below(n - i);
        order.swap(i, j);
    }
    let mut centroids: Vec<f32> = order[..k]
        .iter()
        .flat_map(|&i| sample[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let mut scratch = Vec::new();
    let mut sums = vec![0.0f64; k * dim];
    let mut counts = vec![0usize; k];
    for _ in 0..iterations {
        let half = half_squares(&centroids, dim);
        let owners = assign(sample, &centroids, &half, dim, &mut scratch);
        sums.fill(0.0);
        counts.fill(0);
        for (i, &c) in owners.iter().enumerate() {
            let c = c as usize;
            counts[c] += 1;
            let row = &sample[i * dim..(i + 1) * dim];
            for (s, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(row) {
                *s += f64::from(*x);
            }
        }
        for c in 0..k {
            let centroid = &mut centroids[c * dim..(c + 1) * dim];
            if counts[c] == 0 {
                let i = rng.below(n);
                centroid.copy_from_slice(&sample[i * dim..(i + 1) * dim]);
                continue;
            }
            let count = counts[c] as f64;
            for (x, s) in centroid.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                *x = (s / count) as f32;
            }
        }
    }
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_product_matches_dot_products() {
        let dim = 37;
        let rows: Vec<f32> = crate::index::test_noise(1, 9, dim).concat();
        let cents: Vec<f32> = crate::index::test_noise(2, 5, dim).concat();
        let mut out = Vec::new();
        dots(&rows, &cents, dim, &mut out);
        for i in 0..9 {
            for j in 0..5 {
                let want = crate::index::score::dot(
                    &rows[i * dim..(i + 1) * dim],
                    &cents[j * dim..(j + 1) * dim],
                );
                assert!((out[i * 5 + j] - want).abs() < 1e-4);
            }
        }
    }

    /// Four well-separated blobs: every trained centroid sits in a blob, and each
    /// row is assigned to the centroid of its own blob.
    #[test]
    fn training_finds_separated_clusters() {
        let dim = 16;
        let noise = crate::index::test_noise(4, 800, dim);
        let sample: Vec<f32> = noise
            .iter()
            .enumerate()
            .flat_map(|(i, v)| {
                let blob = (i % 4) as f32 * 10.0;
                v.iter()
                    .enumerate()
                    .map(move |(d, x)| x * 0.1 + if d == 0 { blob } else { 0.0 })
            })
            .collect();
        let cents = train(&sample, dim, 4, 10, 11);
        assert_eq!(cents.len(), 4 * dim);
        let half = half_squares(&cents, dim);
        let owners = assign(&sample, &cents, &half, dim, &mut Vec::new());
        for blob in 0..4 {
            let first = owners[blob];
            assert!(
                owners.iter().skip(blob).step_by(4).all(|&o| o == first),
                "blob {blob} split"
            );
        }
        let distinct: std::collections::HashSet<u32> = owners.iter().copied().collect();
        assert_eq!(distinct.len(), 4);
        // Few rows: fewer lists.
        assert_eq!(train(&sample[..64 * dim], dim, 256, 2, 1).len(), 2 * dim);
    }
}
