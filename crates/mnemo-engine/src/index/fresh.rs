//! The fresh tier: committed records not yet in the HNSW graph, scanned exactly.
//!
//! Rows live in chunks of [`CHUNK_ROWS`] consecutive LSNs. The writer appends rows
//! (in LSN order); index workers claim rows, insert them into HNSW, then mark them
//! indexed; a chunk whose rows are all indexed is dropped. Recall clones the list of
//! chunk `Arc`s and scans without holding the list lock, so a scan never blocks the
//! writer for longer than one chunk.
//!
//! Invariant (with the recall order "fresh scan, then HNSW search"): a row leaves
//! this tier only after it is in HNSW, so a committed record is never missing from
//! both. Rows that are in both are de-duplicated by LSN in the merge.

use parking_lot::RwLock;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::score;
use crate::types::{Lsn, Metric};

/// Rows per chunk.
pub(crate) const CHUNK_ROWS: usize = 256;

struct Chunk {
    base: Lsn,
    /// Prepared rows (see [`score::prepare`]), row-major.
    rows: RwLock<Vec<f32>>,
    /// Per row: already in HNSW.
    indexed: Box<[AtomicBool]>,
    indexed_count: AtomicUsize,
}

impl Chunk {
    fn len(&self, dim: usize) -> usize {
        self.rows.read().len() / dim
    }
}

struct State {
    chunks: VecDeque<Arc<Chunk>>,
    /// LSN the next pushed row will have.
    next_lsn: Lsn,
}

/// See the module docs.
pub(crate) struct FreshTier {
    dim: usize,
    metric: Metric,
    state: RwLock<State>,
    /// Rows held (pushed and not yet dropped with their chunk).
    resident: AtomicUsize,
    /// Rows admitted but not yet dropped: resident plus appends in flight.
    reserved: AtomicUsize,
    capacity: usize,
}

impl FreshTier {
    /// An empty tier whose first row will have `next_lsn`, holding at most `capacity` rows.
    pub(crate) fn new(dim: usize, metric: Metric, next_lsn: Lsn, capacity: usize) -> Self {
        FreshTier {
            dim,
            metric,
            state: RwLock::new(State {
                chunks: VecDeque::new(),
                next_lsn,
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
        let mut st = self.state.write();
        let fits = st.chunks.back().is_some_and(|c| {
            let len = c.len(self.dim);
            len < CHUNK_ROWS && c.base + len as Lsn == lsn
        });
        if !fits {
            st.chunks.push_back(Arc::new(Chunk {
                base: lsn,
                rows: RwLock::new(Vec::with_capacity(CHUNK_ROWS * self.dim)),
                indexed: (0..CHUNK_ROWS).map(|_| AtomicBool::new(false)).collect(),
                indexed_count: AtomicUsize::new(0),
            }));
        }
        if let Some(chunk) = st.chunks.back() {
            let row = {
                let mut rows = chunk.rows.write();
                rows.extend_from_slice(&prepared);
                rows.len() / self.dim - 1
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
        let full = st
            .chunks
            .back()
            .is_some_and(|c| c.len(self.dim) == CHUNK_ROWS);
        if already_indexed && full {
            let last = st.chunks.len() - 1;
            self.drop_if_indexed(&mut st, last);
        }
    }

    /// Exact top-`k` by score among rows with `lsn <= snapshot` and not `excluded`.
    /// Returns `(lsn, score)` pairs, best first.
    pub(crate) fn scan(
        &self,
        cue: &[f32],
        k: usize,
        snapshot: Lsn,
        excluded: &dyn Fn(Lsn) -> bool,
    ) -> Vec<(Lsn, f32)> {
        let chunks: Vec<Arc<Chunk>> = self.state.read().chunks.iter().cloned().collect();
        let mut top = TopK::new(k);
        for chunk in chunks {
            if chunk.base > snapshot {
                break;
            }
            let rows = chunk.rows.read();
            for (i, row) in rows.chunks_exact(self.dim).enumerate() {
                let lsn = chunk.base + i as Lsn;
                if lsn > snapshot {
                    break;
                }
                if !excluded(lsn) {
                    top.offer(lsn, score::score(self.metric, cue, row));
                }
            }
        }
        top.into_sorted()
    }

    /// The prepared vectors of those `lsns` that are here and not yet indexed.
    pub(crate) fn rows(&self, lsns: &[Lsn]) -> Vec<(Lsn, Vec<f32>)> {
        let st = self.state.read();
        let mut out = Vec::with_capacity(lsns.len());
        for &lsn in lsns {
            let Some(i) = Self::chunk_of(&st.chunks, lsn) else {
                continue;
            };
            let chunk = &st.chunks[i];
            let row = (lsn - chunk.base) as usize;
            let rows = chunk.rows.read();
            if row < rows.len() / self.dim && !chunk.indexed[row].load(Ordering::Acquire) {
                out.push((lsn, rows[row * self.dim..(row + 1) * self.dim].to_vec()));
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
        let mut st = self.state.write();
        let mut touched = Vec::new();
        for &lsn in lsns {
            let Some(i) = Self::chunk_of(&st.chunks, lsn) else {
                continue;
            };
            let chunk = &st.chunks[i];
            let row = (lsn - chunk.base) as usize;
            if row < chunk.len(self.dim) && !chunk.indexed[row].swap(true, Ordering::AcqRel) {
                chunk.indexed_count.fetch_add(1, Ordering::AcqRel);
                touched.push(i);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        // Highest position first, so removing one keeps the others' positions valid.
        for &i in touched.iter().rev() {
            self.drop_if_indexed(&mut st, i);
        }
    }

    fn drop_if_indexed(&self, st: &mut State, i: usize) {
        let len = st.chunks[i].len(self.dim);
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
            let len = chunk.len(self.dim);
            if let Some(i) = (0..len).find(|&i| !chunk.indexed[i].load(Ordering::Acquire)) {
                return chunk.base + i as Lsn - 1;
            }
        }
        st.next_lsn - 1
    }
}

/// Bounded best-k collector (keeps the k highest scores; ties prefer the lower LSN).
pub(crate) struct TopK {
    k: usize,
    items: Vec<(Lsn, f32)>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }

    fn better(a: &(Lsn, f32), b: &(Lsn, f32)) -> bool {
        a.1 > b.1 || (a.1 == b.1 && a.0 < b.0)
    }

    pub(crate) fn offer(&mut self, lsn: Lsn, score: f32) {
        if self.k == 0 {
            return;
        }
        if self.items.len() == self.k {
            // The worst kept item sits last once sorted; linear scan is fine for small k.
            let (wi, worst) =
                self.items
                    .iter()
                    .enumerate()
                    .fold((0, self.items[0]), |acc, (i, it)| {
                        if Self::better(&acc.1, it) {
                            (i, *it)
                        } else {
                            acc
                        }
                    });
            if Self::better(&(lsn, score), &worst) {
                self.items[wi] = (lsn, score);
            }
        } else {
            self.items.push((lsn, score));
        }
    }

    pub(crate) fn into_sorted(mut self) -> Vec<(Lsn, f32)> {
        self.items
            .sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier() -> FreshTier {
        FreshTier::new(2, Metric::L2, 1, 10_000)
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
        assert_eq!(rows[9], (10, vec![10.0, 1.0]));
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
        let t = FreshTier::new(2, Metric::L2, 1, 2);
        assert!(t.try_reserve());
        assert!(t.try_reserve());
        assert!(!t.try_reserve());
        t.release(1);
        assert!(t.try_reserve());
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
