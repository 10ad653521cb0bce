//! A space's attributes of every memory, for filters, get by id, id uniqueness
//! and ranking: posting lists (roaring bitmaps of LSNs) per tag value, per tag key
//! and per session; columns of `occurred_at`, `recorded_at` and confidence indexed
//! by LSN; and the id → LSN map.
//!
//! Memories are immutable, so a set of LSNs cut at a snapshot is exactly what
//! matched at that snapshot. Everything is rebuilt from the log at open (each
//! record is applied in LSN order, as the commit sink applies it).

use roaring::RoaringTreemap;
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

use crate::record::ObservationAttrs;
use crate::types::{Filter, Lsn, TagTest};

/// The LSN an id maps to while its observation is admitted but not yet committed
/// (a second observation with the id is refused meanwhile).
const PENDING: Lsn = 0;

/// See the module docs.
#[derive(Default)]
pub(crate) struct Attrs {
    /// key → value → LSNs.
    tag_values: HashMap<String, HashMap<String, RoaringTreemap>>,
    /// key → LSNs that have the key.
    tag_keys: HashMap<String, RoaringTreemap>,
    /// session id → LSNs.
    sessions: HashMap<String, RoaringTreemap>,
    /// Columns, index `lsn - 1`.
    occurred: Vec<i64>,
    recorded: Vec<i64>,
    confidence: Vec<f32>,
    /// id → LSN ([`PENDING`] while in flight).
    ids: HashMap<Uuid, Lsn>,
}

/// An id is taken already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken(pub(crate) Option<Lsn>);

impl Attrs {
    /// Takes in record `lsn` (the next LSN; earlier gaps are filled as lost).
    /// `None` is a record lost to log damage.
    pub(crate) fn push(&mut self, lsn: Lsn, rec: Option<&ObservationAttrs<'_>>) {
        let at = (lsn - 1) as usize;
        if at < self.occurred.len() {
            return; // applied already (a duplicate delivery must not shift columns)
        }
        // Gaps (cannot happen: LSNs are dense) are filled so columns stay aligned.
        self.occurred.resize(at, i64::MIN);
        self.recorded.resize(at, i64::MIN);
        self.confidence.resize(at, 0.0);
        let Some(rec) = rec else {
            self.occurred.push(i64::MIN);
            self.recorded.push(i64::MIN);
            self.confidence.push(0.0);
            return;
        };
        self.occurred.push(rec.occurred_at_us);
        self.recorded.push(rec.recorded_at_us);
        self.confidence.push(rec.confidence);
        for &(k, v) in &rec.tags {
            let values = match self.tag_values.get_mut(k) {
                Some(values) => values,
                None => self.tag_values.entry(k.to_string()).or_default(),
            };
            match values.get_mut(v) {
                Some(b) => b.push_or_insert(lsn),
                None => {
                    values.entry(v.to_string()).or_default().insert(lsn);
                }
            }
            match self.tag_keys.get_mut(k) {
                Some(b) => b.push_or_insert(lsn),
                None => {
                    self.tag_keys.entry(k.to_string()).or_default().insert(lsn);
                }
            }
        }
        if !rec.session_id.is_empty() {
            match self.sessions.get_mut(rec.session_id) {
                Some(b) => b.push_or_insert(lsn),
                None => {
                    self.sessions
                        .entry(rec.session_id.to_string())
                        .or_default()
                        .insert(lsn);
                }
            }
        }
        self.ids.insert(rec.id, lsn);
    }

    /// Reserves `id` for an observation being admitted; `Err` if a memory (or an
    /// observation in flight) has it.
    pub(crate) fn reserve_id(&mut self, id: Uuid) -> Result<(), Taken> {
        match self.ids.get(&id) {
            Some(&PENDING) => Err(Taken(None)),
            Some(&lsn) => Err(Taken(Some(lsn))),
            None => {
                self.ids.insert(id, PENDING);
                Ok(())
            }
        }
    }

    /// Returns a reservation whose append failed.
    pub(crate) fn release_id(&mut self, id: Uuid) {
        if self.ids.get(&id) == Some(&PENDING) {
            self.ids.remove(&id);
        }
    }

    /// The LSN of the memory with `id`, if one is committed.
    pub(crate) fn lsn_of(&self, id: &Uuid) -> Option<Lsn> {
        self.ids.get(id).copied().filter(|&lsn| lsn != PENDING)
    }

