//! The fresh tier: committed records not yet in the HNSW graph, scanned exactly.
//!
//! Rows live in chunks of [`CHUNK_ROWS`] consecutive LSNs. The writer appends rows
//! (in LSN order); index workers claim rows, insert them into HNSW, then mark them
//! indexed; a chunk whose rows are all indexed is dropped. Recall clones the list of
//! chunk `Arc`s and scans without holding the list lock, so a scan never blocks the
//! writer for longer than one chunk.
//!
//! Each row is kept twice: at the graph's precision (f32, or f16 for f16/i8 graphs)
//! for the index workers, and as 8-bit codes for the scan. Every recall scans the
//! whole tier, so the scan reads the codes (a quarter of f32) and returns candidates
//! that the recall re-scores exactly from the log. A large tier without sign codes
//! (below) is scanned by one thread per core, each over a share of the chunks.
//!
//! From [`BINARY_MIN_DIM`] dimensions, each row also has a sign code (1 bit per
//! dimension, relative to a center: the mean of rows pushed before it, renewed every
//! `CENTER_ROWS` rows, so that data far from the origin still splits). A scan of a large tier then reads the
//! sign codes first (an eighth of the 8-bit codes), keeps the rows nearest by Hamming
//! distance (a shortlist many times longer than asked for), and scores only those
//! with the 8-bit codes. Rows of a chunk without a center (the first chunk after the
//! tier was opened) are scored with the 8-bit codes directly.
//!
//! Invariant (with the recall order "fresh scan, then HNSW search"): a row leaves
//! this tier only after it is in HNSW, so a committed record is never missing from
//! both. Rows that are in both are de-duplicated by LSN in the merge.

mod rows;
mod scan;

pub(crate) use rows::IndexRow;

use parking_lot::RwLock;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::score;
use crate::types::{Lsn, Metric, Precision};
use rows::Rows;

/// Rows per chunk.
pub(crate) const CHUNK_ROWS: usize = 256;

/// Dimensions from which rows get sign codes and large scans go in two passes.
/// Below it, sign bits say too little about a vector, and the 8-bit codes are short.
pub(crate) const BINARY_MIN_DIM: usize = 256;

/// Rows a two-pass scan scores with 8-bit codes: per result asked for, at least, and
/// at least this share of the rows scanned. Clustered data kept its exact top 10 with
/// half the minimum; the share is for data with no structure (tests below).
const SHORTLIST_PER_RESULT: usize = 24;
const SHORTLIST_MIN: usize = 2048;
const SHORTLIST_SHARE: usize = 32;
/// Rows whose mean becomes the next center. Chunks between two centers share one,
/// so a scan works out the cue's sign code once per center, not once per chunk.
const CENTER_ROWS: usize = 16 * CHUNK_ROWS;

/// 64-bit words of one row's sign code (0: no sign codes). Only for cosine and L2:
/// sign bits stand for a direction, while an inner-product ranking also rewards
/// length, so a sign-code shortlist could miss its best rows.
fn sign_words(dim: usize, metric: Metric) -> usize {
    if dim >= BINARY_MIN_DIM && metric != Metric::InnerProduct {
        dim.div_ceil(64)
    } else {
        0
    }
}

/// Bytes one row of `dim` dimensions takes in the tier for a graph of `precision`
/// (at most: inner-product spaces keep no sign codes).
pub(crate) fn row_bytes(dim: usize, precision: Precision) -> usize {
    let sign = sign_words(dim, Metric::Cosine) * size_of::<u64>();
    // A center per chunk (an upper bound: chunks between two renewals share one).
    let center = if sign > 0 {
        (dim * size_of::<f32>()).div_ceil(CHUNK_ROWS)
    } else {
        0
    };
    dim * IndexRow::element_bytes(precision) + dim + 2 * size_of::<f32>() + sign + center
}

struct Chunk {
    base: Lsn,
    /// What the rows' sign codes are relative to; none below [`BINARY_MIN_DIM`].
    center: Option<Arc<[f32]>>,
    rows: RwLock<Rows>,
    /// Per row: already in HNSW.
    indexed: Box<[AtomicBool]>,
    indexed_count: AtomicUsize,
}

impl Chunk {
    fn len(&self) -> usize {
        self.rows.read().len()
    }
}

struct State {
    chunks: VecDeque<Arc<Chunk>>,
    /// LSN the next pushed row will have.
    next_lsn: Lsn,
    /// Center for new chunks' sign codes (with sign codes only), and the sum and count
    /// of the rows pushed since it was set, whose mean becomes the next center once
    /// there are `CENTER_ROWS` of them (the first center: the first chunk's mean).
    center: Option<Arc<[f32]>>,
    sum: Vec<f32>,
    summed: usize,
}

