//! The warm tier: rows that left the fresh tier faster than the graph can take
//! them, in an IVF structure with 1-bit codes.
//!
//! A row costs one nearest-centroid assignment and one encoding to enter (a graph
//! insert costs hundreds of distance computations), and ~`dim/8 + 25` bytes to keep.
//! Recall scans the codes of the lists nearest the cue and hands the best to the
//! caller, which re-scores them exactly from the log.
//!
//! - **Codebooks**: centroids trained by k-means on a sample of the space's own rows
//!   (taken from the fresh tier when the tier is first needed), and a random
//!   rotation. When the rows of a segment sit, on average, much farther from their
//!   centroids than the training rows did (drift), a new codebook is trained for
//!   the next segments; old segments keep theirs.
//! - **Segments**: rows are appended to the newest segment; an index worker with
//!   nothing else to do seals the oldest, and moves its rows into the graph in LSN
//!   order, reading their vectors from the log; a segment whose rows are all in the
//!   graph is dropped whole.
//!
//! Invariants (with the recall order fresh → warm → graph, and each move inserting
//! into the next tier before leaving this one): a committed record is always in at
//! least one tier a recall reaches; a row marked moved is in the graph, so scans
//! skip it (after a purge, only the graph knows it is gone).

mod codes;
mod kmeans;
mod scan;

use parking_lot::{Mutex, RwLock};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::types::{Lsn, Metric};
use codes::Rotation;

pub(crate) use scan::WarmCue;

/// Fewest dimensions a space needs for a warm tier: below, a 1-bit code says too
/// little about a row, and graph inserts are cheap enough to keep up on their own.
pub(crate) const MIN_DIM: usize = 64;

/// Warm tiers up to this many rows are scanned whole (every list): a few ms at most.
pub(crate) const SCAN_ALL_ROWS: usize = 32 * 1024;

/// Rows per segment.
const SEGMENT_ROWS: usize = 32 * 1024;
/// Lists a codebook is trained with, at most (fewer for a small sample).
pub(crate) const LISTS: usize = 256;
/// Rows a codebook is trained on, at most.
pub(crate) const TRAIN_ROWS: usize = kmeans::ROWS_PER_LIST * LISTS;
/// Fewest rows worth training a codebook on.
pub(crate) const TRAIN_MIN_ROWS: usize = 1024;
/// Lloyd iterations per training.
const TRAIN_ITERATIONS: usize = 6;
/// A segment whose mean squared residual is this many times the training sample's
/// asks for a new codebook.
const DRIFT_RATIO: f32 = 1.5;

/// Bytes a row of `dim` takes: LSN, 1-bit code and factor, 4-bit code and scale,
/// squared norm and residual, moved flag, and its entry in a segment's move order
/// while it is being moved.
pub(crate) fn row_bytes(dim: usize) -> usize {
    8 + 8 * codes::code_words(dim) + 4 + codes::nibble_bytes(dim) + 4 + 4 + 4 + 1 + 16
}

/// A trained IVF: centroids (in the space's prepared form) and the rotation.
pub(crate) struct Codebook {
    dim: usize,
    centroids: Vec<f32>,
    half_sq: Vec<f32>,
    rotation: Rotation,
    /// Mean `|x - c|²` of the training rows: the drift baseline.
    trained_residual: f32,
}

impl Codebook {
    fn train(sample: &[f32], dim: usize, seed: u64) -> Self {
        let centroids = kmeans::train(sample, dim, LISTS, TRAIN_ITERATIONS, seed);
        let half_sq = kmeans::half_squares(&centroids, dim);
        let owners = kmeans::assign(sample, &centroids, &half_sq, dim, &mut Vec::new());
        let n = owners.len().max(1);
        let total: f32 = owners
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let c = c as usize;
                crate::index::score::l2sq(
                    &sample[i * dim..(i + 1) * dim],
                    &centroids[c * dim..(c + 1) * dim],
                )
            })
            .sum();
        Codebook {
            dim,
            centroids,
            half_sq,
            rotation: Rotation::new(dim, seed ^ 0x5EED),
            trained_residual: total / n as f32,
        }
    }

    fn lists(&self) -> usize {
        self.half_sq.len()
    }

    fn centroid(&self, list: usize) -> &[f32] {
        &self.centroids[list * self.dim..(list + 1) * self.dim]
    }
}

