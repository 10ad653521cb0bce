//! The attributes as the state file holds them (docs/log-format.md, State file),
//! and their size in memory.

use roaring::RoaringTreemap;
use std::collections::HashMap;
use uuid::Uuid;

use super::{Attrs, Row};
use crate::codec::{Dec, DecError, Enc};
use crate::lsn_vec::LsnVec;
use crate::space::deaths::Deaths;
use crate::types::Lsn;

impl Attrs {
    /// Writes everything but what is in flight (reservations), for a checkpoint.
    pub(crate) fn encode(&self, e: &mut Enc) {
        let lists = |e: &mut Enc, lists: &HashMap<String, RoaringTreemap>| {
            e.u64(lists.len() as u64);
            for (k, b) in lists {
                e.str(k);
                e.bitmap(b);
            }
        };
        e.u64(self.tag_values.len() as u64);
        for (k, values) in &self.tag_values {
            e.str(k);
            lists(e, values);
        }
        lists(e, &self.tag_keys);
        lists(e, &self.sessions);
        e.bitmap(&self.control);
        e.u64(self.rows.first());
        e.u64(self.rows.len() as u64);
        for (_, r) in self.rows.iter() {
            e.i64(r.occurred);
            e.i64(r.recorded);
            e.f32(r.confidence);
            e.i64(r.expires);
            e.i64(r.clock);
        }
        e.u64(self.ids.len() as u64);
        for (id, &lsn) in &self.ids {
            e.buf.extend_from_slice(id.as_bytes());
            e.u64(lsn);
        }
        e.u64(self.prior.len() as u64);
        for (&new, &old) in &self.prior {
            e.u64(new);
            e.u64(old);
        }
        self.deaths.encode(e);
    }

    /// Reads what [`Attrs::encode`] wrote.
    pub(crate) fn decode(d: &mut Dec<'_>) -> Result<Attrs, DecError> {
        fn lists(d: &mut Dec<'_>) -> Result<HashMap<String, RoaringTreemap>, DecError> {
            let n = d.count(16)?;
            let mut out = HashMap::with_capacity(n);
            for _ in 0..n {
                let k = d.str()?.to_owned();
                out.insert(k, d.bitmap()?);
            }
            Ok(out)
        }
        let mut a = Attrs::default();
        for _ in 0..d.count(16)? {
            let k = d.str()?.to_owned();
            a.tag_values.insert(k, lists(d)?);
        }
        a.tag_keys = lists(d)?;
        a.sessions = lists(d)?;
        a.control = d.bitmap()?;
        a.rows = LsnVec::starting_at(d.u64()?);
        for _ in 0..d.count(36)? {
            a.rows.push(Row {
                occurred: d.i64()?,
                recorded: d.i64()?,
                confidence: d.f32()?,
                expires: d.i64()?,
                clock: d.i64()?,
            });
        }
        let n = d.count(24)?;
        a.ids.reserve(n);
        for _ in 0..n {
            let mut id = [0u8; 16];
            for b in &mut id {
                *b = d.u8()?;
            }
            a.ids.insert(Uuid::from_bytes(id), d.u64()?);
        }
        for _ in 0..d.count(16)? {
            let (new, old) = (d.u64()?, d.u64()?);
            a.prior.insert(new, old);
        }
        a.deaths = Deaths::decode(d)?;
        // The expiry sweep's work list: live memories with an expiry.
        let expiring: Vec<(Lsn, i64)> = a
            .rows
            .iter()
            .filter(|(_, r)| r.expires != 0)
            .map(|(lsn, r)| (lsn, r.expires))
            .collect();
        for (lsn, e) in expiring {
            if !a.deaths.is_dead(lsn) {
                a.deaths.expire_later(lsn, e);
            }
        }
        Ok(a)
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
        let columns = self.rows.capacity_bytes();
        let ids = self.ids.capacity() * (16 + 8 + 1) + self.prior.capacity() * 17;
        bitmaps + columns + ids + self.control.serialized_size() + self.deaths.memory_bytes()
    }
}
