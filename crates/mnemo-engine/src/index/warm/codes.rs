//! The warm tier's 1-bit codes (RaBitQ-style) and the estimator that scores them.
//!
//! A row `x` assigned to centroid `c` keeps the signs of its rotated residual
//! `y = P(x - c)` (1 bit per dimension) and one factor `f = |y|² / |y|₁`. For a cue
//! `q`, `|q - x|² = |q - c|² + |x - c|² - 2 (q - c)·(x - c)`, and
//! `(q - c)·(x - c) = P(q - c)·y ≈ f · <b, P(q - c)>` where `b` is the ±1 vector of
//! the signs: the RaBitQ estimator, whose error grows with `|q - c|·|x - c|` and
//! shrinks as `1/√dim`. (Estimating `q·(x - c)` instead would scale the error with
//! `|q|`, which on clustered data dwarfs the differences between a cluster's rows.)
//!
//! `P` is a random orthonormal rotation, cheap to apply: per round, random signs, a
//! random permutation, a Walsh–Hadamard transform over the first `2^k ≤ dim`
//! coordinates, random signs again and one over the last `2^k` (the two blocks
//! overlap, so every coordinate is mixed with others). Without it, the signs of
//! coordinates that carry most of a row's energy would say most of what is known.
//!
//! `<b, Pq> = 2·Σ_{bᵢ=1}(Pq)ᵢ − Σ(Pq)ᵢ`; the first sum is computed with the cue
//! quantised to 4 bits per coordinate, as four bit planes, so a row costs a few
//! POPCNTs per 64 dimensions.
//!
//! The 1-bit estimate only shortlists: on data where a cluster's rows differ by
//! little (isotropic noise around a center), its error is as large as the
//! differences. Each row also keeps `y` at 4 bits per coordinate (one scale per
//! row), and the shortlist is ranked again with those before the exact re-score.

/// Rounds of the rotation (each: signs, permutation, two overlapping transforms).
const ROUNDS: usize = 2;

/// A small deterministic generator (SplitMix64): the rotation and the k-means
/// seeding must be the same for the same seed, and nothing here needs more.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

struct Round {
    signs_in: Vec<f32>,
    permutation: Vec<u32>,
    signs_mid: Vec<f32>,
}

/// The random rotation `P` (see the module docs).
pub(crate) struct Rotation {
    dim: usize,
    block: usize,
    rounds: Vec<Round>,
}

impl Rotation {
    pub(crate) fn new(dim: usize, seed: u64) -> Self {
        let mut rng = SplitMix(seed);
        let block = if dim == 0 { 0 } else { 1 << dim.ilog2() };
        let signs = |rng: &mut SplitMix| -> Vec<f32> {
            (0..dim)
                .map(|_| if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 })
                .collect()
        };
        let rounds = (0..ROUNDS)
            .map(|_| {
                let signs_in = signs(&mut rng);
                let mut permutation: Vec<u32> = (0..dim as u32).collect();
                for i in (1..dim).rev() {
                    permutation.swap(i, rng.below(i + 1));
                }
                let signs_mid = signs(&mut rng);
                Round {
                    signs_in,
                    permutation,
                    signs_mid,
                }
            })
            .collect();
        Rotation { dim, block, rounds }
    }

    /// `P v`, into `out` (`scratch` is reused between calls).
    pub(crate) fn apply(&self, v: &[f32], out: &mut Vec<f32>, scratch: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(v);
        out.resize(self.dim, 0.0);
        let (dim, block) = (self.dim, self.block);
        for round in &self.rounds {
            scratch.clear();
            scratch.extend(
                round
                    .permutation
                    .iter()
                    .map(|&p| out[p as usize] * round.signs_in[p as usize]),
            );
            std::mem::swap(out, scratch);
            hadamard(&mut out[..block]);
            out.iter_mut()
                .zip(&round.signs_mid)
                .for_each(|(x, s)| *x *= s);
            hadamard(&mut out[dim - block..]);
        }
    }
}

