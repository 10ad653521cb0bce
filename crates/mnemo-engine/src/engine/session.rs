//! Sessions: per-session sequence numbers with exactly-once semantics, credit
//! windows, resume (also after a restart: the marks are recovered from the log),
//! idle expiry and draining close.
//!
//! Rules for observation `seq` (next expected = `n`):
//! - `seq == n`: admitted and appended; acked with its LSN and memory id once durable;
//! - `seq < n`: a duplicate; acked again with the *original* LSN and id, nothing written
//!   (if the original is still in flight, the ack waits for it);
//! - `seq > n`: [`Error::SequenceGap`] naming `n`; nothing written.
//!
//! The sequence check and the append happen under the session's lock, so a
//! session's records commit in sequence order. An append fails only when the log is
//! poisoned, the engine is closing or the space was dropped: all terminal, so the
//! expected sequence is not rolled back.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

use super::{Inner, ObserveTicket, Observed};
use crate::error::{Error, Result};
use crate::ingest::stats::{Counters, names};
use crate::log::Log;
use crate::record::ObservationRecord;
use crate::space::Space;
use crate::types::{Lane, Lsn, MAX_SESSION_ID_BYTES, Observation, SpaceNo};

/// Open sessions of all spaces.
#[derive(Default)]
pub(super) struct SessionTable {
    map: Mutex<HashMap<(SpaceNo, String), Arc<SessionState>>>,
}

pub(super) struct SessionState {
    id: String,
    space: Arc<Space>,
    inner: Mutex<StateInner>,
    in_flight: AtomicU32,
}

struct StateInner {
    /// The sequence number expected next (everything below was admitted).
    next_seq: u64,
    /// Bumped by every open; a handle with an older epoch was superseded.
    epoch: u64,
    closed: Option<&'static str>,
    last_active: Instant,
}

impl SessionTable {
    pub(super) fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Forgets sessions idle for `timeout` with nothing in flight. "Nothing in flight"
    /// is read from the log, not from the credits: a credit returns when its ticket
    /// is dropped (a client gone), while the append may still be queued; a session
    /// forgotten then would be reopened below that append's sequence and take it again.
    pub(super) fn expire_idle(&self, timeout: Duration) {
        let now = Instant::now();
        self.map.lock().retain(|_, s| {
            let mut st = s.inner.lock();
            let admitted = st.next_seq - 1;
            let settled = s
                .space
                .session_high_water(&s.id)
                .is_some_and(|(seq, _)| seq >= admitted)
                || admitted == 0;
            let idle = now.duration_since(st.last_active) >= timeout
                && s.in_flight.load(Ordering::Acquire) == 0
                && settled;
            if idle {
                st.closed = Some("expired after being idle");
                tracing::debug!(session = s.id, "session expired");
            }
            !idle
        });
    }

    pub(super) fn forget_space(&self, space: SpaceNo) {
        self.map.lock().retain(|(no, _), s| {
            if *no == space {
                s.inner.lock().closed = Some("its space was dropped");
            }
            *no != space
        });
    }
}

/// Whether a session is new or must exist already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpenMode {
    /// Resume if known (open here, or marks in the log), else start at 1.
    OpenOrResume,
    /// Resume only: an unknown id is [`Error::SessionNotFound`].
    ResumeOnly,
}

impl Inner {
    pub(super) fn open_session(
        self: &Arc<Self>,
        space: &str,
        id: Option<&str>,
        mode: OpenMode,
    ) -> Result<Session> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let space = self.registry.by_name(space)?;
        self.check_owner(space.info.no)?;
        let id = match id {
            Some(id) => {
                if id.is_empty() || id.len() > MAX_SESSION_ID_BYTES {
                    return Err(Error::invalid(format!(
                        "session id must be 1..={MAX_SESSION_ID_BYTES} bytes, got {}",
                        id.len()
                    )));
                }
                id.to_owned()
            }
            None if mode == OpenMode::ResumeOnly => {
                return Err(Error::invalid("resuming needs a session id"));
            }
            None => Uuid::now_v7().to_string(),
        };
        let mut map = self.sessions.map.lock();
        let key = (space.info.no, id.clone());
        if let Some(state) = map.get(&key) {
            let mut st = state.inner.lock();
            st.epoch += 1; // the previous handle (a dead connection, say) is superseded
            st.last_active = Instant::now();
            let epoch = st.epoch;
            drop(st);
            return Ok(Session {
                engine: Arc::clone(self),
                state: Arc::clone(state),
                epoch,
            });
        }
        let limit = self.config.ingest.max_sessions;
        if map.len() >= limit {
            return Err(Error::TooManySessions {
                open: map.len(),
                limit,
                retry_after: Duration::from_secs(1),
            });
        }
        let high_water = space.session_high_water(&id).map_or(0, |(seq, _)| seq);
        if high_water == 0 && mode == OpenMode::ResumeOnly {
            return Err(Error::SessionNotFound(id));
        }
        let state = Arc::new(SessionState {
            id,
            space,
            inner: Mutex::new(StateInner {
                next_seq: high_water + 1,
                epoch: 0,
                closed: None,
                last_active: Instant::now(),
            }),
            in_flight: AtomicU32::new(0),
        });
        map.insert(key, Arc::clone(&state));
        Ok(Session {
            engine: Arc::clone(self),
            state,
            epoch: 0,
        })
    }
}

