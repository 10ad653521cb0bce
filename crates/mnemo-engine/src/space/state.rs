//! A space's checkpointed state: its attributes (posting lists, columns, ids,
//! deaths), its session marks and its lost records, so that reopening reads this
//! file and the log after the checkpoint instead of the whole log.
//!
//! The state is written as it is when the checkpoint is taken, which may be past
//! the graph's checkpoint LSN: replaying the log from that LSN is idempotent
//! (records already taken in are skipped, deaths already known change nothing).
//!
//! ```text
//! "MNEMOSTA" u32 version=1 | u64 applied LSN | attributes (attrs/codec.rs, deaths.rs)
//! u64 sessions, each: str id, u64 first seq, u64 n, n × u64 LSN | u64 lost, each u64 | u32 crc32c
//! ```

use roaring::RoaringTreemap;
use std::collections::{BTreeSet, HashMap};

use super::Space;
use super::attrs::Attrs;
use crate::codec::{Dec, DecError, Enc};
use crate::lsn_vec::LsnVec;
use crate::types::Lsn;

const MAGIC: &[u8; 8] = b"MNEMOSTA";
const VERSION: u32 = 1;

/// What a state file holds, decoded.
pub(crate) struct State {
    attrs: Attrs,
    sessions: HashMap<String, LsnVec<Lsn>>,
    lost: BTreeSet<Lsn>,
}

/// What a saved state lets compaction remove from the log: records at or below
/// `upto` that are in `removable` (memories dead and purged, forget records,
/// lost-record placeholders); `memories` are the memories among them (whose
/// contents must leave the disk).
#[derive(Debug, Clone, Default)]
pub(crate) struct Compactable {
    pub(crate) upto: Lsn,
    pub(crate) removable: RoaringTreemap,
    pub(crate) memories: RoaringTreemap,
    /// The deaths' change count when the state was taken.
    pub(crate) changes: u64,
}

impl Space {
    /// True if memories died or were purged since the state was last saved.
    pub(crate) fn state_dirty(&self) -> bool {
        let saved = self.compactable.lock().changes;
        self.attrs.read().deaths.changes() != saved
    }

    /// Encodes the state as it is now, with what it lets compaction remove.
    pub(crate) fn encode_state(&self) -> (Vec<u8>, Compactable) {
        let mut e = Enc::with_magic(MAGIC, VERSION);
        // Copies taken under the locks and encoded after: encoding millions of rows
        // takes a good part of a second, and a reader holding the lock that long
        // makes the commit path (a writer) wait, and every recall queued behind it.
        let attrs = self.attrs.read().clone();
        let sessions = self.sessions.lock().clone();
        let compactable = {
            e.u64(attrs.applied());
            attrs.encode(&mut e);
            Compactable {
                upto: attrs.applied(),
                removable: attrs.removable(),
                memories: attrs.deaths.purged_dead(),
                changes: attrs.deaths.changes(),
            }
        };
        {
            e.u64(sessions.len() as u64);
            for (id, lsns) in sessions.iter() {
                e.str(id);
                e.u64(lsns.first());
                e.u64(lsns.len() as u64);
                lsns.iter().for_each(|(_, &l)| e.u64(l));
            }
        }
        {
            let lost = self.lost.read();
            e.u64(lost.len() as u64);
            lost.iter().for_each(|&l| e.u64(l));
        }
        (e.finish(), compactable)
    }

    /// Takes in a decoded state (at open, before the log is replayed).
    pub(crate) fn install_state(&self, state: State) {
        let compactable = Compactable {
            upto: state.attrs.applied(),
            removable: state.attrs.removable(),
            memories: state.attrs.deaths.purged_dead(),
            changes: state.attrs.deaths.changes(),
        };
        *self.attrs.write() = state.attrs;
        *self.sessions.lock() = state.sessions;
        *self.lost.write() = state.lost;
        *self.compactable.lock() = compactable;
    }
}

impl Space {
    /// Cuts per-LSN state the log no longer backs: the attribute rows and the
    /// session marks of the oldest records, while they are removable (the last
    /// mark of each session is kept: it is where the session resumes).
    pub(crate) fn trim_state(&self) {
        let removable = {
            let mut attrs = self.attrs.write();
            attrs.trim();
            attrs.removable()
        };
        let mut sessions = self.sessions.lock();
        for seqs in sessions.values_mut() {
            let mut cut = seqs.first();
            while cut < seqs.end()
                && seqs
                    .get(cut)
                    .is_some_and(|&l| l != super::LOST && removable.contains(l))
            {
                cut += 1;
            }
            seqs.cut_below(cut);
        }
    }
}

impl State {
    /// The highest LSN the state holds.
    pub(crate) fn applied(&self) -> Lsn {
        self.attrs.applied()
    }
}

impl Space {
    /// True if a log whose last record of this space is `present` holds every
    /// record the state up to `upto` still needs (those after `present` were all
    /// removable). False: the log lost records the checkpoint has (a power loss
    /// with `durability = buffered`), so the checkpoint cannot be used.
    pub(crate) fn log_covers(&self, present: Lsn, upto: Lsn) -> bool {
        if present >= upto {
            return true;
        }
        let mut missing = RoaringTreemap::new();
        missing.insert_range(present + 1..=upto);
        missing -= &self.compactable.lock().removable;
        missing.is_empty()
    }
}

/// Decodes a state file.
pub(crate) fn decode_state(bytes: &[u8]) -> Result<State, DecError> {
    let mut d = Dec::open(bytes, MAGIC, VERSION)?;
    let applied = d.u64()?;
    let attrs = Attrs::decode(&mut d)?;
    if attrs.applied() != applied {
        return Err(DecError("the attributes end at another LSN".into()));
    }
    let mut sessions = HashMap::new();
    for _ in 0..d.count(16)? {
        let id = d.str()?.to_owned();
        let mut lsns = LsnVec::starting_at(d.u64()?);
        for _ in 0..d.count(8)? {
            lsns.push(d.u64()?);
        }
        sessions.insert(id, lsns);
    }
    let n = d.count(8)?;
    let lost = (0..n)
        .map(|_| d.u64())
        .collect::<Result<BTreeSet<_>, _>>()?;
    d.end()?;
    Ok(State {
        attrs,
        sessions,
        lost,
    })
}
