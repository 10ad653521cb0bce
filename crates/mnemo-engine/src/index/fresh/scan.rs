//! Scans of the fresh tier: one pass over the 8-bit codes (split among threads for
//! a large tier), or two passes (a Hamming shortlist over the sign codes, then
//! 8-bit scores) for a large tier with sign codes.

use std::sync::Arc;

use super::rows::Rows;
use super::{
    CHUNK_ROWS, Chunk, FreshTier, SHORTLIST_MIN, SHORTLIST_PER_RESULT, SHORTLIST_SHARE, sign_words,
};
use crate::index::score;
use crate::index::topk::TopK;
use crate::types::Lsn;

impl FreshTier {
    /// The `k` best rows by approximate (8-bit) score among rows with
    /// `lsn <= snapshot` and not `excluded`: `(lsn, approximate score)`, best first.
    /// Callers re-score the candidates exactly; ask for more than needed.
    pub(crate) fn scan(
        &self,
        cue: &[f32],
        k: usize,
        snapshot: Lsn,
        excluded: &(dyn Fn(Lsn) -> bool + Sync),
    ) -> Vec<(Lsn, f32)> {
        let chunks: Vec<Arc<Chunk>> = self
            .state
            .read()
            .chunks
            .iter()
            .take_while(|c| c.base <= snapshot)
            .cloned()
            .collect();
        let cue_codes = score::quantize(cue);
        if sign_words(self.dim, self.metric) > 0 {
            let rows = chunks.len() * CHUNK_ROWS;
            let shortlist = (k * SHORTLIST_PER_RESULT)
                .max(SHORTLIST_MIN)
                .max(rows / SHORTLIST_SHARE);
            if rows > shortlist {
                return self
                    .scan_two_pass(&chunks, cue, &cue_codes, k, shortlist, snapshot, excluded)
                    .into_sorted();
            }
        }
        let cue = cue_codes;
        let parts = scan_parts(chunks.len() * CHUNK_ROWS);
        if parts <= 1 {
            return self
                .scan_chunks(&chunks, &cue, k, snapshot, excluded)
                .into_sorted();
        }
        // A large tier is split among threads: a recall waits for its own scan, and
        // on a machine busy with (niced) indexing, each part gets a core.
        let per_part = chunks.len().div_ceil(parts);
        let mut top = TopK::new(k);
        std::thread::scope(|scope| {
            let mut parts = chunks.chunks(per_part);
            let first = parts.next().unwrap_or_default();
            let others: Vec<_> = parts
                .map(|part| scope.spawn(|| self.scan_chunks(part, &cue, k, snapshot, excluded)))
                .collect();
            top = self.scan_chunks(first, &cue, k, snapshot, excluded);
            for other in others {
                // A scan does not panic (no indexing out of its own rows); if one
                // did, the panic is the caller's, as in a single-threaded scan.
                match other.join() {
                    Ok(found) => top.merge(found),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
        top.into_sorted()
    }

    /// The `k` best rows of `chunks` (see [`FreshTier::scan`]).
    fn scan_chunks(
        &self,
        chunks: &[Arc<Chunk>],
        cue: &score::Quantized,
        k: usize,
        snapshot: Lsn,
        excluded: &dyn Fn(Lsn) -> bool,
    ) -> TopK {
        let dot_i8 = score::dot_i8_kernel();
        let mut top = TopK::new(k);
        for chunk in chunks {
            let rows = chunk.rows.read();
            let codes = rows.codes.chunks_exact(self.dim);
            let meta = rows.scales.iter().zip(&rows.sq_norms);
            for (i, (row, (scale, sq_norm))) in codes.zip(meta).enumerate() {
                let lsn = chunk.base + i as Lsn;
                if lsn > snapshot {
                    break;
                }
                let s = score::approx_score(self.metric, cue, row, *scale, *sq_norm, dot_i8);
                if top.admits(s) && !excluded(lsn) {
                    top.offer(lsn, s);
                }
            }
        }
        top
    }

    /// [`FreshTier::scan`] of a large tier with sign codes: the `shortlist` rows
    /// nearest the cue by Hamming distance (chunks without a center: all their rows)
    /// are scored with 8-bit codes, and the best `k` kept.
    #[allow(clippy::too_many_arguments)] // the scan's own arguments, passed through
    fn scan_two_pass(
        &self,
        chunks: &[Arc<Chunk>],
        cue: &[f32],
        cue_codes: &score::Quantized,
        k: usize,
        shortlist: usize,
        snapshot: Lsn,
        excluded: &dyn Fn(Lsn) -> bool,
    ) -> TopK {
        let words = sign_words(self.dim, self.metric);
        let hamming = score::hamming_kernel();
        let dot_i8 = score::dot_i8_kernel();
        let mut top = TopK::new(k);
        let score_row = |top: &mut TopK, rows: &Rows, i: usize, lsn: Lsn| {
            let codes = &rows.codes[i * self.dim..(i + 1) * self.dim];
            let s = score::approx_score(
                self.metric,
                cue_codes,
                codes,
                rows.scales[i],
                rows.sq_norms[i],
                dot_i8,
            );
            if top.admits(s) && !excluded(lsn) {
                top.offer(lsn, s);
            }
        };
        // Pass 1: the Hamming distance of every row with a sign code, in scan order,
        // and how many rows have each distance.
        let mut distances: Vec<u16> = Vec::with_capacity(chunks.len() * CHUNK_ROWS);
        let mut per_chunk = Vec::with_capacity(chunks.len());
        let mut histogram = vec![0u32; words * 64 + 1];
        let mut cue_signs: Option<(&Arc<[f32]>, Vec<u64>)> = None;
        for chunk in chunks {
            let rows = chunk.rows.read();
            let visible = rows.len().min(
                usize::try_from(snapshot.saturating_sub(chunk.base) + 1).unwrap_or(usize::MAX),
            );
            let Some(center) = &chunk.center else {
                for i in 0..visible {
                    score_row(&mut top, &rows, i, chunk.base + i as Lsn);
                }
                per_chunk.push(0);
                continue;
            };
            // Consecutive chunks often share a center (same `Arc`).
            if !cue_signs
                .as_ref()
                .is_some_and(|(c, _)| Arc::ptr_eq(c, center))
            {
                cue_signs = Some((center, score::sign_bits(cue, center)));
            }
            let signs = cue_signs.as_ref().map_or(&[][..], |(_, s)| s.as_slice());
            let before = distances.len();
            let codes = &rows.signs[..(visible * words).min(rows.signs.len())];
            hamming(signs, codes, &mut distances, &mut histogram);
            per_chunk.push(distances.len() - before);
        }
        // The cut: every row nearer than `cut`, and the first `at_cut` rows at it.
        let mut cut = 0;
        let mut nearer = 0;
        while cut < histogram.len() && nearer + (histogram[cut] as usize) < shortlist {
            nearer += histogram[cut] as usize;
            cut += 1;
        }
        let mut at_cut = shortlist - nearer;
        // Pass 2: score the shortlist.
        let mut distance = distances.iter();
        for (chunk, &visible) in chunks.iter().zip(&per_chunk) {
            if visible == 0 {
                continue;
            }
            let rows = chunk.rows.read();
            for (i, &d) in distance.by_ref().take(visible).enumerate() {
                let d = usize::from(d);
                let take = d < cut || (d == cut && at_cut > 0);
                if take {
                    if d == cut {
                        at_cut -= 1;
                    }
                    score_row(&mut top, &rows, i, chunk.base + i as Lsn);
                }
            }
        }
        top
    }
}

/// Rows from which a scan is split among threads.
const PARALLEL_SCAN_ROWS: usize = 8 * 1024;

/// Threads a scan of `rows` rows uses: one per core, one per `PARALLEL_SCAN_ROWS` rows.
fn scan_parts(rows: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (rows / PARALLEL_SCAN_ROWS).clamp(1, cores.min(4))
}

#[cfg(test)]
mod tests {
    use super::super::CENTER_ROWS;
    use super::*;
    use crate::types::{Metric, Precision};

    #[test]
    fn quantized_scan_candidates_hold_the_exact_top_k() {
        for (seed, metric) in [
            (1, Metric::Cosine),
            (2, Metric::L2),
            (3, Metric::InnerProduct),
        ] {
            let dim = 96;
            let t = FreshTier::new(dim, metric, Precision::F16, 1, 10_000);
            let rows = crate::index::test_noise(seed, 3000, dim);
            for (i, v) in rows.iter().enumerate() {
                t.push(i as Lsn + 1, v, false, false);
            }
            for cue in crate::index::test_noise(seed + 100, 20, dim) {
                let prepared = score::prepare(metric, &cue);
                let mut exact: Vec<(Lsn, f32)> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let s = score::score(metric, &prepared, &score::prepare(metric, v));
                        (i as Lsn + 1, s)
                    })
                    .collect();
                exact.sort_by(|a, b| b.1.total_cmp(&a.1));
                let got: Vec<Lsn> = t
                    .scan(&prepared, 10 + 32, 3000, &|_| false)
                    .iter()
                    .map(|c| c.0)
                    .collect();
                for (lsn, _) in &exact[..10] {
                    assert!(
                        got.contains(lsn),
                        "{metric:?}: exact hit {lsn} not a candidate"
                    );
                }
            }
        }
    }

    /// Clustered vectors: `clusters` centers in `[-0.5, 0.5)^dim + offset`, each row a
    /// center plus noise of `spread` (the shape of real embeddings: structure, and a
    /// mean away from the origin when `offset` is not 0).
    fn clustered(
        seed: u64,
        n: usize,
        dim: usize,
        clusters: usize,
        spread: f32,
        offset: f32,
    ) -> Vec<Vec<f32>> {
        let centers = crate::index::test_noise(seed, clusters, dim);
        let noise = crate::index::test_noise(seed + 1, n, dim);
        noise
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let c = &centers[(i * 7919) % clusters];
                c.iter()
                    .zip(&e)
                    .map(|(c, e)| c + offset + spread * e)
                    .collect()
            })
            .collect()
    }

