//! The Observe session driver: streams a [`Feed`] into a space through one session,
//! the way the protocol asks a client to (docs/protocol.md):
//!
//! - at most the credit window in flight, following the window the server sends
//!   in its status messages (it shrinks under pressure);
//! - an observation refused with OVERLOADED, WINDOW_EXCEEDED or STORAGE_FULL is
//!   re-sent after the server's `retry_after`; the SEQUENCE_GAPs that follow such a
//!   refusal are re-sent after it, in order;
//! - on a lost connection (or a server restart) it reconnects with the session id
//!   and re-sends everything not acked from the server's `next_sequence`: each
//!   observation is stored exactly once;
//! - when the feed ends and everything is acked, it closes the session.
//!
//! Observations wait in memory only while unacked (at most a window of them), so a
//! feed of any length streams in bounded memory. [`SessionEvents`] reports every
//! ack, refusal, status and reconnect, for progress bars and load generators.

mod stream;

pub use stream::ObserveStream;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

use crate::calls::Client;
use crate::error::{Error, Result, reject_name};
use crate::pb;
use crate::pb::observe_response::Kind as In;

/// How far behind its schedule a paced session may fall and still catch up.
const PACE_CATCH_UP: Duration = Duration::from_millis(20);

/// Where the observations of a session come from.
pub trait Feed: Send {
    /// The observation to send as `sequence` (consecutive: 1, 2, … for a new
    /// session; a resumed session skips what the server already has), or `None`
    /// when there are no more. The driver sets its `sequence` field; once `None`
    /// was returned, `next` is not called again.
    fn next(&mut self, sequence: u64) -> Result<Option<pb::Observation>>;
}

/// What a session reports as it goes; every method does nothing by default.
pub trait SessionEvents: Send {
    /// The stream opened (or re-opened after a reconnect).
    fn opened(&mut self, _init: &pb::InitAck) {}
    /// An observation is durable and visible (ACCEPTED) or was stored before
    /// (DUPLICATE). `first_sent` is when it was first sent (before any retry).
    fn acked(&mut self, _ack: &pb::Ack, _first_sent: Instant) {}
    /// At resume, the server already had observation `sequence` (its ack was lost
    /// with the connection, or the feed was restarted).
    fn already_durable(&mut self, _sequence: u64) {}
    /// An observation is in the HNSW graph (with [`SessionOptions::want_indexed`]).
    fn indexed(&mut self, _ack: &pb::Ack) {}
    /// A retryable refusal: the observation will be re-sent.
    fn refused(&mut self, _ack: &pb::Ack) {}
    /// The server's pressure status.
    fn status(&mut self, _status: &pb::StreamStatus) {}
    /// The connection was lost; attempt `attempt` to reconnect follows.
    fn reconnecting(&mut self, _why: &str, _attempt: u32) {}
}

/// Events ignored.
impl SessionEvents for () {}

/// How a session runs.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The space.
    pub space: String,
    /// Resume (or start) this session id; none: a new session with an id the
    /// server makes.
    pub session_id: Option<String>,
    /// Indexing lane of every observation.
    pub lane: pb::Lane,
    /// Ask for INDEXED notifications ([`SessionEvents::indexed`]).
    pub want_indexed: bool,
    /// Reconnects in a row without an ack before giving up. Default 30.
    pub max_reconnects: u32,
    /// Least time between two new observations (a paced feed); none: as fast as
    /// the window allows.
    pub interval: Option<Duration>,
    /// At the end, wait until everything is in the HNSW graph before closing.
    pub drain_on_close: bool,
}

impl SessionOptions {
    /// A new session on `space`, normal lane, unpaced.
    pub fn new(space: impl Into<String>) -> Self {
        SessionOptions {
            space: space.into(),
            session_id: None,
            lane: pb::Lane::Normal,
            want_indexed: false,
            max_reconnects: 30,
            interval: None,
            drain_on_close: false,
        }
    }
}

/// What a finished session did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSummary {
    /// The session id (made by the server for a new session).
    pub session_id: String,
    /// The last sequence number the server stored.
    pub final_sequence: u64,
    /// Observations stored by this run (ACCEPTED).
    pub accepted: u64,
    /// Observations the server had already (DUPLICATE acks, or found at resume).
    pub duplicates: u64,
    /// Retryable refusals (OVERLOADED, WINDOW_EXCEEDED, STORAGE_FULL), each re-sent.
    pub refused: u64,
    /// SEQUENCE_GAP refusals that followed them, each re-sent in order.
    pub gaps: u64,
    /// Reconnects.
    pub reconnects: u32,
}

