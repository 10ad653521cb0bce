//! A space's attributes of every memory, for filters, get by id, id uniqueness,
//! ranking and expiry: posting lists (roaring bitmaps of LSNs) per tag value, per
//! tag key and per session; columns of `occurred_at`, `recorded_at`, confidence,
//! expiry and the commit clock indexed by LSN; the id → LSN map; and which
//! memories died when (`deaths.rs`).
//!
//! Memories are immutable and deaths are dated by LSN, so a set of LSNs cut at a
//! snapshot, less what was dead or expired at it, is exactly what matched at that
//! snapshot. Everything is rebuilt from the log at open (each record is applied
//! in LSN order, as the commit sink applies it).

use roaring::RoaringTreemap;
use std::collections::{BTreeSet, HashMap, HashSet};
use uuid::Uuid;

mod codec;

use super::deaths::Deaths;
use crate::lsn_vec::LsnVec;
use crate::record::ObservationAttrs;
use crate::types::{Filter, Lsn, TagTest};

/// See the module docs.
#[derive(Default, Clone)]
pub(crate) struct Attrs {
    /// key → value → LSNs.
    tag_values: HashMap<String, HashMap<String, RoaringTreemap>>,
    /// key → LSNs that have the key.
    tag_keys: HashMap<String, RoaringTreemap>,
    /// session id → LSNs.
    sessions: HashMap<String, RoaringTreemap>,
    /// LSNs that are not memories: forget records and records lost to damage.
    control: RoaringTreemap,
    /// One row per LSN, from the oldest one still needed: rows of records the log
    /// no longer has (purged memories, forget records) are cut from the front, so
    /// a space that keeps forgetting (a TTL) keeps a bounded state.
    rows: LsnVec<Row>,
    /// id → LSN of the latest memory with it.
    ids: HashMap<Uuid, Lsn>,
    /// Ids of observations admitted and not yet committed, with how many (more
    /// than one only for in-place corrections: an observation that takes the id
    /// of the one it supersedes). Others with the id are refused meanwhile.
    pending: HashMap<Uuid, u32>,
    /// A memory whose id a dead memory had before it → that memory's LSN.
    prior: HashMap<Lsn, Lsn>,
    /// Ids of memories an observation in flight supersedes (a second one is refused).
    superseding: HashSet<Uuid>,
    /// Deaths: forgotten, superseded, expired.
    pub(crate) deaths: Deaths,
}

/// A record's columns.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Row {
    occurred: i64,
    recorded: i64,
    confidence: f32,
    /// When the memory expires (µs; 0: never).
    expires: i64,
    /// The commit clock: the latest `recorded_at` of any record up to this LSN
    /// (so it never goes back; a snapshot's commit time).
    clock: i64,
}

impl Row {
    /// The row of a record that is not a memory, at commit clock `clock`.
    fn control(clock: i64) -> Row {
        Row {
            occurred: i64::MIN,
            recorded: i64::MIN,
            confidence: 0.0,
            expires: 0,
            clock,
        }
    }
}

/// An id is taken already (by the memory at this LSN; none: by one in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken(pub(crate) Option<Lsn>);

/// Why a memory named by a supersede is not there to supersede.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotLive {
    /// No memory has the id (or it is dead).
    Missing,
    /// Another observation in flight supersedes it already.
    InFlight,
}

impl Attrs {
    /// The commit clock after record `lsn` recorded at `recorded_at`, if `lsn` is
    /// the next LSN (earlier gaps are filled as nothing); `None` if `lsn` was
    /// applied already (a duplicate delivery must not shift rows).
    fn grow(&mut self, lsn: Lsn, recorded_at: i64) -> Option<i64> {
        if lsn <= self.rows.end() {
            return None;
        }
        let clock = self.rows.last().map_or(i64::MIN, |r| r.clock);
        if lsn > self.rows.end() + 1 {
            // LSNs with no record here (compacted away): not memories.
            self.control.insert_range(self.rows.end() + 1..lsn);
            self.rows.fill_to(lsn, Row::control(clock));
        }
        Some(clock.max(recorded_at))
    }

