//! Which memories of a space died, and when: forgotten (a forget record),
//! superseded (an observation correcting them) or expired (the expiry sweep's
//! forget record). A memory that died at LSN `F` is still seen by snapshots below
//! `F` (snapshot isolation) and by none at or above it.
//!
//! A death is *unpurged* while the memory may still be in the fresh tier or the
//! graph: recalls filter it out by its death LSN. Purging (`purge.rs`) takes it out
//! of both tiers and of the posting lists, and moves `purged_upto` (the oldest
//! snapshot a recall may still ask for) past its death.

use roaring::RoaringTreemap;
use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::codec::{Dec, DecError, Enc};
use crate::types::Lsn;

/// See the module docs.
#[derive(Default, Clone)]
pub(crate) struct Deaths {
    /// Memory → the LSN it died at, while unpurged.
    unpurged: HashMap<Lsn, Lsn>,
    /// Death LSN → the memories that died there, while unpurged.
    by_death: BTreeMap<Lsn, RoaringTreemap>,
    /// Every memory that died, purged or not.
    dead: RoaringTreemap,
    /// Live memories with an expiry, by the second they expire in (the expiry
    /// sweep's work list).
    expiring: BTreeMap<i64, RoaringTreemap>,
    /// A superseded memory → the memory that superseded it (LSN and id).
    superseded_by: HashMap<Lsn, (Lsn, Uuid)>,
    /// Every death at or below it is purged; recalls of older snapshots are refused.
    purged_upto: Lsn,
    /// Deaths and purges so far (a checkpoint of the state is due when it moved).
    changes: u64,
}

/// `set` with each container in its smallest form (runs where they are smaller).
pub(crate) fn run_compressed(set: &RoaringTreemap) -> RoaringTreemap {
    RoaringTreemap::from_bitmaps(set.bitmaps().map(|(hi, b)| {
        let mut b = b.clone();
        b.optimize();
        (hi, b)
    }))
}

/// The second an expiry (µs) falls in.
fn second(us: i64) -> i64 {
    us.div_euclid(1_000_000)
}

impl Deaths {
    /// Records that memory `lsn` died at `at`; false if it was dead already (the
    /// first death counts).
    pub(crate) fn kill(&mut self, lsn: Lsn, at: Lsn, expires_at_us: i64) -> bool {
        if !self.dead.insert(lsn) {
            return false;
        }
        self.changes += 1;
        self.unpurged.insert(lsn, at);
        self.by_death.entry(at).or_default().insert(lsn);
        if expires_at_us != 0 {
            self.unexpire(lsn, expires_at_us);
        }
        true
    }

    /// Records that `old` was superseded by `new` (which killed it), with id `id`.
    pub(crate) fn superseded(&mut self, old: Lsn, new: Lsn, id: Uuid) {
        self.superseded_by.insert(old, (new, id));
    }

    /// The memory that superseded `lsn` (LSN and id), if one did.
    pub(crate) fn superseded_by(&self, lsn: Lsn) -> Option<(Lsn, Uuid)> {
        self.superseded_by.get(&lsn).copied()
    }

    /// A live memory `lsn` expires at `at_us`.
    pub(crate) fn expire_later(&mut self, lsn: Lsn, at_us: i64) {
        self.expiring.entry(second(at_us)).or_default().insert(lsn);
    }

    fn unexpire(&mut self, lsn: Lsn, at_us: i64) {
        let s = second(at_us);
        if let Some(b) = self.expiring.get_mut(&s) {
            b.remove(lsn);
            if b.is_empty() {
                self.expiring.remove(&s);
            }
        }
    }

    /// True if any memory has died or has an expiry (recalls must check).
    pub(crate) fn any(&self) -> bool {
        !self.dead.is_empty() || !self.expiring.is_empty()
    }

    /// True if `lsn` died at or below `snapshot` (purged deaths are below every
    /// snapshot a recall may ask for).
    pub(crate) fn dead_at(&self, lsn: Lsn, snapshot: Lsn) -> bool {
        if !self.dead.contains(lsn) {
            return false;
        }
        self.unpurged.get(&lsn).is_none_or(|&f| f <= snapshot)
    }