/// See the module docs.
pub(crate) struct FreshTier {
    dim: usize,
    metric: Metric,
    precision: Precision,
    state: RwLock<State>,
    /// Rows held (pushed and not yet dropped with their chunk).
    resident: AtomicUsize,
    /// Rows admitted but not yet dropped: resident plus appends in flight.
    reserved: AtomicUsize,
    capacity: usize,
}

impl FreshTier {
    /// An empty tier whose first row will have `next_lsn`, holding at most `capacity`
    /// rows, for a graph of `precision`.
    pub(crate) fn new(
        dim: usize,
        metric: Metric,
        precision: Precision,
        next_lsn: Lsn,
        capacity: usize,
    ) -> Self {
        FreshTier {
            dim,
            metric,
            precision,
            state: RwLock::new(State {
                chunks: VecDeque::new(),
                next_lsn,
                center: None,
                sum: vec![0.0; if sign_words(dim, metric) > 0 { dim } else { 0 }],
                summed: 0,
            }),
            resident: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Admits one row ahead of its append; false when the tier is full.
    pub(crate) fn try_reserve(&self) -> bool {
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                (r < self.capacity).then_some(r + 1)
            })
            .is_ok()
    }

    /// Returns a reservation whose append failed.
    pub(crate) fn release(&self, rows: usize) {
        self.reserved.fetch_sub(rows, Ordering::AcqRel);
    }

    /// Rows held now.
    pub(crate) fn len(&self) -> usize {
        self.resident.load(Ordering::Acquire)
    }

    /// Most rows it may hold.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends a committed row. `already_indexed` marks rows recovered from the log
    /// that the loaded checkpoint already holds. `reserved` says whether the row was
    /// admitted with [`FreshTier::try_reserve`] (recovered rows were not).
    pub(crate) fn push(&self, lsn: Lsn, vector: &[f32], already_indexed: bool, reserved: bool) {
        let prepared = score::prepare(self.metric, vector);
        // Outside the lock: recalls starting a scan wait for it.
        let codes = score::quantize(&prepared);
        let mut st = self.state.write();
        let fits = st.chunks.back().is_some_and(|c| {
            let len = c.len();
            len < CHUNK_ROWS && c.base + len as Lsn == lsn
        });
        let words = sign_words(self.dim, self.metric);
        if !fits {
            let due = st.summed >= CENTER_ROWS || (st.center.is_none() && st.summed > 0);
            if words > 0 && due {
                let n = st.summed as f32;
                st.center = Some(st.sum.iter().map(|x| x / n).collect());
                st.sum.fill(0.0);
                st.summed = 0;
            }
            let center = st.center.clone();
            st.chunks.push_back(Arc::new(Chunk {
                base: lsn,
                center,
                rows: RwLock::new(Rows::new(self.dim, self.precision, words)),
                indexed: (0..CHUNK_ROWS).map(|_| AtomicBool::new(false)).collect(),
                indexed_count: AtomicUsize::new(0),
            }));
        }
        if words > 0 {
            st.sum.iter_mut().zip(&prepared).for_each(|(s, x)| *s += x);
            st.summed += 1;
        }
        if let Some(chunk) = st.chunks.back() {
            let row = {
                let mut rows = chunk.rows.write();
                rows.push(&prepared, codes, chunk.center.as_deref());
                rows.len() - 1
            };
            if already_indexed {
                chunk.indexed[row].store(true, Ordering::Release);
                chunk.indexed_count.fetch_add(1, Ordering::AcqRel);
            }
        }
        st.next_lsn = lsn + 1;
        self.resident.fetch_add(1, Ordering::AcqRel);
        if !reserved {
            self.reserved.fetch_add(1, Ordering::AcqRel);
        }
        // A recovered chunk whose rows are all in the checkpoint can go once full.
        let full = st.chunks.back().is_some_and(|c| c.len() == CHUNK_ROWS);
        if already_indexed && full {
            let last = st.chunks.len() - 1;
            self.drop_if_indexed(&mut st, last);
        }
    }
}

