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

use parking_lot::RwLock;
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::hnsw::VectorRef;
use super::score;
use crate::types::{Lsn, Metric, Precision};

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

/// A chunk's rows, row-major.
struct Rows {
    /// Prepared vectors for the graph (see [`score::prepare`]), all rows in one.
    full: IndexRow,
    /// 8-bit codes of the prepared vectors (see [`score::quantize`]).
    codes: Vec<i8>,
    /// Per row: the code scale and the exact squared norm.
    scales: Vec<f32>,
    sq_norms: Vec<f32>,
    /// Sign codes against the chunk's center (empty when it has none).
    signs: Vec<u64>,
}

/// Vectors at the precision the graph stores (f16 as IEEE bits): a row handed to an
/// index worker, or all the rows of a chunk.
pub(crate) enum IndexRow {
    F32(Vec<f32>),
    F16(Vec<i16>),
}

impl IndexRow {
    /// Empty, with room for `len` values, in the form a graph of `precision` takes.
    fn with_capacity(precision: Precision, len: usize) -> Self {
        match precision {
            Precision::F32 => IndexRow::F32(Vec::with_capacity(len)),
            Precision::F16 | Precision::I8 => IndexRow::F16(Vec::with_capacity(len)),
        }
    }

    /// Bytes per value for a graph of `precision`.
    fn element_bytes(precision: Precision) -> usize {
        match precision {
            Precision::F32 => size_of::<f32>(),
            Precision::F16 | Precision::I8 => size_of::<i16>(),
        }
    }

    pub(crate) fn as_ref(&self) -> VectorRef<'_> {
        match self {
            IndexRow::F32(v) => VectorRef::F32(v),
            IndexRow::F16(v) => VectorRef::F16(v),
        }
    }
}

impl Rows {
    fn new(dim: usize, precision: Precision, sign_words: usize) -> Self {
        Rows {
            full: IndexRow::with_capacity(precision, CHUNK_ROWS * dim),
            codes: Vec::with_capacity(CHUNK_ROWS * dim),
            scales: Vec::with_capacity(CHUNK_ROWS),
            sq_norms: Vec::with_capacity(CHUNK_ROWS),
            signs: Vec::with_capacity(CHUNK_ROWS * sign_words),
        }
    }

    fn len(&self) -> usize {
        self.scales.len()
    }

    fn push(&mut self, prepared: &[f32], q: score::Quantized, center: Option<&[f32]>) {
        if let Some(center) = center {
            self.signs
                .extend_from_slice(&score::sign_bits(prepared, center));
        }
        match &mut self.full {
            IndexRow::F32(v) => v.extend_from_slice(prepared),
            IndexRow::F16(v) => v.extend(
                prepared
                    .iter()
                    .map(|x| half::f16::from_f32(*x).to_bits().cast_signed()),
            ),
        }
        self.codes.extend_from_slice(&q.codes);
        self.scales.push(q.scale);
        self.sq_norms.push(q.sq_norm);
    }

    fn index_row(&self, row: usize, dim: usize) -> IndexRow {
        let span = row * dim..(row + 1) * dim;
        match &self.full {
            IndexRow::F32(v) => IndexRow::F32(v[span].to_vec()),
            IndexRow::F16(v) => IndexRow::F16(v[span].to_vec()),
        }
    }
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

/// Rows from which a scan is split among threads.
const PARALLEL_SCAN_ROWS: usize = 8 * 1024;

/// Threads a scan of `rows` rows uses: one per core, one per `PARALLEL_SCAN_ROWS` rows.
fn scan_parts(rows: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (rows / PARALLEL_SCAN_ROWS).clamp(1, cores.min(4))
}

/// Bounded best-k collector (keeps the k highest scores; ties prefer the lower LSN).
/// A min-heap on "better", so the worst kept item is at the top and a row that does
/// not beat it is turned away in O(1), which is nearly every row of a long scan.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Ranked>,
}

/// Heap entry ordered so that the *worst* item is the greatest.
#[derive(Clone, Copy, PartialEq)]
struct Ranked(Lsn, f32);

impl Eq for Ranked {}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Lower score = worse = greater; on equal scores the higher LSN is worse.
        other.1.total_cmp(&self.1).then(self.0.cmp(&other.0))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Takes in the items of `other` (a collector of the same `k`).
    pub(crate) fn merge(&mut self, other: TopK) {
        for Ranked(lsn, score) in other.heap {
            if self.admits(score) {
                self.offer(lsn, score);
            }
        }
    }

    /// Cheap pre-check: could a row with `score` be kept (ignoring LSN ties)?
    #[inline]
    pub(crate) fn admits(&self, score: f32) -> bool {
        self.k > 0 && (self.heap.len() < self.k || self.heap.peek().is_some_and(|w| score >= w.1))
    }

    pub(crate) fn offer(&mut self, lsn: Lsn, score: f32) {
        if self.k == 0 {
            return;
        }
        let item = Ranked(lsn, score);
        if self.heap.len() < self.k {
            self.heap.push(item);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && item < *worst
        {
            *worst = item;
        }
    }

    pub(crate) fn into_sorted(self) -> Vec<(Lsn, f32)> {
        // Ascending by `Ranked` order = best first.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| (r.0, r.1))
            .collect()
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

    #[test]
    fn a_scan_split_among_threads_equals_one_pass() {
        let rows = super::super::test_noise(11, 3 * PARALLEL_SCAN_ROWS + 77, 16);
        let t = FreshTier::new(16, Metric::Cosine, Precision::F32, 1, rows.len());
        for (i, v) in rows.iter().enumerate() {
            t.push(i as Lsn + 1, v, false, false);
        }
        let chunks: Vec<Arc<Chunk>> = t.state.read().chunks.iter().cloned().collect();
        let snapshot = rows.len() as Lsn - 5;
        let odd = |lsn: Lsn| lsn % 2 == 1;
        for cue in super::super::test_noise(12, 5, 16) {
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

    #[test]
    fn merged_collectors_equal_one() {
        let items: Vec<(Lsn, f32)> = (1..=500).map(|l| (l, ((l * 37) % 101) as f32)).collect();
        let mut whole = TopK::new(25);
        let (mut a, mut b) = (TopK::new(25), TopK::new(25));
        for &(l, s) in &items {
            whole.offer(l, s);
            if l % 3 == 0 {
                a.offer(l, s)
            } else {
                b.offer(l, s)
            }
        }
        a.merge(b);
        assert_eq!(a.into_sorted(), whole.into_sorted());
    }

    #[test]
    fn topk_matches_a_full_sort() {
        let mut x = 7u64;
        for k in [1usize, 3, 10, 50] {
            let mut top = TopK::new(k);
            let mut all = Vec::new();
            for lsn in 1..=2000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                let s = ((x >> 40) % 97) as f32; // many ties
                all.push((lsn, s));
                if top.admits(s) {
                    top.offer(lsn, s);
                }
            }
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            all.truncate(k);
            assert_eq!(top.into_sorted(), all, "k = {k}");
        }
        let mut none = TopK::new(0);
        none.offer(1, 1.0);
        assert!(none.into_sorted().is_empty());
    }

    #[test]
    fn topk_keeps_best() {
        let mut top = TopK::new(2);
        for (l, s) in [(1, 0.1), (2, 0.9), (3, 0.5), (4, 0.9)] {
            top.offer(l, s);
        }
        assert_eq!(top.into_sorted(), vec![(2, 0.9), (4, 0.9)]);
    }
}