    /// Share of the exact top 10 of each cue found among the `k` candidates of a scan.
    fn top10_kept(metric: Metric, rows: &[Vec<f32>], cues: &[Vec<f32>], k: usize) -> f64 {
        let dim = rows[0].len();
        let t = FreshTier::new(dim, metric, Precision::F16, 1, rows.len());
        for (i, v) in rows.iter().enumerate() {
            t.push(i as Lsn + 1, v, false, false);
        }
        let prepared_rows: Vec<Vec<f32>> = rows.iter().map(|v| score::prepare(metric, v)).collect();
        let mut kept = 0;
        for cue in cues {
            let prepared = score::prepare(metric, cue);
            let mut exact: Vec<(Lsn, f32)> = prepared_rows
                .iter()
                .enumerate()
                .map(|(i, v)| (i as Lsn + 1, score::score(metric, &prepared, v)))
                .collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            let got: Vec<Lsn> = t
                .scan(&prepared, k, rows.len() as Lsn, &|_| false)
                .iter()
                .map(|c| c.0)
                .collect();
            kept += exact[..10]
                .iter()
                .filter(|(lsn, _)| got.contains(lsn))
                .count();
        }
        kept as f64 / (10 * cues.len()) as f64
    }

    /// The two-pass scan keeps the exact top 10 among its candidates (as many as
    /// recall asks for) on clustered data, centered or not, for cosine and L2.
    #[test]
    fn two_pass_scan_keeps_the_exact_top_10_of_clustered_data() {
        for (offset, spread) in [(0.0, 0.5), (0.0, 0.2), (2.0, 1.0)] {
            let mut rows = clustered(5, 20_020, 768, 80, spread, offset);
            let cues = rows.split_off(20_000);
            for metric in [Metric::Cosine, Metric::L2] {
                let kept = top10_kept(metric, &rows, &cues, 42);
                assert!(
                    kept >= 0.99,
                    "{metric:?} offset {offset} spread {spread}: {kept}"
                );
            }
        }
    }

