//! The observation queue between the durable log and the index workers.
//!
//! Each space has three lanes (high / normal / low); the log writer pushes every
//! committed record into its lane and index workers pop batches with a weighted fair
//! order. Spaces with work wait in a ready ring, round-robin, so a busy space cannot
//! starve a quiet one. A global [`Budget`] bounds what is admitted and not yet indexed.
//!
//! Lock-free (crossbeam `SegQueue` per lane and for the ring): the log writer pushes on
//! every group commit while workers pop, and neither may ever wait for the other.

use crossbeam_queue::SegQueue;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::types::{Lane, Lsn, SpaceNo};

/// Out of every 13 pops: 8 high, 4 normal, 1 low, interleaved. A lane whose turn it is
/// but which is empty passes the turn to the others in priority order, so no capacity
/// is wasted and low always gets its share under a flood of high.
const SCHEDULE: [Lane; 13] = [
    Lane::High,
    Lane::Normal,
    Lane::High,
    Lane::High,
    Lane::Normal,
    Lane::High,
    Lane::Low,
    Lane::High,
    Lane::Normal,
    Lane::High,
    Lane::High,
    Lane::Normal,
    Lane::High,
];

/// A committed record waiting to be indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// Its LSN in its space.
    pub lsn: Lsn,
    /// Bytes it holds of the [`Budget`].
    pub bytes: u32,
    /// When the engine received it (µs since epoch), for the observe→indexed latency.
    pub recorded_at_us: i64,
    /// Put back after a failed or panicked attempt: part of it may be in the graph.
    pub retried: bool,
}

/// One space's three lanes.
pub struct SpaceQueue {
    lanes: [SegQueue<Item>; 3],
    depth: [AtomicUsize; 3],
    /// Position in [`SCHEDULE`]; shared so the order holds across workers.
    tick: AtomicUsize,
    /// True while the space is in the ready ring or a worker is taking a batch from it.
    scheduled: AtomicBool,
}

impl Default for SpaceQueue {
    fn default() -> Self {
        SpaceQueue {
            lanes: [SegQueue::new(), SegQueue::new(), SegQueue::new()],
            depth: Default::default(),
            tick: AtomicUsize::new(0),
            scheduled: AtomicBool::new(false),
        }
    }
}

impl SpaceQueue {
    /// Appends to the back of `lane`.
    pub fn push(&self, lane: Lane, item: Item) {
        // Count first: a consumer can pop the item the moment it is in the lane, and
        // its decrement must never come before this increment (the counter would wrap
        // below zero and `len` overflow). So depth ≥ items, never less.
        self.depth[lane as usize].fetch_add(1, Ordering::AcqRel);
        self.lanes[lane as usize].push(item);
    }

    /// Items waiting, all lanes.
    pub fn len(&self) -> usize {
        self.depth.iter().map(|d| d.load(Ordering::Acquire)).sum()
    }

    /// True when no item waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items waiting per lane (high, normal, low).
    pub(crate) fn lane_depths(&self) -> [usize; 3] {
        [0, 1, 2].map(|i| self.depth[i].load(Ordering::Acquire))
    }

    fn pop_lane(&self, lane: Lane) -> Option<Item> {
        let item = self.lanes[lane as usize].pop()?;
        self.depth[lane as usize].fetch_sub(1, Ordering::AcqRel);
        Some(item)
    }

    /// Pops one item in weighted fair order.
    pub fn pop(&self) -> Option<(Lane, Item)> {
        let turn = SCHEDULE[self.tick.fetch_add(1, Ordering::Relaxed) % SCHEDULE.len()];
        std::iter::once(turn)
            .chain(Lane::ALL)
            .find_map(|lane| self.pop_lane(lane).map(|item| (lane, item)))
    }

    /// Pops up to `max` items in weighted fair order.
    pub fn pop_batch(&self, max: usize) -> Vec<(Lane, Item)> {
        let mut out = Vec::with_capacity(max.min(self.len()));
        while out.len() < max {
            match self.pop() {
                Some(x) => out.push(x),
                None => break,
            }
        }
        out
    }

    /// Marks the space as needing a worker; true if the caller must put it in the ring.
    pub(crate) fn mark_scheduled(&self) -> bool {
        !self.scheduled.swap(true, Ordering::AcqRel)
    }

    /// Called by a worker after taking a batch: true if the space still has work and
    /// must go back into the ring (by the caller). Free of lost wake-ups: the flag is
    /// cleared before the re-check, and a concurrent push sees the cleared flag.
    pub(crate) fn reschedule_after_take(&self) -> bool {
        if !self.is_empty() {
            return true;
        }
        self.scheduled.store(false, Ordering::Release);
        !self.is_empty() && self.mark_scheduled()
    }
}

/// Spaces with work, in round-robin order.
#[derive(Default)]
pub(crate) struct ReadyRing(SegQueue<SpaceNo>);

impl ReadyRing {
    pub(crate) fn push(&self, space: SpaceNo) {
        self.0.push(space);
    }

