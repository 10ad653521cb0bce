//! Scanning the warm tier: for each segment, the lists whose centroids are nearest
//! the cue, every row's code scored with the estimator of `codes.rs`.

use std::sync::Arc;

use super::codes::CodedCue;
use super::{Codebook, List, Segment, WarmTier};
use crate::index::topk::TopK;
use crate::types::{Lsn, Metric};

/// A cue as the warm tier's codebooks see it, worked out once per codebook.
pub(crate) struct WarmCue<'a> {
    cue: &'a [f32],
    sq_norm: f32,
    books: Vec<(usize, BookCue)>,
}

struct BookCue {
    coded: CodedCue,
    /// `q·c` per list.
    centroid_dots: Vec<f32>,
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

    fn for_book(&mut self, book: &Arc<Codebook>) -> &BookCue {
        let key = Arc::as_ptr(book) as usize;
        if let Some(i) = self.books.iter().position(|b| b.0 == key) {
            return &self.books[i].1;
        }
        let mut dots = Vec::new();
        super::kmeans::dots(self.cue, &book.centroids, book.dim, &mut dots);
        let mut nearest: Vec<u32> = (0..book.lists() as u32).collect();
        let closeness = |l: u32| dots[l as usize] - book.half_sq[l as usize];
        nearest.sort_by(|a, b| closeness(*b).total_cmp(&closeness(*a)));
        let (mut rotated, mut scratch) = (Vec::new(), Vec::new());
        book.rotation.apply(self.cue, &mut rotated, &mut scratch);
        self.books.push((
            key,
            BookCue {
                coded: CodedCue::new(&rotated),
                centroid_dots: dots,
                nearest,
            },
        ));
        &self.books[self.books.len() - 1].1
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
        let mut top = TopK::new(want);
        let kernel = list_kernel();
        let (metric, sq_norm) = (self.metric, cue.sq_norm);
        for segment in segments {
            let book_cue = cue.for_book(&segment.book);
            let rows = segment.rows.read();
            for &l in book_cue.nearest.iter().take(probe) {
                let list = &rows.lists[l as usize];
                let base = book_cue.centroid_dots[l as usize];
                kernel(&mut ListScan {
                    list,
                    coded: &book_cue.coded,
                    base,
                    metric,
                    cue_sq: sq_norm,
                    snapshot,
                    outside,
                    top: &mut top,
                });
            }
        }
        top.into_sorted()
    }

    /// Candidates a scan for `want` results hands to the exact re-score: the 1-bit
    /// estimate orders rows only roughly (clustered 384-d rows kept 0.92 of their
    /// true top 10 among the best 100 estimates, 0.97 among 200, 0.99 among 400).
    pub(crate) fn rescore_count(want: usize) -> usize {
        (want * 20).clamp(200, 4096)
    }

    /// Lists a scan probes for `want` results: a share of each codebook's lists,
    /// more for more results. Callers widen it when a filter leaves too few.
    pub(crate) fn default_probe(want: usize) -> usize {
        (16 + want / 4).min(super::LISTS)
    }
}

struct ListScan<'s, 't> {
    list: &'s List,
    coded: &'s CodedCue,
    base: f32,
    metric: Metric,
    cue_sq: f32,
    snapshot: Lsn,
    outside: &'s (dyn Fn(Lsn) -> bool + Sync),
    top: &'t mut TopK,
}

#[inline(always)]
fn scan_list_body(s: &mut ListScan<'_, '_>) {
    let list = s.list;
    let words = if list.lsns.is_empty() {
        0
    } else {
        list.codes.len() / list.lsns.len()
    };
    for (i, &lsn) in list.lsns.iter().enumerate() {
        if lsn > s.snapshot || list.moved[i].load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        let code = &list.codes[i * words..(i + 1) * words];
        let dot = s.base + list.factors[i] * s.coded.signed_dot(code);
        let score = match s.metric {
            Metric::Cosine | Metric::InnerProduct => dot,
            Metric::L2 => -(s.cue_sq + list.sq_norms[i] - 2.0 * dot),
        };
        if s.top.admits(score) && !(s.outside)(lsn) {
            s.top.offer(lsn, score);
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
