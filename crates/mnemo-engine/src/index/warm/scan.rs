//! Scanning the warm tier: for each segment, the lists whose centroids are nearest
//! the cue, every row's code scored with the estimator of `codes.rs`.

use std::sync::Arc;

use super::codes::{self, CodedCue};
use super::{Codebook, List, Segment, WarmTier};
use crate::index::score;
use crate::index::topk::TopK;
use crate::types::{Lsn, Metric};

/// A cue as the warm tier's codebooks see it, worked out once per codebook.
pub(crate) struct WarmCue<'a> {
    cue: &'a [f32],
    sq_norm: f32,
    books: Vec<(usize, BookCue)>,
}

/// The cue against one list: `P(q - c)` as bit planes and as 8-bit codes, and
/// `|q - c|²`.
struct ListCue {
    coded: CodedCue,
    rotated: score::Quantized,
    residual_sq: f32,
}

struct BookCue {
    /// Per list, once a segment's list was probed.
    lists: Vec<Option<ListCue>>,
    /// Lists, nearest centroid first.
    nearest: Vec<u32>,
}

impl<'a> WarmCue<'a> {
    /// `cue` prepared for the space's metric.
    pub(crate) fn new(cue: &'a [f32]) -> Self {
        WarmCue {
            cue,
            sq_norm: crate::index::score::dot(cue, cue),
            books: Vec::new(),
        }
    }

    fn for_book(&mut self, book: &Arc<Codebook>) -> usize {
        let key = Arc::as_ptr(book) as usize;
        if let Some(i) = self.books.iter().position(|b| b.0 == key) {
            return i;
        }
        let mut dots = Vec::new();
        super::kmeans::dots(self.cue, &book.centroids, book.dim, &mut dots);
        let mut nearest: Vec<u32> = (0..book.lists() as u32).collect();
        let closeness = |l: u32| dots[l as usize] - book.half_sq[l as usize];
        nearest.sort_by(|a, b| closeness(*b).total_cmp(&closeness(*a)));
        self.books.push((
            key,
            BookCue {
                lists: (0..book.lists()).map(|_| None).collect(),
                nearest,
            },
        ));
        self.books.len() - 1
    }

    /// The cue against list `l` of `book` (the book's entry is `at`).
    fn for_list(&mut self, at: usize, book: &Codebook, l: usize) -> &ListCue {
        let cue = self.cue;
        self.books[at].1.lists[l].get_or_insert_with(|| {
            let residual: Vec<f32> = cue
                .iter()
                .zip(book.centroid(l))
                .map(|(q, c)| q - c)
                .collect();
            let (mut rotated, mut scratch) = (Vec::new(), Vec::new());
            book.rotation.apply(&residual, &mut rotated, &mut scratch);
            ListCue {
                coded: CodedCue::new(&rotated),
                rotated: score::quantize(&rotated),
                residual_sq: crate::index::score::dot(&residual, &residual),
            }
        })
    }
}

impl WarmTier {
    /// The best `want` rows with `lsn ≤ snapshot` not `outside`, by estimated score
    /// (higher is better), from the `probe` lists nearest the cue in each segment.
    pub(crate) fn scan(
        &self,
        cue: &mut WarmCue<'_>,
        want: usize,
        probe: usize,
        snapshot: Lsn,
        outside: &(dyn Fn(Lsn) -> bool + Sync),
    ) -> Vec<(Lsn, f32)> {
        let segments: Vec<Arc<Segment>> = self.segments.read().iter().cloned().collect();
        // The 1-bit estimates shortlist; the 4-bit ones rank the shortlist.
        let mut shortlist = TopK::new(want.saturating_mul(SHORTLIST_FACTOR).max(SHORTLIST_MIN));
        let mut top = TopK::new(want);
        let kernel = list_kernel();
        let (dot_i8, mut unpacked) = (score::dot_i8_kernel(), vec![0i8; self.dim]);
        let (metric, sq_norm) = (self.metric, cue.sq_norm);
        for segment in segments {
            let at = cue.for_book(&segment.book);
            let lists: Vec<u32> = cue.books[at]
                .1
                .nearest
                .iter()
                .take(probe)
                .copied()
                .collect();
            let rows = segment.rows.read();
            for l in lists {
                let list = &rows.lists[l as usize];
                if list.lsns.is_empty() {
                    continue;
                }
                let list_cue = cue.for_list(at, &segment.book, l as usize);
                kernel(&mut ListScan {
                    list,
                    cue: list_cue,
                    metric,
                    cue_sq: sq_norm,
                    snapshot,
                    outside,
                    shortlist: &mut shortlist,
                    top: &mut top,
                    dot_i8,
                    unpacked: &mut unpacked,
                });
            }
        }
        top.into_sorted()
    }