    pub(crate) fn pop(&self) -> Option<SpaceNo> {
        self.0.pop()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Admission bound on observations admitted and not yet indexed (or failed), by
/// item count and by bytes. Reserved before the log append, released exactly once
/// by whoever retires the item.
pub(crate) struct Budget {
    items: AtomicUsize,
    bytes: AtomicUsize,
    max_items: usize,
    max_bytes: usize,
}

impl Budget {
    pub(crate) fn new(max_items: usize, max_bytes: usize) -> Self {
        Budget {
            items: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_items,
            max_bytes,
        }
    }

    /// Takes one item of `bytes`; false (and nothing taken) when either bound is hit.
    pub(crate) fn try_reserve(&self, bytes: usize) -> bool {
        let items_ok = self
            .items
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_items).then_some(n + 1)
            })
            .is_ok();
        if !items_ok {
            return false;
        }
        let bytes_ok = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b + bytes <= self.max_bytes).then_some(b + bytes)
            })
            .is_ok();
        if !bytes_ok {
            self.items.fetch_sub(1, Ordering::AcqRel);
        }
        bytes_ok
    }

    /// Takes one item whatever the bounds (records recovered from the log at open).
    pub(crate) fn force_reserve(&self, bytes: usize) {
        self.items.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    pub(crate) fn release(&self, items: usize, bytes: usize) {
        self.items.fetch_sub(items, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn items(&self) -> usize {
        self.items.load(Ordering::Acquire)
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    pub(crate) fn max_items(&self) -> usize {
        self.max_items
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn item(lsn: Lsn) -> Item {
        Item {
            lsn,
            bytes: 1,
            recorded_at_us: 0,
            retried: false,
        }
    }

    #[test]
    fn high_overtakes_queued_normal_items() {
        let q = SpaceQueue::default();
        for lsn in 1..=100 {
            q.push(Lane::Normal, item(lsn));
        }
        q.push(Lane::High, item(101));
        let first_high = q.pop_batch(3).iter().position(|(l, _)| *l == Lane::High);
        assert!(
            first_high.is_some(),
            "high item must come within the first pops"
        );
    }

    #[test]
    fn low_progresses_under_a_flood_of_high() {
        let q = SpaceQueue::default();
        for lsn in 1..=10_000 {
            q.push(Lane::High, item(lsn));
        }
        for lsn in 10_001..=10_010 {
            q.push(Lane::Low, item(lsn));
        }
        let popped = q.pop_batch(13 * 10);
        let low = popped.iter().filter(|(l, _)| *l == Lane::Low).count();
        assert_eq!(low, 10, "one pop in 13 goes to low");
    }

    #[test]
    fn each_lane_is_fifo() {
        let q = SpaceQueue::default();
        for lsn in 1..=300 {
            let lane = Lane::ALL[(lsn % 3) as usize];
            q.push(lane, item(lsn));
        }
        let mut last = [0; 3];
        for (lane, it) in q.pop_batch(1000) {
            assert!(it.lsn > last[lane as usize]);
            last[lane as usize] = it.lsn;
        }
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn budget_bounds_items_and_bytes() {
        let b = Budget::new(3, 100);
        assert!(b.try_reserve(40));
        assert!(b.try_reserve(40));
        assert!(!b.try_reserve(40), "bytes bound");
        assert_eq!((b.items(), b.bytes()), (2, 80));
        assert!(b.try_reserve(10));
        assert!(!b.try_reserve(1), "item bound");
        b.release(1, 40);
        assert!(b.try_reserve(1));
    }

    /// Many producers and consumers at once: every item comes out exactly once, and a
    /// producer's items come out of each lane in the order it pushed them.
    #[test]
    fn contention_every_item_exactly_once_fifo_per_producer() {
        const PRODUCERS: u64 = 8;
        const PER: u64 = 20_000;
        let q = Arc::new(SpaceQueue::default());
        let done = Arc::new(AtomicBool::new(false));
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let q = Arc::clone(&q);
                let done = Arc::clone(&done);
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        let batch = q.pop_batch(17);
                        if batch.is_empty() {
                            if done.load(Ordering::Acquire) && q.is_empty() {
                                return got;
                            }
                            std::thread::yield_now();
                        }
                        got.push(batch);
                    }
                })
            })
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for i in 0..PER {
                        // lsn encodes (producer, sequence)
                        q.push(Lane::ALL[(i % 3) as usize], item(p * 1_000_000 + i));
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let mut all = Vec::new();
        for c in consumers {
            let batches = c.join().unwrap();
            // Within one consumer's stream, a producer's items per lane rise.
            let mut last: std::collections::HashMap<(u64, usize), u64> = Default::default();
            for (lane, it) in batches.into_iter().flatten() {
                let key = (it.lsn / 1_000_000, lane as usize);
                let seq = it.lsn % 1_000_000;
                if let Some(prev) = last.insert(key, seq) {
                    assert!(seq > prev, "lane FIFO broken for producer {}", key.0);
                }
                all.push(it.lsn);
            }
        }
        all.sort_unstable();
        let want: Vec<u64> = (0..PRODUCERS)
            .flat_map(|p| (0..PER).map(move |i| p * 1_000_000 + i))
            .collect();
        assert_eq!(all, want);
    }

    #[test]
    fn reschedule_never_loses_a_wakeup() {
        let q = SpaceQueue::default();
        assert!(q.mark_scheduled());
        assert!(!q.mark_scheduled(), "already scheduled");
        q.push(Lane::Normal, item(1));
        assert!(q.reschedule_after_take(), "work left: stays scheduled");
        q.pop_batch(10);
        assert!(!q.reschedule_after_take(), "empty: unscheduled");
        q.push(Lane::Normal, item(2));
        assert!(q.mark_scheduled(), "a push after that schedules again");
    }
}