    /// Takes in record `lsn`, a memory (`Some`) or a record lost to log damage.
    /// A memory that supersedes another kills it here, at `lsn`.
    pub(crate) fn push(&mut self, lsn: Lsn, rec: Option<&ObservationAttrs<'_>>) {
        let Some(rec) = rec else {
            self.push_control(lsn, i64::MIN);
            return;
        };
        let Some(clock) = self.grow(lsn, rec.recorded_at_us) else {
            return;
        };
        let expires = rec.expires_at_us.unwrap_or(0);
        self.rows.push(Row {
            occurred: rec.occurred_at_us,
            recorded: rec.recorded_at_us,
            confidence: rec.confidence,
            expires,
            clock,
        });
        if expires != 0 && !self.deaths.is_dead(lsn) {
            self.deaths.expire_later(lsn, expires);
        }
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
        if let Some(s) = rec.supersedes {
            self.superseding.remove(&s.id);
            // LSN 0: the memory was in flight at admission; it committed before
            // this one (appends are in admission order), so its id finds it now.
            let old = if s.lsn != 0 {
                Some(s.lsn)
            } else {
                self.live_lsn(&s.id, lsn - 1)
            };
            if let Some(old) = old
                && self.kill(old, lsn)
            {
                self.deaths.superseded(old, lsn, rec.id);
            }
        }
        self.release_id(rec.id);
        if let Some(old) = self.ids.insert(rec.id, lsn)
            && old != lsn
        {
            self.prior.insert(lsn, old);
        }
    }

    /// Takes in a record that is not a memory (a forget record, recorded at
    /// `recorded_at`; `i64::MIN` for a record lost to damage).
    pub(crate) fn push_control(&mut self, lsn: Lsn, recorded_at: i64) {
        let Some(clock) = self.grow(lsn, recorded_at) else {
            return;
        };
        self.rows.push(Row::control(clock));
        self.control.insert(lsn);
    }

    /// Kills memory `lsn` at `at`; false if it is not a memory or was dead already.
    pub(crate) fn kill(&mut self, lsn: Lsn, at: Lsn) -> bool {
        let Some(row) = self.rows.get(lsn) else {
            return false;
        };
        if self.control.contains(lsn) {
            return false;
        }
        self.deaths.kill(lsn, at, row.expires)
    }

    /// Reserves `id` for an observation being admitted; `Err` if a live memory (or
    /// an observation in flight) has it. An observation may take the id of the
    /// memory it supersedes (`supersedes`), committed or in flight.
    pub(crate) fn reserve_id(&mut self, id: Uuid, supersedes: Option<Uuid>) -> Result<(), Taken> {
        let in_place = supersedes == Some(id);
        if self.pending.contains_key(&id) && !in_place {
            return Err(Taken(None));
        }
        if let Some(&lsn) = self.ids.get(&id)
            && !self.deaths.is_dead(lsn)
            && !in_place
        {
            return Err(Taken(Some(lsn)));
        }
        *self.pending.entry(id).or_default() += 1;
        Ok(())
    }