/// In-place orthonormal Walsh–Hadamard transform (`v.len()` a power of two).
fn hadamard(v: &mut [f32]) {
    let n = v.len();
    let mut h = 1;
    while h < n {
        for start in (0..n).step_by(2 * h) {
            let (lo, hi) = v[start..start + 2 * h].split_at_mut(h);
            for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
                let (x, y) = (*a, *b);
                *a = x + y;
                *b = x - y;
            }
        }
        h *= 2;
    }
    let norm = 1.0 / (n as f32).sqrt();
    v.iter_mut().for_each(|x| *x *= norm);
}

/// 64-bit words of a row's code.
pub(crate) fn code_words(dim: usize) -> usize {
    dim.div_ceil(64)
}

/// Encodes the rotated residual `y`: its sign bits into `code`, and returns the
/// factor `|y|² / |y|₁` (0 for a row on its centroid).
pub(crate) fn encode(y: &[f32], code: &mut Vec<u64>) -> f32 {
    let (mut sq, mut abs) = (0.0f32, 0.0f32);
    for chunk in y.chunks(64) {
        let mut word = 0u64;
        for (j, &x) in chunk.iter().enumerate() {
            word |= u64::from(x > 0.0) << j;
            sq += x * x;
            abs += x.abs();
        }
        code.push(word);
    }
    if abs > 0.0 { sq / abs } else { 0.0 }
}

/// Bytes of a row's 4-bit code.
pub(crate) fn nibble_bytes(dim: usize) -> usize {
    dim.div_ceil(2)
}

/// `y` at 4 bits per coordinate (symmetric, -7..=7, two per byte) into `out`;
/// returns the scale (`yᵢ ≈ scale · codeᵢ`).
pub(crate) fn encode_nibbles(y: &[f32], out: &mut Vec<u8>) -> f32 {
    let max = y.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 7.0 } else { 1.0 };
    let level = |x: f32| ((x / scale).round().clamp(-7.0, 7.0) as i8 as u8) & 0x0F;
    for pair in y.chunks(2) {
        let low = level(pair[0]);
        let high = pair.get(1).map_or(0, |&x| level(x));
        out.push(low | (high << 4));
    }
    scale
}

/// A row's 4-bit code as one signed byte per coordinate, into `out` (`dim` long),
/// for the 8-bit dot kernel.
#[inline]
pub(crate) fn unpack_nibbles(code: &[u8], out: &mut [i8]) {
    for (pair, byte) in out.chunks_mut(2).zip(code) {
        // A nibble as a signed value: shift it to the top of an i8, back down.
        pair[0] = ((byte << 4) as i8) >> 4;
        if let Some(high) = pair.get_mut(1) {
            *high = (*byte as i8) >> 4;
        }
    }
}

/// `cue · y` for a row's 4-bit code and scale (the reference the scan's kernel is
/// tested against).
#[cfg(test)]
pub(crate) fn nibble_dot(code: &[u8], scale: f32, cue: &[f32]) -> f32 {
    // A nibble as a signed value: shift it to the top of an i8, back down.
    let signed = |n: u8| f32::from(((n << 4) as i8) >> 4);
    let mut acc = [0.0f32; 2];
    for (byte, pair) in code.iter().zip(cue.chunks(2)) {
        acc[0] += signed(byte & 0x0F) * pair[0];
        if let Some(x) = pair.get(1) {
            acc[1] += signed(byte >> 4) * x;
        }
    }
    scale * (acc[0] + acc[1])
}

/// A cue prepared for scoring the codes of one list: `P(q - c)` quantised to 4
/// bits as bit planes.
pub(crate) struct CodedCue {
    /// `planes[k]` holds bit `k` of every coordinate's 4-bit value.
    planes: [Vec<u64>; 4],
    low: f32,
    step: f32,
    /// `Σ(Pq)ᵢ`.
    sum: f32,
}

impl CodedCue {
    /// `rotated` is `P(q - c)`.
    pub(crate) fn new(rotated: &[f32]) -> Self {
        let low = rotated.iter().copied().fold(f32::INFINITY, f32::min);
        let high = rotated.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let step = if high > low { (high - low) / 15.0 } else { 0.0 };
        let words = code_words(rotated.len());
        let mut planes: [Vec<u64>; 4] = std::array::from_fn(|_| vec![0u64; words]);
        for (i, &x) in rotated.iter().enumerate() {
            let level = if step > 0.0 {
                ((x - low) / step).round().clamp(0.0, 15.0) as u32
            } else {
                0
            };
            for (k, plane) in planes.iter_mut().enumerate() {
                plane[i / 64] |= u64::from((level >> k) & 1) << (i % 64);
            }
        }
        CodedCue {
            planes,
            low,
            step,
            sum: rotated.iter().sum(),
        }
    }

