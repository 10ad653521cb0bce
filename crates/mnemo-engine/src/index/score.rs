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

/// A vector as 8-bit codes: `codes[i] as f32 * scale ≈ v[i]` (symmetric, one scale
/// per vector: the largest magnitude maps to ±127). A quarter of the f32 bytes, so the
/// fresh tier's exact scan reads a quarter of the memory; the scan only picks
/// candidates, which are then re-scored in f32.
pub(crate) struct Quantized {
    pub(crate) codes: Vec<i8>,
    pub(crate) scale: f32,
    /// Squared norm of the original vector (exact), for L2 scores.
    pub(crate) sq_norm: f32,
}

/// Quantizes `v` (finite values) to 8-bit codes.
pub(crate) fn quantize(v: &[f32]) -> Quantized {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 0.0 };
    let codes = if scale > 0.0 {
        v.iter()
            .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
            .collect()
    } else {
        vec![0; v.len()]
    };
    Quantized {
        codes,
        scale,
        sq_norm: dot(v, v),
    }
}

/// Approximate score of a quantized row (`codes`, `scale`, `sq_norm`) against a
/// quantized cue, on the same scale as [`score`]. `dot_i8` is the kernel picked by
/// [`dot_i8_kernel`].
#[inline]
pub(crate) fn approx_score(
    metric: Metric,
    cue: &Quantized,
    codes: &[i8],
    scale: f32,
    sq_norm: f32,
    dot_i8: fn(&[i8], &[i8]) -> i32,
) -> f32 {
    let dot = dot_i8(&cue.codes, codes) as f32 * cue.scale * scale;
    match metric {
        Metric::Cosine | Metric::InnerProduct => dot,
        Metric::L2 => -(cue.sq_norm + sq_norm - 2.0 * dot),
    }
}

/// Dot product of two code vectors. No overflow: |code| ≤ 127 and dim ≤ 4096 keep
/// every partial sum far below `i32::MAX`.
fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum()
}