    /// Candidates a scan for `want` results hands to the exact re-score: several
    /// times `want` for a small `want`, never fewer than `want`.
    pub(crate) fn rescore_count(want: usize) -> usize {
        want.saturating_mul(4).clamp(64, 4096).max(want)
    }

    /// Lists a scan probes for `want` results: a share of each codebook's lists,
    /// more for more results. Callers widen it when a filter leaves too few.
    pub(crate) fn default_probe(want: usize) -> usize {
        (8 + want / 8).min(super::LISTS)
    }
}

/// Rows the 1-bit estimates shortlist per row asked for, and at least.
const SHORTLIST_FACTOR: usize = 4;
const SHORTLIST_MIN: usize = 256;

struct ListScan<'s, 't> {
    list: &'s List,
    cue: &'s ListCue,
    metric: Metric,
    cue_sq: f32,
    snapshot: Lsn,
    outside: &'s (dyn Fn(Lsn) -> bool + Sync),
    shortlist: &'t mut TopK,
    top: &'t mut TopK,
    dot_i8: fn(&[i8], &[i8]) -> i32,
    /// A row's 4-bit code, one byte per coordinate.
    unpacked: &'t mut [i8],
}

#[inline(always)]
fn scan_list_body(s: &mut ListScan<'_, '_>) {
    let list = s.list;
    let (words, nibble_bytes) = if list.lsns.is_empty() {
        (0, 0)
    } else {
        (
            list.codes.len() / list.lsns.len(),
            list.nibbles.len() / list.lsns.len(),
        )
    };
    for (i, &lsn) in list.lsns.iter().enumerate() {
        if lsn > s.snapshot || list.moved[i].load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        let code = &list.codes[i * words..(i + 1) * words];
        // |q - x|² from the residuals (see `codes.rs`), then the metric's score.
        let score = |residual_dot: f32| {
            let distance = s.cue.residual_sq + list.residual_sq[i] - 2.0 * residual_dot;
            match s.metric {
                Metric::Cosine | Metric::InnerProduct => {
                    (s.cue_sq + list.sq_norms[i] - distance) / 2.0
                }
                Metric::L2 => -distance,
            }
        };
        let coarse = score(list.factors[i] * s.cue.coded.signed_dot(code));
        if !s.shortlist.admits(coarse) || (s.outside)(lsn) {
            continue;
        }
        s.shortlist.offer(lsn, coarse);
        let nibbles = &list.nibbles[i * nibble_bytes..(i + 1) * nibble_bytes];
        codes::unpack_nibbles(nibbles, s.unpacked);
        let dot = (s.dot_i8)(s.unpacked, &s.cue.rotated.codes) as f32;
        let fine = score(dot * list.nibble_scales[i] * s.cue.rotated.scale);
        if s.top.admits(fine) {
            s.top.offer(lsn, fine);
        }
    }
}

type ListKernel = fn(&mut ListScan<'_, '_>);

fn scan_list_portable(s: &mut ListScan<'_, '_>) {
    scan_list_body(s);
}

/// The fastest list kernel this CPU runs (checked once per scan).
fn list_kernel() -> ListKernel {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        return popcnt::scan_list;
    }
    scan_list_portable
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // the POPCNT instruction, only reached after the CPU was checked for it
mod popcnt {
    use super::ListScan;

    pub(super) fn scan_list(s: &mut ListScan<'_, '_>) {
        // SAFETY: `list_kernel` hands this out only after detecting POPCNT.
        unsafe { scan_list_popcnt(s) }
    }

    #[target_feature(enable = "popcnt")]
    fn scan_list_popcnt(s: &mut ListScan<'_, '_>) {
        super::scan_list_body(s);
    }
}