/// A row encoded for a list, before it is appended.
struct Encoded {
    lsn: Lsn,
    list: u32,
    code: Vec<u64>,
    factor: f32,
    nibbles: Vec<u8>,
    nibble_scale: f32,
    sq_norm: f32,
    residual_sq: f32,
}

/// One list of a segment: its rows, column by column.
#[derive(Default)]
struct List {
    lsns: Vec<Lsn>,
    codes: Vec<u64>,
    factors: Vec<f32>,
    /// 4-bit codes of the rotated residual and their scales.
    nibbles: Vec<u8>,
    nibble_scales: Vec<f32>,
    /// `|x|²` and `|x - c|²`.
    sq_norms: Vec<f32>,
    residual_sq: Vec<f32>,
    /// Per row: in the graph now (scans skip it).
    moved: Vec<AtomicBool>,
}

struct SegmentRows {
    lists: Vec<List>,
    len: usize,
    /// No more rows: it is being moved into the graph.
    sealed: bool,
    /// Sum of the rows' squared residuals (drift).
    residual_sum: f64,
}

/// Where each row of a sealed segment is, in LSN order: the order it moves in.
struct MoveOrder {
    rows: Vec<(Lsn, u32, u32)>,
    /// Rows before it are in the graph.
    done: usize,
    /// The last batch failed: its rows may be partly in the graph already.
    retry: bool,
}

struct Segment {
    book: Arc<Codebook>,
    rows: RwLock<SegmentRows>,
    order: Mutex<Option<MoveOrder>>,
    /// Lowest LSN of a row not yet in the graph (`Lsn::MAX`: none).
    pending_low: AtomicU64,
}

/// See the module docs.
pub(crate) struct WarmTier {
    dim: usize,
    metric: Metric,
    seed: u64,
    /// Most rows it may hold (0: the tier is off).
    capacity: usize,
    book: RwLock<Option<Arc<Codebook>>>,
    segments: RwLock<VecDeque<Arc<Segment>>>,
    resident: AtomicUsize,
    training: Mutex<()>,
    retrain_due: AtomicBool,
    /// One mover per space: rows of a segment move in order.
    moving: Mutex<()>,
    /// Rows that entered, and that moved on into the graph.
    entered: AtomicU64,
    moved_on: AtomicU64,
}

impl WarmTier {
    /// A tier of at most `capacity` rows (none below [`MIN_DIM`] dimensions).
    pub(crate) fn new(dim: usize, metric: Metric, capacity: usize, seed: u64) -> Self {
        WarmTier {
            dim,
            metric,
            seed,
            capacity: if dim >= MIN_DIM { capacity } else { 0 },
            book: RwLock::new(None),
            segments: RwLock::new(VecDeque::new()),
            resident: AtomicUsize::new(0),
            training: Mutex::new(()),
            retrain_due: AtomicBool::new(false),
            moving: Mutex::new(()),
            entered: AtomicU64::new(0),
            moved_on: AtomicU64::new(0),
        }
    }