/// Driver state that outlives a connection.
struct Run<'a> {
    options: SessionOptions,
    feed: &'a mut dyn Feed,
    events: &'a mut dyn SessionEvents,
    /// Sent or to send, not yet acked: the observation and when it was first sent.
    unacked: BTreeMap<u64, (pb::Observation, Option<Instant>)>,
    /// The sequence the feed is asked for next.
    next_new: u64,
    feed_done: bool,
    pace_at: Instant,
    /// The pending retry waits out pressure (not a full disk).
    pressure_retry: bool,
    summary: SessionSummary,
}

/// How one connection ended.
enum Ended {
    Closed(u64),
    /// Worth a reconnect; `progress` if any observation was acked on it.
    Lost {
        why: String,
        progress: bool,
        /// The node the server said to go to (distributed mode: the owner).
        redirect: Option<String>,
    },
}

/// Wake at least this often while the feed may still produce (a feed may end on
/// a clock, such as a timed benchmark).
const IDLE_WAKE: Duration = Duration::from_millis(100);
/// Most observations per batch message (the server's bound).
const MAX_BATCH: usize = 4096;

/// Least wait before re-sending a refused observation.
const MIN_RETRY: Duration = Duration::from_millis(10);

pub(crate) async fn drive(
    client: &Client,
    options: SessionOptions,
    feed: &mut dyn Feed,
    events: &mut dyn SessionEvents,
) -> Result<SessionSummary> {
    let mut run = Run {
        summary: SessionSummary {
            session_id: options.session_id.clone().unwrap_or_default(),
            ..Default::default()
        },
        options,
        feed,
        events,
        unacked: BTreeMap::new(),
        next_new: 1,
        feed_done: false,
        pace_at: Instant::now(),
        pressure_retry: false,
    };
    let mut failures = 0u32;
    let mut conn = client.clone();
    loop {
        match run.connection(&conn).await? {
            Ended::Closed(final_sequence) => {
                run.summary.final_sequence = final_sequence;
                return Ok(run.summary);
            }
            Ended::Lost {
                why,
                progress,
                redirect,
            } => {
                failures = if progress { 1 } else { failures + 1 };
                if failures > run.options.max_reconnects {
                    return Err(Error::GaveUp {
                        attempts: run.options.max_reconnects,
                        last: why,
                    });
                }
                run.summary.reconnects += 1;
                run.events.reconnecting(&why, failures);
                let pause = Duration::from_millis(200 * u64::from(failures.min(10)));
                // Told where to go: at once. Else after a pause, to the nodes in turn.
                let target = match redirect {
                    Some(owner) => owner,
                    None => {
                        tokio::time::sleep(pause).await;
                        let peers = &client.options().peers;
                        match (failures as usize) % (peers.len() + 1) {
                            0 => client.options().addr.clone(),
                            i => peers[i - 1].clone(),
                        }
                    }
                };
                match client.connect_to(&target).await {
                    Ok(c) => conn = c,
                    // Unreachable for now (an owner that just died, say): counted as a
                    // failed attempt on the next turn, after a pause.
                    Err(Error::Connect { .. }) => tokio::time::sleep(pause).await,
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// A connection-level failure that a reconnect may cure.
fn lost(e: Error, progress: bool) -> Result<Ended> {
    match e {
        Error::Connect { .. } | Error::Protocol(_) => Ok(Ended::Lost {
            why: e.to_string(),
            progress,
            redirect: None,
        }),
        Error::Status(st)
            if matches!(
                st.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
            ) =>
        {
            Ok(Ended::Lost {
                why: format!("{}: {}", st.code(), st.message()),
                progress,
                redirect: crate::error::owner_of(&st),
            })
        }
        other => Err(other),
    }
}

impl Run<'_> {
    async fn connection(&mut self, client: &Client) -> Result<Ended> {
        let init = pb::Init {
            space: self.options.space.clone(),
            session_id: self.summary.session_id.clone(),
            want_indexed: self.options.want_indexed,
            ..Default::default()
        };
        let mut stream = match ObserveStream::open(client, init).await {
            Ok(s) => s,
            Err(e) => return lost(e, false),
        };
        self.events.opened(stream.init());
        self.summary
            .session_id
            .clone_from(&stream.init().session_id);
        self.resume_at(stream.init().next_sequence)?;
        let mut window = u64::from(stream.init().credit_window.max(1));
        let batches = stream.can("observation_batch");
        let packed = stream.can("packed_embeddings");
        let batch_bytes = stream
            .init()
            .limits
            .as_ref()
            .map_or(1 << 20, |l| (l.max_message_bytes as usize / 4).max(1));
        // Unacked observations go first, in sequence order.
        let mut to_send: BTreeSet<u64> = self.unacked.keys().copied().collect();
        let mut in_flight = 0u64;
        let mut retry_at: Option<Instant> = None;
        let mut closing = false;
        let mut progress = false;
        loop {
            let now = Instant::now();
            if retry_at.is_some_and(|t| now >= t) {
                retry_at = None;
            }
            // What the window allows goes out in batches of at most a quarter of the
            // message limit (one message each to a server without batches).
            while retry_at.is_none() && !closing && in_flight < window {
                let mut batch = Vec::new();
                let mut bytes = 0;
                while in_flight + (batch.len() as u64) < window
                    && batch.len() < MAX_BATCH
                    && bytes < batch_bytes
                {
                    let Some(mut obs) = self.take_next(&mut to_send, now)? else {
                        break;
                    };
                    if packed && !obs.embedding.is_empty() {
                        obs.embedding_f32 = mnemo_proto::pack_f32(&obs.embedding);
                        obs.embedding = Vec::new();
                    }
                    bytes += prost::Message::encoded_len(&obs);
                    batch.push(obs);
                    if !batches {
                        break;
                    }
                }
                let n = batch.len() as u64;
                let sent = match batch.len() {
                    0 => break,
                    1 => stream.send(batch.remove(0)).await,
                    _ => stream.send_batch(batch).await,
                };
                if let Err(e) = sent {
                    return lost(e, progress);
                }
                in_flight += n;
            }
            if !closing && self.feed_done && self.unacked.is_empty() {
                closing = true;
                if let Err(e) = stream.close(self.options.drain_on_close).await {
                    return lost(e, progress);
                }
            }
            let wake = match retry_at {
                Some(t) => t,
                None if !self.feed_done && !closing => {
                    let idle = Instant::now() + IDLE_WAKE;
                    if self.options.interval.is_some() {
                        self.pace_at.min(idle)
                    } else {
                        idle
                    }
                }
                None => Instant::now() + Duration::from_secs(3600),
            };
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = tokio::time::sleep_until(wake) => continue,
            };
            let msg = match msg {
                Ok(Some(m)) => m,
                Ok(None) => {
                    return Ok(Ended::Lost {
                        why: "the server ended the stream".into(),
                        progress,
                        redirect: None,
                    });
                }
                Err(e) => return lost(e, progress),
            };
            match msg {
                In::Acks(batch) => {
                    for a in batch.acks {
                        let step = self.on_ack(&a, &mut to_send, &mut retry_at)?;
                        if step.counts_in_flight {
                            in_flight = in_flight.saturating_sub(1);
                        }
                        progress |= step.progress;
                        if step.reconnect {
                            return Ok(Ended::Lost {
                                why: a.reason,
                                progress,
                                redirect: None,
                            });
                        }
                    }
                }
                In::Status(st) => {
                    window = u64::from(st.credit_window.max(1));
                    // Below Critical, a retry that waits out pressure goes now: its
                    // retry_after was an estimate made under that pressure (e.g. at
                    // the graph's rate, before the warm tier took over).
                    let eased = matches!(
                        pb::PressureState::try_from(st.state),
                        Ok(pb::PressureState::Normal | pb::PressureState::Warning)
                    );
                    if eased && self.pressure_retry {
                        retry_at = None;
                        self.pressure_retry = false;
                    }
                    self.events.status(&st);
                }
                In::Closed(c) => return Ok(Ended::Closed(c.final_sequence)),
                In::InitAck(_) => {
                    return Err(Error::Protocol("a second InitAck on one stream".into()));
                }
            }
        }
    }

    /// Everything below `next` is durable on the server: forget it (its ack was lost
    /// with a connection) and skip it in the feed (a restarted feed).
    fn resume_at(&mut self, next: u64) -> Result<()> {
        let durable: Vec<u64> = self.unacked.range(..next).map(|(s, _)| *s).collect();
        for s in durable {
            self.unacked.remove(&s);
            self.summary.duplicates += 1;
            self.events.already_durable(s);
        }
        while self.next_new < next && !self.feed_done {
            if self.feed.next(self.next_new)?.is_some() {
                self.summary.duplicates += 1;
                self.events.already_durable(self.next_new);
                self.next_new += 1;
            } else {
                self.feed_done = true;
            }
        }
        Ok(())
    }

    /// The next observation to send: a re-send first, else a new one from the feed
    /// (if its pace allows).
    fn take_next(
        &mut self,
        to_send: &mut BTreeSet<u64>,
        now: Instant,
    ) -> Result<Option<pb::Observation>> {
        if let Some(seq) = to_send.pop_first()
            && let Some((obs, first_sent)) = self.unacked.get_mut(&seq)
        {
            first_sent.get_or_insert(now);
            return Ok(Some(obs.clone()));
        }
        if self.feed_done {
            return Ok(None);
        }
        if let Some(iv) = self.options.interval {
            if now < self.pace_at {
                return Ok(None);
            }
            // Sends missed while asleep (timers wake about every millisecond, far
            // less often than a high rate's interval) are made up, up to
            // `PACE_CATCH_UP`: the paced rate holds at any interval.
            self.pace_at = self.pace_at.max(now - iv.max(PACE_CATCH_UP)) + iv;
        }
        let seq = self.next_new;
        let Some(mut obs) = self.feed.next(seq)? else {
            self.feed_done = true;
            return Ok(None);
        };
        obs.sequence = seq;
        obs.lane = self.options.lane as i32;
        self.next_new += 1;
        self.unacked.insert(seq, (obs.clone(), Some(now)));
        Ok(Some(obs))
    }

    fn on_ack(
        &mut self,
        a: &pb::Ack,
        to_send: &mut BTreeSet<u64>,
        retry_at: &mut Option<Instant>,
    ) -> Result<AckStep> {
        let status = pb::AckStatus::try_from(a.status).unwrap_or(pb::AckStatus::Unspecified);
        let mut step = AckStep {
            counts_in_flight: true,
            progress: false,
            reconnect: false,
        };
        match status {
            pb::AckStatus::Indexed => {
                step.counts_in_flight = false;
                self.events.indexed(a);
            }
            pb::AckStatus::Accepted | pb::AckStatus::Duplicate => {
                step.progress = true;
                if let Some((_, first_sent)) = self.unacked.remove(&a.sequence) {
                    if status == pb::AckStatus::Accepted {
                        self.summary.accepted += 1;
                    } else {
                        self.summary.duplicates += 1;
                    }
                    self.events
                        .acked(a, first_sent.unwrap_or_else(Instant::now));
                }
            }
            pb::AckStatus::Rejected => {
                let code = pb::RejectCode::try_from(a.code).unwrap_or(pb::RejectCode::Unspecified);
                match code {
                    pb::RejectCode::Overloaded
                    | pb::RejectCode::WindowExceeded
                    | pb::RejectCode::StorageFull => {
                        if code == pb::RejectCode::StorageFull && retry_at.is_none() {
                            tracing::warn!(
                                reason = a.reason,
                                "the server's disk is full; retrying"
                            );
                        }
                        self.summary.refused += 1;
                        self.pressure_retry = code != pb::RejectCode::StorageFull;
                        let wait = Duration::from_millis(a.retry_after_ms).max(MIN_RETRY);
                        let at = Instant::now() + wait;
                        *retry_at = Some(retry_at.map_or(at, |t| t.max(at)));
                        to_send.insert(a.sequence);
                        self.events.refused(a);
                    }
                    // Follows a refusal of an earlier sequence: re-sent after it, in order.
                    pb::RejectCode::SequenceGap => {
                        self.summary.gaps += 1;
                        to_send.insert(a.sequence);
                        self.events.refused(a);
                    }
                    // The server cannot take it on this stream now; a new stream resumes.
                    pb::RejectCode::SessionClosed | pb::RejectCode::Unavailable => {
                        step.reconnect = true;
                    }
                    _ => {
                        return Err(Error::Rejected {
                            sequence: a.sequence,
                            code: reject_name(a.code),
                            reason: a.reason.clone(),
                        });
                    }
                }
            }
            pb::AckStatus::Unspecified => {
                return Err(Error::Protocol(format!(
                    "an ack with an unknown status {} for sequence {}",
                    a.status, a.sequence
                )));
            }
        }
        Ok(step)
    }
}

/// What one ack means for the connection loop.
struct AckStep {
    counts_in_flight: bool,
    progress: bool,
    reconnect: bool,
}