/// The fastest i8 dot kernel this CPU runs (checked once per call site, not per row).
pub(crate) fn dot_i8_kernel() -> fn(&[i8], &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return avx2::dot_i8;
    }
    dot_i8_portable
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // AVX2 intrinsics, only reached after the CPU was checked for AVX2
mod avx2 {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm256_add_epi32, _mm256_cvtepi8_epi16,
        _mm256_madd_epi16, _mm256_setzero_si256, _mm256_storeu_si256,
    };

    /// Safe wrapper: [`super::dot_i8_kernel`] hands this out only when AVX2 is present.
    pub(super) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: this function is only selected after `is_x86_feature_detected!("avx2")`.
        unsafe { dot_i8_avx2(a, b) }
    }

    #[target_feature(enable = "avx2")]
    fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let mut acc = _mm256_setzero_si256();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n, so both 16-byte unaligned loads are in bounds.
            let (va, vb) = unsafe {
                (
                    _mm_loadu_si128(a.as_ptr().add(i).cast::<__m128i>()),
                    _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>()),
                )
            };
            // Widen 16 codes to i16, multiply pairwise and add adjacent pairs into i32.
            let prod = _mm256_madd_epi16(_mm256_cvtepi8_epi16(va), _mm256_cvtepi8_epi16(vb));
            acc = _mm256_add_epi32(acc, prod);
            i += 16;
        }
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` is 32 bytes, the size of one unaligned 256-bit store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast::<__m256i>(), acc) };
        let tail: i32 = a[i..n]
            .iter()
            .zip(&b[i..n])
            .map(|(x, y)| i32::from(*x) * i32::from(*y))
            .sum();
        lanes.iter().sum::<i32>() + tail
    }
}

/// Sign bits of `v - center`, 64 dimensions per word: bit `j` is set when
/// `v[j] > center[j]`. The fresh tier's first-pass code (see `fresh.rs`): 1 bit per
/// dimension, so the whole tier's codes are read 8× faster than its 8-bit codes.
pub(crate) fn sign_bits(v: &[f32], center: &[f32]) -> Vec<u64> {
    v.chunks(64)
        .zip(center.chunks(64))
        .map(|(v, c)| {
            v.iter()
                .zip(c)
                .enumerate()
                .fold(0u64, |w, (j, (x, c))| w | (u64::from(x > c) << j))
        })
        .collect()
}

/// Hamming distances from `cue` to each row of `rows` (sign codes of `cue.len()`
/// words each, back to back), appended to `out`; `histogram[d]` counts the rows at
/// distance `d` (it has a slot for every distance up to the bits of a code).
pub(crate) type HammingRows =
    fn(cue: &[u64], rows: &[u64], out: &mut Vec<u16>, histogram: &mut [u32]);

#[inline(always)]
fn hamming_rows_body(cue: &[u64], rows: &[u64], out: &mut Vec<u16>, histogram: &mut [u32]) {
    for row in rows.chunks_exact(cue.len().max(1)) {
        let d: u32 = cue.iter().zip(row).map(|(x, y)| (x ^ y).count_ones()).sum();
        histogram[d as usize] += 1;
        // At most 64 bits per word, and a code has at most 64 words (4,096 dims).
        out.push(d as u16);
    }
}

fn hamming_rows_portable(cue: &[u64], rows: &[u64], out: &mut Vec<u16>, histogram: &mut [u32]) {
    hamming_rows_body(cue, rows, out, histogram);
}

/// The fastest Hamming kernel this CPU runs (checked once per scan, not per row).
pub(crate) fn hamming_kernel() -> HammingRows {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        return popcnt::hamming_rows;
    }
    hamming_rows_portable
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // the POPCNT instruction, only reached after the CPU was checked for it
mod popcnt {
    /// Safe wrapper: [`super::hamming_kernel`] hands this out only when POPCNT is present.
    pub(super) fn hamming_rows(
        cue: &[u64],
        rows: &[u64],
        out: &mut Vec<u16>,
        histogram: &mut [u32],
    ) {
        // SAFETY: this function is only selected after `is_x86_feature_detected!("popcnt")`.
        unsafe { hamming_rows_popcnt(cue, rows, out, histogram) }
    }

    #[target_feature(enable = "popcnt")]
    fn hamming_rows_popcnt(cue: &[u64], rows: &[u64], out: &mut Vec<u16>, histogram: &mut [u32]) {
        super::hamming_rows_body(cue, rows, out, histogram);
    }
}

/// The score (as [`score`] gives it) that a graph distance stands for: usearch
/// reports `1 - cos` for cosine, `1 - dot` for inner product, the squared distance for L2.
pub(crate) fn from_distance(metric: Metric, distance: f32) -> f32 {
    match metric {
        Metric::Cosine | Metric::InnerProduct => 1.0 - distance,
        Metric::L2 => -distance,
    }
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

    #[test]
    fn i8_kernels_agree_with_the_portable_sum() {
        let kernel = dot_i8_kernel();
        for len in [0usize, 1, 15, 16, 17, 33, 768, 4096] {
            let a: Vec<i8> = (0..len).map(|i| ((i * 37) % 255) as i8).collect();
            let b: Vec<i8> = (0..len).map(|i| ((i * 91 + 5) % 255) as i8).collect();
            assert_eq!(kernel(&a, &b), dot_i8_portable(&a, &b), "len {len}");
        }
        let extreme = vec![-127i8; 4096];
        assert_eq!(kernel(&extreme, &extreme), 127 * 127 * 4096);
    }

    #[test]
    fn sign_bits_and_hamming_kernels() {
        let center = vec![0.5f32; 130];
        let a: Vec<f32> = (0..130)
            .map(|i| if i % 3 == 0 { 1.0 } else { 0.0 })
            .collect();
        let b: Vec<f32> = (0..130)
            .map(|i| if i % 2 == 0 { 1.0 } else { 0.0 })
            .collect();
        let (ba, bb) = (sign_bits(&a, &center), sign_bits(&b, &center));
        assert_eq!(ba.len(), 3);
        for (j, x) in a.iter().enumerate() {
            assert_eq!(ba[j / 64] >> (j % 64) & 1 == 1, *x > 0.5, "bit {j}");
        }
        let naive = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| (**x > 0.5) != (**y > 0.5))
            .count() as u16;
        // Rows: b, a, b.
        let rows: Vec<u64> = bb.iter().chain(&ba).chain(&bb).copied().collect();
        for kernel in [hamming_rows_portable as HammingRows, hamming_kernel()] {
            let (mut out, mut histogram) = (Vec::new(), vec![0u32; 193]);
            kernel(&ba, &rows, &mut out, &mut histogram);
            assert_eq!(out, vec![naive, 0, naive]);
            assert_eq!(histogram[usize::from(naive)], 2);
            assert_eq!(histogram[0], 1);
        }
        // The padding bits of the last word stay clear.
        assert_eq!(ba[2] >> 2, 0);
    }

    #[test]
    fn quantized_scores_track_exact_scores() {
        let a: Vec<f32> = (0..768)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..768)
            .map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let kernel = dot_i8_kernel();
        for metric in [Metric::Cosine, Metric::InnerProduct, Metric::L2] {
            let (pa, pb) = (prepare(metric, &a), prepare(metric, &b));
            let (qa, qb) = (quantize(&pa), quantize(&pb));
            let exact = score(metric, &pa, &pb);
            let approx = approx_score(metric, &qa, &qb.codes, qb.scale, qb.sq_norm, kernel);
            let tolerance = 0.01 * (1.0 + qa.sq_norm.sqrt() * qb.sq_norm.sqrt());
            assert!(
                (exact - approx).abs() < tolerance,
                "{metric:?}: {exact} vs {approx}"
            );
        }
        let zero = quantize(&[0.0, 0.0]);
        assert_eq!(
            (zero.codes, zero.scale, zero.sq_norm),
            (vec![0, 0], 0.0, 0.0)
        );
    }
}