    /// With no structure to find, the shortlist's share of the rows still keeps
    /// nearly all of the exact top 10.
    #[test]
    fn two_pass_scan_on_unstructured_data() {
        let rows = crate::index::test_noise(21, 20_000, 768);
        let cues = crate::index::test_noise(22, 20, 768);
        let kept = top10_kept(Metric::Cosine, &rows, &cues, 42);
        assert!(kept >= 0.95, "{kept}");
    }

    /// The two-pass scan honours the snapshot and the exclusion like the one-pass scan.
    #[test]
    fn two_pass_scan_respects_snapshot_and_exclusion() {
        let rows = clustered(12, 3000, 256, 20, 0.5, 0.0);
        let t = FreshTier::new(256, Metric::Cosine, Precision::F32, 1, 10_000);
        for (i, v) in rows.iter().enumerate() {
            t.push(i as Lsn + 1, v, false, false);
        }
        let after = score::prepare(Metric::Cosine, &rows[2500]);
        let got = t.scan(&after, 50, 2000, &|_| false);
        assert_eq!(got.len(), 50);
        assert!(got.iter().all(|(lsn, _)| *lsn <= 2000));
        let cue = score::prepare(Metric::Cosine, &rows[1500]);
        assert_eq!(t.scan(&cue, 1, 2000, &|_| false)[0].0, 1501);
        let got = t.scan(&cue, 5, 2000, &|lsn| lsn == 1501);
        assert!(got.iter().all(|(lsn, _)| *lsn != 1501));
    }