impl FreshTier {
    /// Scores (approximately, from the 8-bit codes) those of `lsns` (ascending)
    /// that have a row here, indexed or not, into `found`; the others go to
    /// `elsewhere`.
    pub(crate) fn score_lsns(
        &self,
        lsns: &[Lsn],
        cue: &score::Quantized,
        found: &mut Vec<(Lsn, f32)>,
        elsewhere: &mut Vec<Lsn>,
    ) {
        let dot_i8 = score::dot_i8_kernel();
        let chunks: Vec<Arc<Chunk>> = self.state.read().chunks.iter().cloned().collect();
        let mut at = 0;
        for &lsn in lsns {
            // `lsns` ascend: walk the chunks once.
            while at < chunks.len() && chunks[at].base + CHUNK_ROWS as Lsn <= lsn {
                at += 1;
            }
            let scored = chunks.get(at).filter(|c| c.base <= lsn).and_then(|c| {
                let rows = c.rows.read();
                let row = (lsn - c.base) as usize;
                (row < rows.len()).then(|| {
                    let codes = &rows.codes[row * self.dim..(row + 1) * self.dim];
                    let (scale, norm) = (rows.scales[row], rows.sq_norms[row]);
                    score::approx_score(self.metric, cue, codes, scale, norm, dot_i8)
                })
            });
            match scored {
                Some(s) => found.push((lsn, s)),
                None => elsewhere.push(lsn),
            }
        }
    }

    /// Moves past `lsn`, which has no row (a record lost to log damage).
    pub(crate) fn skip(&self, lsn: Lsn) {
        let mut st = self.state.write();
        st.next_lsn = st.next_lsn.max(lsn + 1);
    }

    /// The prepared vectors (at graph precision) of those `lsns` that are here and
    /// not yet indexed.
    pub(crate) fn rows(&self, lsns: &[Lsn]) -> Vec<(Lsn, IndexRow)> {
        let st = self.state.read();
        let mut out = Vec::with_capacity(lsns.len());
        for &lsn in lsns {
            let Some(i) = Self::chunk_of(&st.chunks, lsn) else {
                continue;
            };
            let chunk = &st.chunks[i];
            let row = (lsn - chunk.base) as usize;
            let rows = chunk.rows.read();
            if row < rows.len() && !chunk.indexed[row].load(Ordering::Acquire) {
                out.push((lsn, rows.index_row(row, self.dim)));
            }
        }
        out
    }

    /// Up to `max` rows (prepared, as f32, row-major) spread evenly over the tier:
    /// what a warm-tier codebook is trained on.
    pub(crate) fn sample(&self, max: usize) -> Vec<f32> {
        let chunks: Vec<Arc<Chunk>> = self.state.read().chunks.iter().cloned().collect();
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        let step = total.div_ceil(max.max(1)).max(1);
        let mut out = Vec::with_capacity(total.min(max) * self.dim);
        let mut at = 0usize;
        for chunk in chunks {
            let rows = chunk.rows.read();
            while at < rows.len() {
                out.extend(rows.index_row(at, self.dim).to_f32());
                at += step;
            }
            at -= rows.len();
        }
        out
    }

    /// Position of the chunk that may hold `lsn` (chunks are sorted by base LSN).
    fn chunk_of(chunks: &VecDeque<Arc<Chunk>>, lsn: Lsn) -> Option<usize> {
        chunks.partition_point(|c| c.base <= lsn).checked_sub(1)
    }

    /// Records that these rows are now in HNSW; drops chunks that are fully indexed.
    pub(crate) fn mark_indexed(&self, lsns: &[Lsn]) {
        // Marks are atomics, so they need only the shared lock; the exclusive one (which
        // recalls starting a scan wait for) is taken only to drop a completed chunk,
        // and index workers run niced, so they should hold it as briefly as possible.
        let mut complete = Vec::new();
        {
            let st = self.state.read();
            for &lsn in lsns {
                let Some(i) = Self::chunk_of(&st.chunks, lsn) else {
                    continue;
                };
                let chunk = &st.chunks[i];
                let row = (lsn - chunk.base) as usize;
                let len = chunk.len();
                if row < len && !chunk.indexed[row].swap(true, Ordering::AcqRel) {
                    let marked = chunk.indexed_count.fetch_add(1, Ordering::AcqRel) + 1;
                    if marked == len {
                        complete.push(chunk.base);
                    }
                }
            }
        }
        if complete.is_empty() {
            return;
        }
        let mut st = self.state.write();
        for base in complete {
            // Found again by base: another worker may have dropped chunks meanwhile.
            if let Some(i) = st.chunks.iter().position(|c| c.base == base) {
                self.drop_if_indexed(&mut st, i);
            }
        }
    }

    fn drop_if_indexed(&self, st: &mut State, i: usize) {
        let len = st.chunks[i].len();
        if st.chunks[i].indexed_count.load(Ordering::Acquire) == len {
            st.chunks.remove(i);
            self.resident.fetch_sub(len, Ordering::AcqRel);
            self.reserved.fetch_sub(len, Ordering::AcqRel);
        }
    }