    /// True if `lsn` ever died (at any LSN).
    pub(crate) fn is_dead(&self, lsn: Lsn) -> bool {
        self.dead.contains(lsn)
    }

    /// The memories dead as of `snapshot`: every death, less those after it.
    pub(crate) fn dead_set(&self, snapshot: Lsn) -> RoaringTreemap {
        let mut set = self.dead.clone();
        for (_, later) in self.by_death.range(snapshot + 1..) {
            set -= later;
        }
        set
    }

    /// The memories that died after `snapshot` (alive at it, unless expired).
    pub(crate) fn died_after(&self, snapshot: Lsn) -> impl Iterator<Item = Lsn> + '_ {
        self.by_death
            .range(snapshot + 1..)
            .flat_map(|(_, set)| set.iter())
    }

    /// Live memories whose expiry is at or before `at_us` (µs), per their
    /// `expires` (µs) as the caller's column has it.
    pub(crate) fn expired_by(&self, at_us: i64, expires: impl Fn(Lsn) -> i64) -> RoaringTreemap {
        let mut out = RoaringTreemap::new();
        for (&s, set) in self.expiring.range(..=second(at_us)) {
            if s < second(at_us) {
                out |= set;
            } else {
                out.extend(set.iter().filter(|&l| expires(l) <= at_us));
            }
        }
        out
    }

    /// The oldest snapshot a recall may still read.
    pub(crate) fn purged_upto(&self) -> Lsn {
        self.purged_upto
    }

    /// Unpurged deaths at or below `horizon` of memories at or below `indexed`
    /// (so in the graph, or never to be put there): what a purge may take out.
    pub(crate) fn purgeable(&self, horizon: Lsn, indexed: Lsn) -> RoaringTreemap {
        let mut out = RoaringTreemap::new();
        for (_, set) in self.by_death.range(..=horizon) {
            let mut part = set.clone();
            part.remove_range(indexed + 1..);
            out |= part;
        }
        out
    }

    /// The latest death at or below `horizon` not yet purged: how far a purge
    /// bounded by `horizon` must move `purged_upto` (none: nothing to purge).
    pub(crate) fn latest_death_upto(&self, horizon: Lsn) -> Option<Lsn> {
        self.by_death
            .range(..=horizon)
            .next_back()
            .map(|(&at, _)| at)
    }

    /// Refuses snapshots below `lsn` from now on (a purge is about to take out
    /// memories that died at or below it).
    pub(crate) fn raise_purged_upto(&mut self, lsn: Lsn) {
        self.purged_upto = self.purged_upto.max(lsn);
    }

    /// How many deaths and purges there were (see [`Deaths::changes`]).
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    /// Forgets the unpurged state of `lsns`: they are out of both tiers now.
    pub(crate) fn purged(&mut self, lsns: &RoaringTreemap) {
        self.changes += 1;
        for lsn in lsns {
            if let Some(at) = self.unpurged.remove(&lsn)
                && let Some(set) = self.by_death.get_mut(&at)
            {
                set.remove(lsn);
                if set.is_empty() {
                    self.by_death.remove(&at);
                }
            }
        }
    }

    /// Stores the dead set as runs where that is smaller: once memories die and
    /// are cut in order (a TTL), it is a few long runs, not a bit per LSN.
    pub(crate) fn compress(&mut self) {
        self.dead = run_compressed(&self.dead);
    }

    /// Every memory that died, purged or not.
    pub(crate) fn dead(&self) -> &RoaringTreemap {
        &self.dead
    }

    /// Memories dead and purged (out of both tiers).
    pub(crate) fn purged_dead(&self) -> RoaringTreemap {
        let mut r = self.dead.clone();
        for &lsn in self.unpurged.keys() {
            r.remove(lsn);
        }
        r
    }

    /// Deaths not yet purged.
    pub(crate) fn unpurged_count(&self) -> usize {
        self.unpurged.len()
    }

    /// Writes what a checkpoint keeps (the expiry work list is rebuilt from the
    /// expiry column).
    pub(crate) fn encode(&self, e: &mut Enc) {
        e.u64(self.unpurged.len() as u64);
        for (&lsn, &at) in &self.unpurged {
            e.u64(lsn);
            e.u64(at);
        }
        e.bitmap(&self.dead);
        e.u64(self.superseded_by.len() as u64);
        for (&old, &(new, id)) in &self.superseded_by {
            e.u64(old);
            e.u64(new);
            e.buf.extend_from_slice(id.as_bytes());
        }
        e.u64(self.purged_upto);
    }

    /// Reads what [`Deaths::encode`] wrote.
    pub(crate) fn decode(d: &mut Dec<'_>) -> Result<Deaths, DecError> {
        let mut out = Deaths::default();
        for _ in 0..d.count(16)? {
            let (lsn, at) = (d.u64()?, d.u64()?);
            out.unpurged.insert(lsn, at);
            out.by_death.entry(at).or_default().insert(lsn);
        }
        out.dead = d.bitmap()?;
        for _ in 0..d.count(32)? {
            let (old, new) = (d.u64()?, d.u64()?);
            let mut id = [0u8; 16];
            for b in &mut id {
                *b = d.u8()?;
            }
            out.superseded_by.insert(old, (new, Uuid::from_bytes(id)));
        }
        out.purged_upto = d.u64()?;
        Ok(out)
    }

    /// Rough bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.unpurged.capacity() * 17
            + self.superseded_by.capacity() * 33
            + self.dead.serialized_size()
            + self
                .by_death
                .values()
                .chain(self.expiring.values())
                .map(|b| b.serialized_size() + 16)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_death_is_seen_from_its_lsn_on() {
        let mut d = Deaths::default();
        assert!(d.kill(5, 10, 0));
        assert!(!d.kill(5, 12, 0), "the first death counts");
        assert!(!d.dead_at(5, 9));
        assert!(d.dead_at(5, 10));
        assert!(d.dead_at(5, 11));
        assert_eq!(d.dead_set(9).len(), 0);
        assert_eq!(d.dead_set(10).iter().collect::<Vec<_>>(), vec![5]);
        assert_eq!(d.died_after(9).collect::<Vec<_>>(), vec![5]);
        // Purged: below every snapshot still allowed.
        assert_eq!(d.latest_death_upto(100), Some(10));
        d.raise_purged_upto(10);
        let p = d.purgeable(10, 100);
        assert_eq!(p.len(), 1);
        d.purged(&p);
        assert_eq!(d.latest_death_upto(100), None);
        assert_eq!(d.purged_upto(), 10);
        assert!(d.dead_at(5, 10));
        assert_eq!(d.unpurged_count(), 0);
    }

    #[test]
    fn expiries_are_found_by_time() {
        let mut d = Deaths::default();
        let col = |l: Lsn| l as i64 * 400_000; // LSN 5 expires at 2.0 s, 6 at 2.4 s
        for l in 1..=10 {
            d.expire_later(l, col(l));
        }
        let due: Vec<Lsn> = d.expired_by(2_000_000, col).iter().collect();
        assert_eq!(due, vec![1, 2, 3, 4, 5]);
        d.kill(3, 20, col(3));
        let due: Vec<Lsn> = d.expired_by(2_000_000, col).iter().collect();
        assert_eq!(
            due,
            vec![1, 2, 4, 5],
            "a dead memory no longer waits to expire"
        );
    }

    #[test]
    fn purgeable_waits_for_indexing_and_the_horizon() {
        let mut d = Deaths::default();
        d.kill(1, 5, 0);
        d.kill(7, 8, 0);
        d.kill(2, 9, 0);
        assert_eq!(d.purgeable(8, 100).iter().collect::<Vec<_>>(), vec![1, 7]);
        assert_eq!(d.purgeable(9, 5).iter().collect::<Vec<_>>(), vec![1, 2]);
    }
}