    /// Inner product keeps the one-pass 8-bit scan (no sign codes), and low
    #[test]
    fn chunks_take_the_previous_chunks_mean_as_center() {
        let rows = clustered(8, CENTER_ROWS + 3 * CHUNK_ROWS, 256, 4, 0.5, 3.0);
        let t = FreshTier::new(256, Metric::L2, Precision::F32, 1, 10_000);
        for (i, v) in rows.iter().enumerate() {
            t.push(i as Lsn + 1, v, false, false);
        }
        let st = t.state.read();
        assert!(st.chunks[0].center.is_none());
        let center = st.chunks[1].center.as_deref().unwrap();
        let mean0 = rows[..CHUNK_ROWS].iter().map(|v| v[0]).sum::<f32>() / CHUNK_ROWS as f32;
        assert!((center[0] - mean0).abs() < 1e-4);
        assert_eq!(st.chunks[1].rows.read().signs.len(), CHUNK_ROWS * 4);
        // Shared until the next center, then a new one.
        let last = CENTER_ROWS / CHUNK_ROWS;
        assert!(Arc::ptr_eq(
            st.chunks[1].center.as_ref().unwrap(),
            st.chunks[last].center.as_ref().unwrap()
        ));
        let next = st.chunks[last + 1].center.as_ref().unwrap();
        assert!(!Arc::ptr_eq(st.chunks[1].center.as_ref().unwrap(), next));
        let rows_after = &rows[CHUNK_ROWS..CHUNK_ROWS + CENTER_ROWS];
        let mean1 = rows_after.iter().map(|v| v[0]).sum::<f32>() / CENTER_ROWS as f32;
        assert!((next[0] - mean1).abs() < 1e-3);
        drop(st);
        // A cue equal to a row finds that row first (sign distance 0).
        let got = t.scan(&rows[700], 1, rows.len() as Lsn, &|_| false);
        assert_eq!(got[0].0, 701);
    }

    #[test]
    fn a_scan_split_among_threads_equals_one_pass() {
        let rows = crate::index::test_noise(11, 3 * PARALLEL_SCAN_ROWS + 77, 16);
        let t = FreshTier::new(16, Metric::Cosine, Precision::F32, 1, rows.len());
        for (i, v) in rows.iter().enumerate() {
            t.push(i as Lsn + 1, v, false, false);
        }
        let chunks: Vec<Arc<Chunk>> = t.state.read().chunks.iter().cloned().collect();
        let snapshot = rows.len() as Lsn - 5;
        let odd = |lsn: Lsn| lsn % 2 == 1;
        for cue in crate::index::test_noise(12, 5, 16) {
            let cue = score::prepare(Metric::Cosine, &cue);
            let split = t.scan(&cue, 40, snapshot, &odd);
            let q = score::quantize(&cue);
            let one = t.scan_chunks(&chunks, &q, 40, snapshot, &odd).into_sorted();
            assert_eq!(split, one);
            assert_eq!(split.len(), 40);
            assert!(
                split
                    .iter()
                    .all(|&(lsn, _)| lsn <= snapshot && lsn % 2 == 0)
            );
        }
    }
}
