//! [`LsnVec`]: one value per LSN (or per sequence number) from a first one on,
//! whose front can be cut. A space that forgets (a TTL, say) keeps per-LSN state
//! only from the oldest record still needed, so memory and checkpoints stay
//! bounded however long the space lives.

use std::collections::VecDeque;

/// Values for keys `first..first + len`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LsnVec<T> {
    first: u64,
    items: VecDeque<T>,
}

impl<T> Default for LsnVec<T> {
    fn default() -> Self {
        LsnVec {
            first: 1,
            items: VecDeque::new(),
        }
    }
}

impl<T: Clone> LsnVec<T> {
    /// An empty vector whose next key is `first`.
    pub(crate) fn starting_at(first: u64) -> Self {
        LsnVec {
            first: first.max(1),
            items: VecDeque::new(),
        }
    }

    /// The first key held (keys below it were cut).
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// The last key held, or `first - 1` when empty: the next key is `end() + 1`.
    pub(crate) fn end(&self) -> u64 {
        self.first + self.items.len() as u64 - 1
    }

    /// Values held.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// True if none is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn index(&self, key: u64) -> Option<usize> {
        usize::try_from(key.checked_sub(self.first)?).ok()
    }

    pub(crate) fn get(&self, key: u64) -> Option<&T> {
        self.items.get(self.index(key)?)
    }

    pub(crate) fn get_mut(&mut self, key: u64) -> Option<&mut T> {
        let i = self.index(key)?;
        self.items.get_mut(i)
    }

    /// Appends the value of key `end() + 1`.
    pub(crate) fn push(&mut self, v: T) {
        self.items.push_back(v);
    }

    /// The last value.
    pub(crate) fn last(&self) -> Option<&T> {
        self.items.back()
    }

    /// Fills keys up to `key` (excluded) with `fill`.
    pub(crate) fn fill_to(&mut self, key: u64, fill: T) {
        while self.end() + 1 < key {
            self.items.push_back(fill.clone());
        }
    }

    /// Drops the values of keys below `key`.
    pub(crate) fn cut_below(&mut self, key: u64) {
        while self.first < key && !self.items.is_empty() {
            self.items.pop_front();
            self.first += 1;
        }
        if self.items.is_empty() && self.first < key {
            self.first = key;
        }
    }

    /// `(key, value)` in key order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (u64, &T)> + '_ {
        self.items
            .iter()
            .enumerate()
            .map(move |(i, v)| (self.first + i as u64, v))
    }

    /// Bytes of the values' storage.
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.items.capacity() * size_of::<T>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_cutting_the_front() {
        let mut v: LsnVec<u64> = LsnVec::default();
        assert_eq!(v.end(), 0);
        for k in 1..=10 {
            v.push(k * 10);
        }
        assert_eq!((v.first(), v.end(), v.get(7)), (1, 10, Some(&70)));
        v.cut_below(5);
        assert_eq!((v.first(), v.end(), v.len()), (5, 10, 6));
        assert_eq!(
            (v.get(4), v.get(5), v.get(10), v.get(11)),
            (None, Some(&50), Some(&100), None)
        );
        v.fill_to(13, 0);
        v.push(130);
        assert_eq!((v.end(), v.get(12), v.get(13)), (13, Some(&0), Some(&130)));
        v.cut_below(100);
        assert_eq!((v.first(), v.end(), v.is_empty()), (100, 99, true));
        v.push(1);
        assert_eq!(v.get(100), Some(&1));
        let w: LsnVec<u8> = LsnVec::starting_at(42);
        assert_eq!(w.end(), 41);
        assert_eq!(v.iter().map(|(k, _)| k).collect::<Vec<_>>(), vec![100]);
    }
}