/// An open session on one space. Obtained from [`crate::Engine::open_session`].
pub struct Session {
    engine: Arc<Inner>,
    state: Arc<SessionState>,
    epoch: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.state.id)
            .field("space", &self.state.space.info.name)
            .finish_non_exhaustive()
    }
}

/// How an observation was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// Newly written: durable and visible.
    Accepted,
    /// Sent before; this is the original record's LSN and id. Nothing was written.
    Duplicate,
}

/// The acknowledgement of one session observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The session sequence number.
    pub seq: u64,
    /// The record's LSN in its space.
    pub lsn: Lsn,
    /// The record's memory id (nil for a duplicate of a memory since forgotten
    /// and compacted away).
    pub id: Uuid,
    /// Accepted now or a duplicate.
    pub kind: AckKind,
}

/// Releases one credit of the session's window when dropped.
struct InFlight(Arc<SessionState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Session {
    /// The session id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// The space's name.
    pub fn space(&self) -> &str {
        &self.state.space.info.name
    }

    /// The sequence number the session expects next: a resuming client re-sends
    /// from here.
    pub fn next_expected(&self) -> u64 {
        self.state.inner.lock().next_seq
    }

    /// Observations sent and not yet acked.
    pub fn in_flight(&self) -> u32 {
        self.state.in_flight.load(Ordering::Acquire)
    }

    /// The credit window now (shrinks under pressure).
    pub fn credit_window(&self) -> u32 {
        self.engine
            .registry
            .state()
            .window(self.engine.config.ingest.credit_window)
    }

    fn check_open(&self, st: &StateInner) -> Result<()> {
        if let Some(why) = st.closed {
            return Err(Error::SessionClosed {
                session: self.state.id.clone(),
                why,
            });
        }
        if st.epoch != self.epoch {
            return Err(Error::SessionClosed {
                session: self.state.id.clone(),
                why: "superseded by a newer open of the same session",
            });
        }
        Ok(())
    }

    /// Submits observation `seq` (see the module docs for the rules). Returns at once;
    /// the ticket resolves to the ack.
    pub fn observe(&self, seq: u64, mut obs: Observation, lane: Lane) -> Result<SessionTicket> {
        let counters = &self.engine.registry.counters;
        if seq == 0 {
            return Err(Error::invalid("session sequence numbers start at 1"));
        }
        let space = &self.state.space;
        let mut st = self.state.inner.lock();
        self.check_open(&st)?;
        st.last_active = Instant::now();
        if seq < st.next_seq {
            drop(st);
            Counters::bump(&counters.duplicates);
            metrics::counter!(names::DUPLICATES).increment(1);
            return Ok(SessionTicket(Kind::Duplicate {
                seq,
                state: Arc::clone(&self.state),
                engine: Arc::clone(&self.engine),
            }));
        }
        if seq > st.next_seq {
            Counters::bump(&counters.gaps);
            metrics::counter!(names::REFUSED, "reason" => "gap").increment(1);
            return Err(Error::SequenceGap {
                session: self.state.id.clone(),
                got: seq,
                expected: st.next_seq,
            });
        }
        let window = self.credit_window();
        let in_flight = self.state.in_flight.load(Ordering::Acquire);
        if in_flight >= window {
            Counters::bump(&counters.refused_window);
            metrics::counter!(names::REFUSED, "reason" => "window").increment(1);
            return Err(Error::WindowExceeded {
                session: self.state.id.clone(),
                in_flight,
                window,
            });
        }
        obs.session_id = self.state.id.clone();
        obs.session_seq = seq;
        let client_id = obs.id.is_some();
        let mut rec = ObservationRecord::from_observation(obs, space.info.config.dim)?;
        let ticket = self
            .engine
            .submit(Arc::clone(space), &mut rec, lane, client_id)?;
        st.next_seq += 1;
        self.state.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(SessionTicket(Kind::Fresh {
            seq,
            ticket,
            _credit: InFlight(Arc::clone(&self.state)),
        }))
    }

    /// Closes the session: waits (up to `timeout`) until everything it sent is
    /// durable and, with `drain`, in the HNSW graph. Returns the final sequence number.
    pub fn close(self, drain: bool, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let final_seq = {
            let mut st = self.state.inner.lock();
            self.check_open(&st)?;
            st.closed = Some("closed");
            st.next_seq - 1
        };
        let space = &self.state.space;
        let timed_out = |wanted: u64, seen: u64| Error::Timeout {
            wanted,
            committed: seen,
            waited: timeout,
        };
        // Everything admitted commits in sequence order: wait for the last one.
        let mut last_lsn = 0;
        if final_seq > 0 {
            loop {
                let seen = space.committed.get();
                if let Some(lsn) = space.session_lsn(&self.state.id, final_seq) {
                    // Forgotten and compacted: committed and indexed long ago.
                    last_lsn = if lsn == crate::space::COMPACTED {
                        0
                    } else {
                        lsn
                    };
                    break;
                }
                space.check_live()?;
                self.engine.log.check_writable()?;
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(timed_out(final_seq, seen));
                }
                let _ = space
                    .committed
                    .wait_for(seen + 1, left.min(Duration::from_millis(50)));
            }
        }
        if drain && last_lsn > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            space
                .indexed
                .wait_for(last_lsn, left)
                .map_err(|seen| timed_out(last_lsn, seen))?;
        }
        let key = (space.info.no, self.state.id.clone());
        let mut map = self.engine.sessions.map.lock();
        if map.get(&key).is_some_and(|s| Arc::ptr_eq(s, &self.state)) {
            map.remove(&key);
        }
        Ok(final_seq)
    }
}

