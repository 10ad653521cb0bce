//! [`TopK`]: the bounded best-k collector every scan and merge uses.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;

use crate::types::Lsn;

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