    /// Highest LSN such that every row up to it has been indexed (or was never here).
    pub(crate) fn indexed_watermark(&self) -> Lsn {
        let st = self.state.read();
        for chunk in &st.chunks {
            let len = chunk.len();
            if let Some(i) = (0..len).find(|&i| !chunk.indexed[i].load(Ordering::Acquire)) {
                return chunk.base + i as Lsn - 1;
            }
        }
        st.next_lsn - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier() -> FreshTier {
        FreshTier::new(2, Metric::L2, Precision::F32, 1, 10_000)
    }

    #[test]
    fn scan_respects_snapshot_and_exclusion() {
        let t = tier();
        for lsn in 1..=600 {
            t.push(lsn, &[lsn as f32, 0.0], false, false);
        }
        let got = t.scan(&[1000.0, 0.0], 3, 500, &|_| false);
        assert_eq!(
            got.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![500, 499, 498]
        );
        let got = t.scan(&[1000.0, 0.0], 2, 500, &|l| l == 500);
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![499, 498]);
    }

    #[test]
    fn rows_mark_and_drop_chunks() {
        let t = tier();
        for lsn in 1..=600 {
            t.push(lsn, &[lsn as f32, 1.0], false, false);
        }
        assert_eq!(t.len(), 600);
        let first: Vec<Lsn> = (1..=300).collect();
        let rows = t.rows(&first);
        assert_eq!(rows.len(), 300);
        assert_eq!(rows[9].0, 10);
        assert!(matches!(&rows[9].1, IndexRow::F32(v) if v == &[10.0, 1.0]));
        assert_eq!(t.indexed_watermark(), 0);
        t.mark_indexed(&first);
        assert!(
            t.rows(&first).is_empty(),
            "indexed rows are not handed out again"
        );
        assert_eq!(t.indexed_watermark(), 300);
        assert_eq!(t.len(), 600 - CHUNK_ROWS); // first chunk dropped
        // Out of order: a later row indexed first does not move the watermark.
        t.mark_indexed(&[600]);
        assert_eq!(t.indexed_watermark(), 300);
        let rest: Vec<Lsn> = (301..600).collect();
        assert_eq!(t.rows(&rest).len(), 299);
        t.mark_indexed(&rest);
        assert_eq!(t.len(), 0);
        assert_eq!(t.indexed_watermark(), 600);
    }

    #[test]
    fn reservations_bound_the_tier() {
        let t = FreshTier::new(2, Metric::L2, Precision::F32, 1, 2);
        assert!(t.try_reserve());
        assert!(t.try_reserve());
        assert!(!t.try_reserve());
        t.release(1);
        assert!(t.try_reserve());
    }

    /// The 8-bit scan must hand the exact top-k to the re-score: with the oversampling
    /// recall uses, every exact top-10 row is among the candidates, for every metric.
    /// dimensions too.
    #[test]
    fn sign_codes_only_where_they_help() {
        assert_eq!(sign_words(768, Metric::Cosine), 12);
        assert_eq!(sign_words(768, Metric::L2), 12);
        assert_eq!(sign_words(768, Metric::InnerProduct), 0);
        assert_eq!(sign_words(100, Metric::Cosine), 0);
        let t = FreshTier::new(768, Metric::InnerProduct, Precision::F16, 1, 1000);
        for (i, v) in crate::index::test_noise(3, 600, 768).iter().enumerate() {
            t.push(i as Lsn + 1, v, false, false);
        }
        let st = t.state.read();
        assert!(
            st.chunks
                .iter()
                .all(|c| c.center.is_none() && c.rows.read().signs.is_empty())
        );
    }

    /// The first chunk has no center; the chunks after it are centered on its mean
    /// until `CENTER_ROWS` more rows give the next.
    #[test]
    fn f16_graphs_get_f16_rows() {
        let t = FreshTier::new(3, Metric::L2, Precision::F16, 1, 100);
        t.push(1, &[1.0, -2.5, 0.1], false, false);
        let rows = t.rows(&[1]);
        let IndexRow::F16(bits) = &rows[0].1 else {
            panic!("an f16 graph is fed f16 rows");
        };
        let back: Vec<f32> = bits
            .iter()
            .map(|b| half::f16::from_bits(b.cast_unsigned()).to_f32())
            .collect();
        assert_eq!(back[..2], [1.0, -2.5]);
        assert!((back[2] - 0.1).abs() < 1e-3);
        // Values, 8-bit codes, scale and norm, sign code, share of the chunk center.
        assert_eq!(row_bytes(768, Precision::F16), 768 * 3 + 8 + 96 + 12);
        assert_eq!(row_bytes(768, Precision::F32), 768 * 5 + 8 + 96 + 12);
        assert_eq!(row_bytes(100, Precision::F32), 100 * 5 + 8);
    }
}