/// Completion of [`Session::observe`]: resolves to the [`Ack`]. Wait with
/// [`SessionTicket::wait`] from a thread, or `.await` it.
#[must_use = "an observation is only known durable once its ticket resolves"]
pub struct SessionTicket(Kind);

enum Kind {
    Fresh {
        seq: u64,
        ticket: ObserveTicket,
        _credit: InFlight,
    },
    Duplicate {
        seq: u64,
        state: Arc<SessionState>,
        engine: Arc<Inner>,
    },
}

impl std::fmt::Debug for SessionTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, seq) = match &self.0 {
            Kind::Fresh { seq, .. } => ("fresh", seq),
            Kind::Duplicate { seq, .. } => ("duplicate", seq),
        };
        f.debug_struct("SessionTicket")
            .field("kind", &kind)
            .field("seq", seq)
            .finish()
    }
}

/// The original ack of a duplicate, once its record is visible (published: a
/// recall made after the ack finds it); an error if it never will be.
fn duplicate_ack(seq: u64, state: &SessionState, engine: &Inner) -> Result<Option<Ack>> {
    let space = &state.space;
    // The session mark is set while the commit sink applies a batch, before the
    // batch is published: wait for the publish, as the original's own ack does.
    if space.session_lsn(&state.id, seq) == Some(crate::space::LOST) {
        return Err(Error::invalid(format!(
            "sequence {seq} of session '{}' was lost to damage in the log (mnemo repair): \
             it cannot be acknowledged",
            state.id
        )));
    }
    if space.session_lsn(&state.id, seq) == Some(crate::space::COMPACTED) {
        // Forgotten, and its mark cut with the rest of what the log dropped.
        return Ok(Some(Ack {
            seq,
            lsn: 0,
            id: uuid::Uuid::nil(),
            kind: AckKind::Duplicate,
        }));
    }
    if let Some(lsn) = space.session_lsn(&state.id, seq)
        && lsn <= space.committed.get()
    {
        // A memory forgotten since and compacted away is acked without its id.
        let id = match space.read_memory(engine.log.as_ref(), lsn) {
            Ok(memory) => memory.id,
            Err(Error::Forgotten { .. }) => uuid::Uuid::nil(),
            Err(e) => return Err(e),
        };
        return Ok(Some(Ack {
            seq,
            lsn,
            id,
            kind: AckKind::Duplicate,
        }));
    }
    space.check_live()?;
    engine.log.check_writable()?;
    Ok(None)
}

fn accepted(seq: u64, o: Observed) -> Ack {
    Ack {
        seq,
        lsn: o.lsn,
        id: o.id,
        kind: AckKind::Accepted,
    }
}

impl SessionTicket {
    /// Blocks until acked. Not for use inside an async runtime (`.await` instead).
    pub fn wait(self) -> Result<Ack> {
        match self.0 {
            Kind::Fresh { seq, ticket, .. } => ticket.wait().map(|o| accepted(seq, o)),
            Kind::Duplicate { seq, state, engine } => loop {
                let seen = state.space.committed.get();
                if let Some(ack) = duplicate_ack(seq, &state, &engine)? {
                    return Ok(ack);
                }
                let _ = state
                    .space
                    .committed
                    .wait_for(seen + 1, Duration::from_millis(50));
            },
        }
    }
}

impl IntoFuture for SessionTicket {
    type Output = Result<Ack>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Ack>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match self.0 {
                Kind::Fresh {
                    seq,
                    ticket,
                    _credit,
                } => {
                    let res = ticket.await;
                    drop(_credit); // the credit returns with the ack
                    res.map(|o| accepted(seq, o))
                }
                Kind::Duplicate { seq, state, engine } => loop {
                    let changed = state.space.committed.changed();
                    if let Some(ack) = duplicate_ack(seq, &state, &engine)? {
                        return Ok(ack);
                    }
                    changed.await;
                },
            }
        })
    }
}
