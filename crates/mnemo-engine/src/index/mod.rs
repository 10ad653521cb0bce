//! Vector search in three tiers: the exact [`fresh`] tier for just-committed
//! records, the quantized IVF [`warm`] tier that absorbs ingest faster than the graph
//! is built, and the approximate [`hnsw`] graph; plus the scoring kernels.

pub(crate) mod fresh;
pub(crate) mod gate;
pub(crate) mod hnsw;
pub(crate) mod score;
pub(crate) mod scrub;
pub(crate) mod topk;
pub(crate) mod warm;

/// Pseudo-random vectors in [-0.5, 0.5), seeded (tests of this module).
#[cfg(test)]
pub(crate) fn test_noise(seed: u64, n: usize, dim: usize) -> Vec<Vec<f32>> {
    let mut x = seed;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    (0..n).map(|_| (0..dim).map(|_| next()).collect()).collect()
}