    /// Returns a reservation (its append failed, or it committed).
    pub(crate) fn release_id(&mut self, id: Uuid) {
        if let Some(n) = self.pending.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.pending.remove(&id);
            }
        }
    }

    /// Finds the memory `id` names for an observation that supersedes it, and
    /// holds it until that observation commits or fails: its LSN if it is live at
    /// `snapshot`, 0 if it is still in flight (resolved when this one commits).
    pub(crate) fn reserve_supersede(&mut self, id: &Uuid, snapshot: Lsn) -> Result<Lsn, NotLive> {
        let lsn = match self.live_lsn(id, snapshot) {
            Some(lsn) => lsn,
            None if self.pending.contains_key(id) => 0,
            None => return Err(NotLive::Missing),
        };
        if !self.superseding.insert(*id) {
            return Err(NotLive::InFlight);
        }
        Ok(lsn)
    }

    /// Returns a supersede reservation whose append failed.
    pub(crate) fn release_supersede(&mut self, id: &Uuid) {
        self.superseding.remove(id);
    }

    /// The LSN of the memory that had `id` at `snapshot` (dead or alive then).
    pub(crate) fn lsn_of(&self, id: &Uuid, snapshot: Lsn) -> Option<Lsn> {
        let mut lsn = *self.ids.get(id)?;
        while lsn > snapshot {
            lsn = *self.prior.get(&lsn)?;
        }
        Some(lsn)
    }

    /// The LSN of the live memory with `id` at `snapshot`, for a supersede.
    pub(crate) fn live_lsn(&self, id: &Uuid, snapshot: Lsn) -> Option<Lsn> {
        self.lsn_of(id, snapshot)
            .filter(|&lsn| !self.hidden(lsn, snapshot))
    }

    /// `(occurred_at_us, confidence)` of `lsn`.
    pub(crate) fn time_and_confidence(&self, lsn: Lsn) -> Option<(i64, f32)> {
        let row = self.rows.get(lsn)?;
        Some((row.occurred, row.confidence))
    }

    /// When the memory `lsn` expires (µs), if it does.
    pub(crate) fn expires_at(&self, lsn: Lsn) -> Option<i64> {
        self.rows.get(lsn).map(|r| r.expires).filter(|&e| e != 0)
    }

    /// The commit time of `snapshot`: the latest `recorded_at` of a record up to it.
    pub(crate) fn commit_time(&self, snapshot: Lsn) -> Option<i64> {
        let row = self.rows.get(snapshot.min(self.rows.end()))?;
        Some(row.clock).filter(|&t| t != i64::MIN)
    }

    /// True if memory `lsn` is not seen at `snapshot`: dead at it, or expired by
    /// the snapshot's commit time.
    pub(crate) fn hidden(&self, lsn: Lsn, snapshot: Lsn) -> bool {
        if self.deaths.dead_at(lsn, snapshot) {
            return true;
        }
        match self.expires_at(lsn) {
            Some(e) => self.commit_time(snapshot).is_some_and(|now| e <= now),
            None => false,
        }
    }

    /// True if `lsn` is a forget record or a record lost to damage.
    pub(crate) fn is_control(&self, lsn: Lsn) -> bool {
        self.control.contains(lsn)
    }

    /// True if recalls must check [`Attrs::hidden`] (some memory died or expires).
    pub(crate) fn any_hidden(&self) -> bool {
        self.deaths.any()
    }

    /// The memories hidden at `snapshot` (see [`Attrs::hidden`]).
    pub(crate) fn hidden_set(&self, snapshot: Lsn) -> RoaringTreemap {
        let mut set = self.deaths.dead_set(snapshot);
        let Some(now) = self.commit_time(snapshot) else {
            return set;
        };
        let expires = |l: Lsn| self.expires_at(l).unwrap_or(i64::MAX);
        set |= self.deaths.expired_by(now, expires);
        // Memories that died after the snapshot but had expired by its commit time.
        set.extend(
            self.deaths
                .died_after(snapshot)
                .filter(|&l| expires(l) <= now),
        );
        set
    }

    /// Live memories whose expiry has passed by `now` (µs): the expiry sweep's work.
    pub(crate) fn due_expiries(&self, now: i64) -> RoaringTreemap {
        self.deaths
            .expired_by(now, |l| self.expires_at(l).unwrap_or(i64::MAX))
    }

    /// Every memory `1..=snapshot` that matches `filter` and is seen at `snapshot`
    /// (not dead, not expired, not lost).
    pub(crate) fn select(
        &self,
        filter: &Filter,
        snapshot: Lsn,
        lost: &BTreeSet<Lsn>,
    ) -> RoaringTreemap {
        let known = self.applied().min(snapshot);
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
            all.insert_range(self.rows.first()..=known);
            all -= &self.control;
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
        if self.any_hidden() {
            set -= self.hidden_set(snapshot);
        }
        let columns = !filter.occurred_at.is_open()
            || !filter.recorded_at.is_open()
            || filter.min_confidence.is_some();
        if !columns {
            return set;
        }
        RoaringTreemap::from_sorted_iter(set.iter().filter(|&lsn| {
            self.rows.get(lsn).is_some_and(|r| {
                filter.occurred_at.contains(r.occurred)
                    && filter.recorded_at.contains(r.recorded)
                    && filter.min_confidence.is_none_or(|m| r.confidence >= m)
            })
        }))
        .unwrap_or_default()
    }

    /// Takes purged memories (out of both tiers now) out of the posting lists, the
    /// columns and the id map: nothing of them is left here but their death (and,
    /// for a superseded memory, its id and successor, for get by id).
    pub(crate) fn purge(&mut self, lsns: &RoaringTreemap) {
        self.deaths.purged(lsns);
        let strip = |lists: &mut HashMap<String, RoaringTreemap>| {
            lists.retain(|_, b| {
                *b -= lsns;
                !b.is_empty()
            });
        };
        for values in self.tag_values.values_mut() {
            strip(values);
        }
        self.tag_values.retain(|_, v| !v.is_empty());
        strip(&mut self.tag_keys);
        strip(&mut self.sessions);
        for lsn in lsns {
            if let Some(row) = self.rows.get_mut(lsn) {
                *row = Row::control(row.clock);
            }
        }
        let deaths = &self.deaths;
        let gone = |l: &Lsn| lsns.contains(*l) && deaths.superseded_by(*l).is_none();
        self.ids.retain(|_, l| !gone(l));
        self.prior.retain(|new, old| !gone(new) && !gone(old));
    }

    /// Records the log no longer needs once this state is saved: forget records,
    /// lost-record placeholders, and memories dead and purged.
    pub(crate) fn removable(&self) -> RoaringTreemap {
        let mut r = self.deaths.purged_dead();
        r |= &self.control;
        r
    }

    /// Records compaction will remove once purged and checkpointed: every dead
    /// memory, forget records and lost placeholders.
    pub(crate) fn dead_or_control(&self) -> RoaringTreemap {
        let mut r = self.deaths.dead().clone();
        r |= &self.control;
        r
    }

    /// How many memories `snapshot` sees (lost records not taken out).
    pub(crate) fn memories_at(&self, snapshot: Lsn) -> u64 {
        let known = self.applied().min(snapshot);
        let mut seen = RoaringTreemap::new();
        seen.insert_range(self.rows.first()..=known);
        seen -= &self.control;
        seen -= self.hidden_set(snapshot);
        seen.len()
    }

    /// Every memory not dead (the keys a graph may hold), in LSN order.
    pub(crate) fn live_memories(&self) -> Vec<Lsn> {
        let mut all = RoaringTreemap::new();
        all.insert_range(self.rows.first()..=self.applied());
        all -= &self.control;
        all -= self.deaths.dead();
        all.iter().collect()
    }

    /// The highest LSN taken in (records up to it are all applied).
    pub(crate) fn applied(&self) -> Lsn {
        self.rows.end()
    }

    /// Cuts the rows of the oldest records while the log no longer needs them
    /// (see [`Attrs::removable`]); returns the first LSN kept. The last row is
    /// kept (it holds the commit clock).
    pub(crate) fn trim(&mut self) -> Lsn {
        let removable = self.removable();
        let mut cut = self.rows.first();
        while cut < self.rows.end() && removable.contains(cut) {
            cut += 1;
        }
        self.rows.cut_below(cut);
        self.control = super::deaths::run_compressed(&self.control);
        self.deaths.compress();
        cut
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