    /// `(occurred_at_us, confidence)` of `lsn`.
    pub(crate) fn time_and_confidence(&self, lsn: Lsn) -> Option<(i64, f32)> {
        let at = usize::try_from(lsn.checked_sub(1)?).ok()?;
        Some((*self.occurred.get(at)?, *self.confidence.get(at)?))
    }

    /// When the record `lsn` was recorded (µs), if it is a memory.
    pub(crate) fn recorded_at(&self, lsn: Lsn) -> Option<i64> {
        let at = usize::try_from(lsn.checked_sub(1)?).ok()?;
        self.recorded.get(at).copied().filter(|t| *t != i64::MIN)
    }

    /// Every LSN `1..=snapshot` that matches `filter`, lost records excluded.
    pub(crate) fn select(
        &self,
        filter: &Filter,
        snapshot: Lsn,
        lost: &BTreeSet<Lsn>,
    ) -> RoaringTreemap {
        let known = (self.occurred.len() as Lsn).min(snapshot);
        let mut set: Option<RoaringTreemap> = None;
        let mut narrow = |b: RoaringTreemap| {
            set = Some(match set.take() {
                Some(s) => s & b,
                None => b,
            });
        };
        let empty = RoaringTreemap::new();
        for c in &filter.tags {
            let values = self.tag_values.get(&c.key);
            match &c.test {
                TagTest::Equals(v) => {
                    narrow(values.and_then(|vs| vs.get(v)).unwrap_or(&empty).clone())
                }
                TagTest::AnyOf(vs) => {
                    let mut u = RoaringTreemap::new();
                    for v in vs {
                        if let Some(b) = values.and_then(|m| m.get(v)) {
                            u |= b;
                        }
                    }
                    narrow(u);
                }
                TagTest::Present => narrow(self.tag_keys.get(&c.key).unwrap_or(&empty).clone()),
                TagTest::Absent => {}
            }
        }
        if !filter.session_ids.is_empty() {
            let mut u = RoaringTreemap::new();
            for s in &filter.session_ids {
                if let Some(b) = self.sessions.get(s) {
                    u |= b;
                }
            }
            narrow(u);
        }
        let mut set = set.unwrap_or_else(|| {
            let mut all = RoaringTreemap::new();
            all.insert_range(1..=known);
            all
        });
        set.remove_range(known + 1..);
        for c in &filter.tags {
            if c.test == TagTest::Absent
                && let Some(b) = self.tag_keys.get(&c.key)
            {
                set -= b;
            }
        }
        for lsn in lost {
            set.remove(*lsn);
        }
        let columns = !filter.occurred_at.is_open()
            || !filter.recorded_at.is_open()
            || filter.min_confidence.is_some();
        if !columns {
            return set;
        }
        RoaringTreemap::from_sorted_iter(set.iter().filter(|&lsn| {
            let at = (lsn - 1) as usize;
            filter.occurred_at.contains(self.occurred[at])
                && filter.recorded_at.contains(self.recorded[at])
                && filter
                    .min_confidence
                    .is_none_or(|m| self.confidence[at] >= m)
        }))
        .unwrap_or_default()
    }

    /// Bytes the posting lists, columns and id map take (roughly: bitmaps as
    /// serialised, maps at their entry size).
    pub(crate) fn memory_bytes(&self) -> usize {
        let bitmaps: usize = self
            .tag_values
            .values()
            .flat_map(|m| m.iter().map(|(v, b)| v.len() + b.serialized_size()))
            .chain(
                self.tag_keys
                    .iter()
                    .map(|(k, b)| k.len() + b.serialized_size()),
            )
            .chain(
                self.sessions
                    .iter()
                    .map(|(s, b)| s.len() + b.serialized_size()),
            )
            .sum();
        let columns = self.occurred.capacity() * 8
            + self.recorded.capacity() * 8
            + self.confidence.capacity() * 4;
        let ids = self.ids.capacity() * (16 + 8 + 1);
        bitmaps + columns + ids
    }
}

/// Appends `lsn` to a bitmap (LSNs come in order, so this is the cheap path).
trait PushOrInsert {
    fn push_or_insert(&mut self, lsn: Lsn);
}

impl PushOrInsert for RoaringTreemap {
    fn push_or_insert(&mut self, lsn: Lsn) {
        if self.try_push(lsn).is_err() {
            self.insert(lsn);
        }
    }
}