    /// `<b, P(q - c)>` for the code `code`.
    #[inline(always)]
    pub(crate) fn signed_dot(&self, code: &[u64]) -> f32 {
        let (mut ones, mut weighted) = (0u32, 0u32);
        for (w, &c) in code.iter().enumerate() {
            ones += c.count_ones();
            weighted += (c & self.planes[0][w]).count_ones()
                + 2 * (c & self.planes[1][w]).count_ones()
                + 4 * (c & self.planes[2][w]).count_ones()
                + 8 * (c & self.planes[3][w]).count_ones();
        }
        let set_sum = self.low * ones as f32 + self.step * weighted as f32;
        2.0 * set_sum - self.sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::score::dot;

    #[test]
    fn the_rotation_keeps_lengths_and_dot_products() {
        for dim in [8, 50, 100, 384, 768] {
            let rot = Rotation::new(dim, 7);
            let v = crate::index::test_noise(1, 2, dim);
            let (mut a, mut b, mut s) = (Vec::new(), Vec::new(), Vec::new());
            rot.apply(&v[0], &mut a, &mut s);
            rot.apply(&v[1], &mut b, &mut s);
            let (before, after) = (dot(&v[0], &v[1]), dot(&a, &b));
            assert!((before - after).abs() < 1e-4, "{dim}: {before} vs {after}");
            let (n0, n1) = (dot(&v[0], &v[0]), dot(&a, &a));
            assert!((n0 - n1).abs() < 1e-4 * n0.max(1.0), "{dim}");
            assert_ne!(a, v[0], "it rotates");
        }
    }

    #[test]
    fn four_bit_codes_estimate_closely() {
        let dim = 101;
        let v = crate::index::test_noise(2, 2, dim);
        let mut code = Vec::new();
        let scale = encode_nibbles(&v[0], &mut code);
        assert_eq!(code.len(), nibble_bytes(dim));
        let (est, exact) = (nibble_dot(&code, scale, &v[1]), dot(&v[0], &v[1]));
        let bound = 0.05 * dot(&v[0], &v[0]).sqrt() * dot(&v[1], &v[1]).sqrt();
        assert!((est - exact).abs() < bound, "{est} vs {exact}");
        let mut unpacked = vec![0i8; dim];
        unpack_nibbles(&code, &mut unpacked);
        let as_f32: Vec<f32> = unpacked.iter().map(|&x| f32::from(x) * scale).collect();
        assert!((dot(&as_f32, &v[1]) - est).abs() < 1e-4);
    }

    /// The estimate follows the true dot product closely at 768 dimensions.
    #[test]
    fn the_estimate_tracks_the_dot_product() {
        let dim = 768;
        let rot = Rotation::new(dim, 3);
        let rows = crate::index::test_noise(5, 200, dim);
        let cue = &crate::index::test_noise(9, 1, dim)[0];
        let (mut pq, mut s) = (Vec::new(), Vec::new());
        rot.apply(cue, &mut pq, &mut s);
        let coded = CodedCue::new(&pq);
        let (mut err, mut scale) = (0.0f32, 0.0f32);
        for row in &rows {
            let mut y = Vec::new();
            rot.apply(row, &mut y, &mut s);
            let mut code = Vec::new();
            let f = encode(&y, &mut code);
            let estimate = f * coded.signed_dot(&code);
            let exact = dot(cue, row);
            err += (estimate - exact).powi(2);
            scale += dot(row, row).sqrt() * dot(cue, cue).sqrt();
        }
        // Relative RMS error ~ 1/√dim·(π/2 - 1)^½ ≈ 0.03 of |q||x|.
        let rel = (err / rows.len() as f32).sqrt() / (scale / rows.len() as f32);
        assert!(rel < 0.06, "relative error {rel}");
    }
}