    /// False when configured off.
    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Rows held.
    pub(crate) fn len(&self) -> usize {
        self.resident.load(Ordering::Acquire)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rows that entered the tier, and that moved on into the graph, since open.
    pub(crate) fn flow(&self) -> (u64, u64) {
        (
            self.entered.load(Ordering::Relaxed),
            self.moved_on.load(Ordering::Relaxed),
        )
    }

    /// Bytes held: rows and codebooks.
    pub(crate) fn memory_bytes(&self) -> usize {
        let books = self
            .book
            .read()
            .as_ref()
            .map_or(0, |b| b.centroids.len() * 4 * 2);
        self.len() * row_bytes(self.dim) + books
    }

    /// True when `rows` more fit.
    pub(crate) fn has_room(&self, rows: usize) -> bool {
        self.enabled() && self.len() + rows <= self.capacity
    }

    /// True when rows can enter (a codebook is trained) and none is due.
    pub(crate) fn ready(&self) -> bool {
        self.book.read().is_some() && !self.retrain_due.load(Ordering::Acquire)
    }

    /// Trains a codebook on `sample` (row-major prepared vectors) for the rows that
    /// enter from now on, unless another thread is training. Returns true if it
    /// trained one.
    pub(crate) fn train(&self, sample: &[f32]) -> bool {
        let Some(_one) = self.training.try_lock() else {
            return false;
        };
        if sample.len() < TRAIN_MIN_ROWS * self.dim {
            return false;
        }
        let n = self.entered.load(Ordering::Relaxed).wrapping_add(self.seed);
        let book = Codebook::train(sample, self.dim, n);
        tracing::debug!(
            lists = book.lists(),
            rows = sample.len() / self.dim,
            "warm tier codebook trained"
        );
        *self.book.write() = Some(Arc::new(book));
        self.retrain_due.store(false, Ordering::Release);
        true
    }

    /// Takes in rows (LSN and prepared vector); they are visible to scans when this
    /// returns. False (nothing taken) without a codebook.
    pub(crate) fn insert(&self, rows: &[(Lsn, Vec<f32>)]) -> bool {
        if rows.is_empty() {
            return true;
        }
        let Some(book) = self.book.read().clone() else {
            return false;
        };
        let dim = self.dim;
        let flat: Vec<f32> = rows.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let owners = kmeans::assign(&flat, &book.centroids, &book.half_sq, dim, &mut Vec::new());
        let words = codes::code_words(dim);
        // Encoded outside any lock.
        let (mut residual, mut rotated, mut scratch) = (vec![0f32; dim], Vec::new(), Vec::new());
        let mut encoded = Vec::with_capacity(rows.len());
        let mut residual_sum = 0.0f64;
        for ((lsn, v), &list) in rows.iter().zip(&owners) {
            let c = book.centroid(list as usize);
            residual
                .iter_mut()
                .zip(v.iter().zip(c))
                .for_each(|(r, (x, c))| *r = x - c);
            let residual_sq = crate::index::score::dot(&residual, &residual);
            residual_sum += f64::from(residual_sq);
            book.rotation.apply(&residual, &mut rotated, &mut scratch);
            let mut code = Vec::with_capacity(words);
            let factor = codes::encode(&rotated, &mut code);
            let mut nibbles = Vec::with_capacity(codes::nibble_bytes(dim));
            let nibble_scale = codes::encode_nibbles(&rotated, &mut nibbles);
            let sq_norm = crate::index::score::dot(v, v);
            encoded.push(Encoded {
                lsn: *lsn,
                list,
                code,
                factor,
                nibbles,
                nibble_scale,
                sq_norm,
                residual_sq,
            });
        }
        loop {
            let segment = self.open_segment(&book);
            let mut seg = segment.rows.write();
            if seg.sealed {
                continue; // a mover sealed it meanwhile: the next one
            }
            for e in &encoded {
                let l = &mut seg.lists[e.list as usize];
                l.lsns.push(e.lsn);
                l.codes.extend_from_slice(&e.code);
                l.factors.push(e.factor);
                l.nibbles.extend_from_slice(&e.nibbles);
                l.nibble_scales.push(e.nibble_scale);
                l.sq_norms.push(e.sq_norm);
                l.residual_sq.push(e.residual_sq);
                l.moved.push(AtomicBool::new(false));
                segment.pending_low.fetch_min(e.lsn, Ordering::AcqRel);
            }
            seg.len += encoded.len();
            seg.residual_sum += residual_sum;
            let full = seg.len >= SEGMENT_ROWS;
            if full {
                seg.sealed = true;
                let mean = (seg.residual_sum / seg.len as f64) as f32;
                if mean > DRIFT_RATIO * segment.book.trained_residual {
                    tracing::debug!(
                        mean,
                        trained = segment.book.trained_residual,
                        "warm tier drift: a new codebook is due"
                    );
                    self.retrain_due.store(true, Ordering::Release);
                }
            }
            break;
        }
        self.resident.fetch_add(rows.len(), Ordering::AcqRel);
        self.entered.fetch_add(rows.len() as u64, Ordering::Relaxed);
        true
    }

    /// The newest segment if it takes rows with `book`, else a new one.
    fn open_segment(&self, book: &Arc<Codebook>) -> Arc<Segment> {
        let fits = |s: &Arc<Segment>| Arc::ptr_eq(&s.book, book) && !s.rows.read().sealed;
        if let Some(s) = self.segments.read().back().filter(|s| fits(s)) {
            return s.clone();
        }
        let mut segments = self.segments.write();
        if let Some(s) = segments.back().filter(|s| fits(s)) {
            return s.clone();
        }
        if let Some(last) = segments.back() {
            last.rows.write().sealed = true;
        }
        let segment = Arc::new(Segment {
            book: book.clone(),
            rows: RwLock::new(SegmentRows {
                lists: (0..book.lists()).map(|_| List::default()).collect(),
                len: 0,
                sealed: false,
                residual_sum: 0.0,
            }),
            order: Mutex::new(None),
            pending_low: AtomicU64::new(Lsn::MAX),
        });
        segments.push_back(segment.clone());
        segment
    }

    /// Lowest LSN held that is not yet in the graph.
    pub(crate) fn lowest_pending(&self) -> Option<Lsn> {
        self.segments
            .read()
            .iter()
            .map(|s| s.pending_low.load(Ordering::Acquire))
            .min()
            .filter(|&l| l != Lsn::MAX)
    }

    /// Moves up to `max` rows of the oldest segment into the graph: `insert` gets
    /// their LSNs (ascending) and whether they may be there already (a retried
    /// batch), and must have put them all in the graph when it returns `Ok`.
    /// Returns how many moved (0 when another thread is moving or nothing is here).
    pub(crate) fn move_to_graph<E>(
        &self,
        max: usize,
        insert: impl FnOnce(&[Lsn], bool) -> Result<(), E>,
    ) -> Result<usize, E> {
        let Some(_one) = self.moving.try_lock() else {
            return Ok(0);
        };
        let Some(segment) = self.segments.read().front().cloned() else {
            return Ok(0);
        };
        let mut order = segment.order.lock();
        let order = order.get_or_insert_with(|| Self::seal(&segment));
        let batch: Vec<(Lsn, u32, u32)> = order.rows[order.done..]
            .iter()
            .take(max.max(1))
            .copied()
            .collect();
        if !batch.is_empty() {
            let lsns: Vec<Lsn> = batch.iter().map(|r| r.0).collect();
            if let Err(e) = insert(&lsns, order.retry) {
                order.retry = true;
                return Err(e);
            }
            order.retry = false;
            {
                let rows = segment.rows.read();
                for &(_, list, at) in &batch {
                    rows.lists[list as usize].moved[at as usize].store(true, Ordering::Release);
                }
            }
            order.done += batch.len();
            let low = order.rows.get(order.done).map_or(Lsn::MAX, |r| r.0);
            segment.pending_low.store(low, Ordering::Release);
            self.moved_on
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        if order.done == order.rows.len() {
            let mut segments = self.segments.write();
            if segments.front().is_some_and(|s| Arc::ptr_eq(s, &segment)) {
                segments.pop_front();
                self.resident.fetch_sub(order.rows.len(), Ordering::AcqRel);
            }
        }
        Ok(batch.len())
    }

    /// Whether `lsn` is held, and if so whether it is marked moved (tests).
    #[cfg(test)]
    pub(crate) fn holds(&self, lsn: Lsn) -> Option<bool> {
        for segment in self.segments.read().iter() {
            let rows = segment.rows.read();
            for list in &rows.lists {
                if let Some(i) = list.lsns.iter().position(|&l| l == lsn) {
                    return Some(list.moved[i].load(Ordering::Acquire));
                }
            }
        }
        None
    }

    /// Seals `segment` and lists its rows in LSN order.
    fn seal(segment: &Segment) -> MoveOrder {
        let mut seg = segment.rows.write();
        seg.sealed = true;
        let mut rows = Vec::with_capacity(seg.len);
        for (l, list) in seg.lists.iter().enumerate() {
            for (at, &lsn) in list.lsns.iter().enumerate() {
                rows.push((lsn, l as u32, at as u32));
            }
        }
        rows.sort_unstable_by_key(|r| r.0);
        MoveOrder {
            rows,
            done: 0,
            retry: false,
        }
    }
}

#[cfg(test)]
mod tests;
