//! Admission control (closing, storage reserve, pressure, fresh-tier and queue
//! bounds) and the ticket an accepted observation resolves through.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use uuid::Uuid;

use super::Inner;
use crate::error::{Error, Result};
use crate::ingest::pressure::PressureState;
use crate::ingest::stats::{Counters, names};
use crate::log::{AppendTicket, Log};
use crate::record::ObservationRecord;
use crate::space::Space;
use crate::space::attrs::NotLive;
use crate::types::{Lane, Lsn};

/// The outcome of an accepted observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Its LSN in the space.
    pub lsn: Lsn,
    /// Its memory id.
    pub id: Uuid,
}

/// Completion of [`Engine::observe`]: resolves once the observation is durable and
/// visible to recall. Wait with [`ObserveTicket::wait`] or `.await` it.
#[must_use = "an observation is only known durable once its ticket resolves"]
#[derive(Debug)]
pub struct ObserveTicket {
    append: AppendTicket,
    id: Uuid,
    started: Instant,
}

impl ObserveTicket {
    /// The memory id the observation will have.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Blocks until durable. Not for use inside an async runtime (`.await` instead).
    pub fn wait(self) -> Result<Observed> {
        let ObserveTicket {
            append,
            id,
            started,
        } = self;
        finish_observe(append.wait(), id, started)
    }
}

fn finish_observe(res: Result<Lsn>, id: Uuid, started: Instant) -> Result<Observed> {
    // Reservations of a failed append were released by the log (`not_committed`).
    let lsn = res?;
    metrics::histogram!(names::OBSERVE_DURABLE).record(started.elapsed().as_secs_f64());
    Ok(Observed { lsn, id })
}

impl IntoFuture for ObserveTicket {
    type Output = Result<Observed>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Observed>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let ObserveTicket {
            append,
            id,
            started,
        } = self;
        Box::pin(async move { finish_observe(append.await, id, started) })
    }
}

impl Inner {
    /// Admission control, then the append. Refuses (nothing written) when the engine
    /// is closing, the space is gone, the pressure is Overloaded, or a bound is hit.
    pub(super) fn submit(
        &self,
        space: Arc<Space>,
        rec: &mut ObservationRecord,
        lane: Lane,
        client_id: bool,
    ) -> Result<ObserveTicket> {
        if rec.expires_at_us.is_none()
            && let Some(ttl) = space.info.config.default_ttl_ms
        {
            let ttl_us = i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX);
            rec.expires_at_us = Some(rec.recorded_at_us.saturating_add(ttl_us));
        }
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        space.check_live()?;
        self.check_owner(space.info.no)?;
        if let Err(e) = self.log.check_space() {
            metrics::counter!(names::REFUSED, "reason" => "storage_full").increment(1);
            return Err(e);
        }
        let reg = &self.registry;
        let refuse = |reason: String| {
            Counters::bump(&reg.counters.refused_overloaded);
            metrics::counter!(names::REFUSED, "reason" => "overloaded").increment(1);
            Err(Error::Overloaded {
                reason,
                retry_after: reg.retry_after(),
            })
        };
        if reg.state() == PressureState::Overloaded {
            return refuse(
                "the engine is overloaded: index queue, fresh tier or log backlog at 95 % or more"
                    .into(),
            );
        }
        if !space.fresh.try_reserve() {
            return refuse(format!(
                "space '{}' has {} records awaiting indexing (limit {})",
                space.info.name,
                space.fresh.len(),
                space.fresh.capacity()
            ));
        }
        let len = rec.encoded_len();
        if !reg.budget.try_reserve(len) {
            space.fresh.release(1);
            return refuse(format!(
                "index queue full ({} of {} observations, {} of {} bytes)",
                reg.budget.items(),
                reg.budget.max_items(),
                reg.budget.bytes(),
                reg.budget.max_bytes()
            ));
        }
        // Ids are unique among live memories of a space: a client-chosen one is
        // checked and held until its append commits or fails (server-made UUIDv7s
        // cannot collide); so is the memory a supersede names. Last, so that no
        // other refusal leaves them held.
        if let Err(e) = reserve_names(&space, rec, client_id) {
            space.fresh.release(1);
            reg.budget.release(1, len);
            return Err(e);
        }
        let body = rec.encode();
        let append = self.log.append_hinted(space.info.no, body, lane as u8);
        Ok(ObserveTicket {
            append,
            id: rec.id,
            started: Instant::now(),
        })
    }
}

/// Holds `rec`'s client-chosen id and the memory it supersedes (resolving its LSN
/// into `rec`), or refuses with nothing held.
fn reserve_names(space: &Space, rec: &mut ObservationRecord, client_id: bool) -> Result<()> {
    let snapshot = space.committed.get();
    let mut attrs = space.attrs.write();
    let old = rec.supersedes.map(|s| s.id);
    if client_id && let Err(taken) = attrs.reserve_id(rec.id, old) {
        return Err(Error::MemoryExists {
            space: space.info.name.clone(),
            id: rec.id,
            lsn: taken.0,
        });
    }
    if let Some(s) = rec.supersedes.as_mut() {
        match attrs.reserve_supersede(&s.id, snapshot) {
            Ok(lsn) => s.lsn = lsn,
            Err(why) => {
                if client_id {
                    attrs.release_id(rec.id);
                }
                return Err(Error::NotLive {
                    space: space.info.name.clone(),
                    id: s.id,
                    why: match why {
                        NotLive::Missing => {
                            "no live memory has this id (never stored, or forgotten, superseded or expired)"
                        }
                        NotLive::InFlight => "another observation in flight supersedes it already",
                    },
                });
            }
        }
    }
    Ok(())
}
