//! The load: Observe sessions that keep their credit window full (paced when a rate
//! is set), recall clients at a fixed total rate, visibility probes, and a poller of
//! the server's Stats. Each task owns its histograms; they are merged at the end.

use crate::client::Conn;
use anyhow::Context;
use hdrhistogram::Histogram;
use mnemo_server::pb;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::workload::Workload;

/// Latency histogram in microseconds, 1 µs to 10 min, 3 significant digits.
#[allow(clippy::expect_used)] // constant bounds, valid by construction
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
}

/// Live counters every task updates; the progress line and the report read them.
#[derive(Default)]
pub(crate) struct Live {
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) recalls: AtomicU64,
    /// Current and worst pressure state seen (in band or from Stats), as `pb::PressureState`.
    pub(crate) state: AtomicU8,
    pub(crate) max_state: AtomicU8,
    /// Set when a `--duration` run stops taking new observations.
    pub(crate) time_up: AtomicBool,
}

impl Live {
    pub(crate) fn saw_state(&self, state: i32) {
        let s = u8::try_from(state.clamp(0, 3)).unwrap_or(0);
        self.state.store(s, Ordering::Relaxed);
        self.max_state.fetch_max(s, Ordering::Relaxed);
    }
}

pub(crate) fn state_name(s: u8) -> &'static str {
    match pb::PressureState::try_from(i32::from(s)) {
        Ok(pb::PressureState::Normal) => "NORMAL",
        Ok(pb::PressureState::Warning) => "WARNING",
        Ok(pb::PressureState::Critical) => "CRITICAL",
        Ok(pb::PressureState::OverloadedState) => "OVERLOADED",
        Err(_) => "?",
    }
}

/// How the observations are spread over sessions and time.
pub(crate) struct Plan {
    pub(crate) sessions: u64,
    /// Rows `0..total` (None: until `Live::time_up`).
    pub(crate) total: Option<u64>,
    /// Time between two new observations of one session (None: as fast as acks allow).
    pub(crate) interval: Option<Duration>,
}

impl Plan {
    /// Row of sequence `seq` of session `s`: rows are dealt round-robin.
    fn row(&self, s: u64, seq: u64) -> u64 {
        s + self.sessions * (seq - 1)
    }
}

/// What one Observe session did.
pub(crate) struct SessionOutcome {
    /// (row, LSN) of every ACCEPTED or DUPLICATE ack.
    pub(crate) acked: Vec<(u64, u64)>,
    pub(crate) ack_latency: Histogram<u64>,
    pub(crate) rejected_by_code: BTreeMap<String, u64>,
    pub(crate) duplicates: u64,
    pub(crate) first_send: Option<Instant>,
    pub(crate) last_ack: Option<Instant>,
    pub(crate) final_sequence: u64,
}

fn observe_req(kind: pb::observe_request::Kind) -> pb::ObserveRequest {
    pb::ObserveRequest { kind: Some(kind) }
}

/// One Observe session sending its share of the rows. Refusals (OVERLOADED,
/// WINDOW_EXCEEDED and the SEQUENCE_GAPs that follow them) are re-sent in order after
/// the server's retry-after; anything else ends the run with an error.
pub(crate) async fn session(
    target: Conn,
    space: String,
    s: u64,
    plan: Arc<Plan>,
    work: Arc<Workload>,
    live: Arc<Live>,
) -> anyhow::Result<SessionOutcome> {
    let mut client = target.connect().await?;
    let (tx, rx) = mpsc::channel::<pb::ObserveRequest>(1024);
    tx.send(observe_req(pb::observe_request::Kind::Init(pb::Init {
        space,
        ..Default::default()
    })))
    .await
    .context("opening a session")?;
    let mut inbound = client.observe(ReceiverStream::new(rx)).await?.into_inner();
    let init = match inbound.message().await? {
        Some(pb::ObserveResponse {
            kind: Some(pb::observe_response::Kind::InitAck(a)),
        }) => a,
        other => anyhow::bail!("expected InitAck, got {other:?}"),
    };
    let mut window = u64::from(init.credit_window.max(1));
    let mut out = SessionOutcome {
        acked: Vec::new(),
        ack_latency: histogram(),
        rejected_by_code: BTreeMap::new(),
        duplicates: 0,
        first_send: None,
        last_ack: None,
        final_sequence: 0,
    };
    // Sequence → when it was (last) sent.
    let mut in_flight: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut to_resend: BTreeSet<u64> = BTreeSet::new();
    let mut next_new = 1u64;
    let mut exhausted = false;
    let mut retry_at: Option<Instant> = None;
    let mut pace_at = Instant::now();
    let mut closing = false;
    let send = |seq: u64| {
        let row = plan.row(s, seq);
        pb::Observation {
            id: work.id(row),
            content: format!("bench observation {row}"),
            embedding: work.vector(row),
            sequence: seq,
            ..Default::default()
        }
    };
    loop {
        let now = Instant::now();
        let may_send = retry_at.is_none_or(|t| now >= t);
        if may_send {
            retry_at = None;
        }
        while may_send && !closing && (in_flight.len() as u64) < window {
            let seq = if let Some(seq) = to_resend.pop_first() {
                seq
            } else {
                if !exhausted {
                    let row = plan.row(s, next_new);
                    exhausted = plan.total.is_some_and(|t| row >= t)
                        || (plan.total.is_none() && live.time_up.load(Ordering::Relaxed));
                }
                if exhausted || plan.interval.is_some_and(|_| Instant::now() < pace_at) {
                    break;
                }
                if let Some(iv) = plan.interval {
                    pace_at = pace_at.max(Instant::now() - iv) + iv;
                }
                next_new += 1;
                next_new - 1
            };
            let obs = send(seq);
            let at = Instant::now();
            out.first_send.get_or_insert(at);
            in_flight.insert(seq, at);
            tx.send(observe_req(pb::observe_request::Kind::Observation(obs)))
                .await
                .context("the server closed the stream")?;
        }
        if !closing && exhausted && in_flight.is_empty() && to_resend.is_empty() {
            closing = true;
            tx.send(observe_req(pb::observe_request::Kind::Close(pb::Close {
                drain: false,
            })))
            .await
            .context("the server closed the stream")?;
        }
        // Wake for a retry, for the next paced send, or (duration runs) to notice time up.
        let wake = match (retry_at, plan.interval) {
            (Some(t), _) => t,
            (None, Some(_)) if !exhausted && !closing => pace_at,
            _ if !exhausted && !closing => Instant::now() + Duration::from_millis(100),
            _ => Instant::now() + Duration::from_secs(3600),
        };
        let msg = tokio::select! {
            m = inbound.message() => m?,
            _ = tokio::time::sleep_until(wake) => continue,
        };
        let Some(msg) = msg else {
            anyhow::bail!("session {s}: the server ended the stream before Closed");
        };
        match msg.kind {
            Some(pb::observe_response::Kind::Acks(batch)) => {
                for a in batch.acks {
                    on_ack(
                        a,
                        s,
                        &plan,
                        &live,
                        &mut out,
                        &mut in_flight,
                        &mut to_resend,
                        &mut retry_at,
                    )?;
                }
            }
            Some(pb::observe_response::Kind::Status(st)) => {
                window = u64::from(st.credit_window.max(1));
                live.saw_state(st.state);
            }
            Some(pb::observe_response::Kind::Closed(c)) => {
                out.final_sequence = c.final_sequence;
                return Ok(out);
            }
            Some(pb::observe_response::Kind::InitAck(_)) | None => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn on_ack(
    a: pb::Ack,
    s: u64,
    plan: &Plan,
    live: &Live,
    out: &mut SessionOutcome,
    in_flight: &mut BTreeMap<u64, Instant>,
    to_resend: &mut BTreeSet<u64>,
    retry_at: &mut Option<Instant>,
) -> anyhow::Result<()> {
    let status = pb::AckStatus::try_from(a.status).unwrap_or(pb::AckStatus::Unspecified);
    if status == pb::AckStatus::Indexed {
        return Ok(());
    }
    let Some(sent) = in_flight.remove(&a.sequence) else {
        anyhow::bail!(
            "session {s}: an ack for sequence {} that is not in flight",
            a.sequence
        );
    };
    match status {
        pb::AckStatus::Accepted | pb::AckStatus::Duplicate => {
            let now = Instant::now();
            record(&mut out.ack_latency, now - sent);
            out.last_ack = Some(now);
            out.acked.push((plan.row(s, a.sequence), a.lsn));
            if status == pb::AckStatus::Duplicate {
                out.duplicates += 1;
                live.duplicates.fetch_add(1, Ordering::Relaxed);
            } else {
                live.accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
        pb::AckStatus::Rejected => {
            let code = pb::RejectCode::try_from(a.code).unwrap_or(pb::RejectCode::Unspecified);
            match code {
                pb::RejectCode::Overloaded
                | pb::RejectCode::WindowExceeded
                | pb::RejectCode::StorageFull => {
                    let at = Instant::now() + Duration::from_millis(a.retry_after_ms.max(10));
                    *retry_at = Some(retry_at.map_or(at, |t| t.max(at)));
                }
                // Follows a refusal of an earlier sequence: re-sent after it, in order.
                pb::RejectCode::SequenceGap => {}
                _ => anyhow::bail!(
                    "session {s}: sequence {} refused ({}): {}",
                    a.sequence,
                    code.as_str_name(),
                    a.reason
                ),
            }
            *out.rejected_by_code
                .entry(code.as_str_name().to_string())
                .or_default() += 1;
            live.rejected.fetch_add(1, Ordering::Relaxed);
            to_resend.insert(a.sequence);
        }
        _ => anyhow::bail!("session {s}: ack with an unknown status {}", a.status),
    }
    Ok(())
}

/// What the recall clients measured.
pub(crate) struct RecallOutcome {
    pub(crate) latency: Histogram<u64>,
    pub(crate) count: u64,
    pub(crate) errors: u64,
    /// Results with an LSN above the snapshot the recall reported (must be 0).
    pub(crate) snapshot_violations: u64,
}

/// When a recall client sends: every `interval`, the first after `phase`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub(crate) interval: Duration,
    pub(crate) phase: Duration,
}

/// One recall client: a streaming Recall (k = 10, batches of 5) every `interval`
/// until `stop` is set; latency runs to the last message.
pub(crate) async fn recaller(
    target: Conn,
    space: String,
    queries: Arc<Vec<Vec<f32>>>,
    first: usize,
    pace: Pace,
    live: Arc<Live>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<RecallOutcome> {
    let mut client = target.connect().await?;
    let mut out = RecallOutcome {
        latency: histogram(),
        count: 0,
        errors: 0,
        snapshot_violations: 0,
    };
    // Clients start out of phase (`phase` of an interval each), so that together they
    // send evenly spaced recalls instead of a burst of all of them every interval.
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + pace.phase, pace.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut q = first;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) || queries.is_empty() {
            break;
        }
        let cue = queries[q % queries.len()].clone();
        q += 1;
        let started = Instant::now();
        let result: Result<(), tonic::Status> = async {
            let mut stream = client
                .recall(pb::RecallRequest {
                    space: space.clone(),
                    cue,
                    k: 10,
                    batch_size: 5,
                    ..Default::default()
                })
                .await?
                .into_inner();
            while let Some(m) = stream.message().await? {
                out.snapshot_violations +=
                    m.memories.iter().filter(|r| r.lsn > m.snapshot_lsn).count() as u64;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                record(&mut out.latency, started.elapsed());
                out.count += 1;
                live.recalls.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => out.errors += 1,
        }
    }
    Ok(out)
}

/// What the visibility probes measured.
pub(crate) struct ProbeOutcome {
    /// Ack of the observation → end of the first recall that returned it.
    pub(crate) visibility: Histogram<u64>,
    /// Send of the observation → end of the first recall that returned it (the
    /// ack's own latency included).
    pub(crate) observe_to_visible: Histogram<u64>,
    /// The same, for probes during which the server stayed below Warning as far as
    /// the client saw: Normal when sent and when found, and never refused.
    pub(crate) visibility_below_warning: Histogram<u64>,
    pub(crate) not_found: u64,
    /// (probe id, LSN) of every probe acked.
    pub(crate) acked: Vec<(String, u64)>,
}

/// Probes one at a time through their own session: observe a marked vector, then
/// recall it (k = 10) until it comes back, `gap` apart.
pub(crate) async fn probes(
    target: Conn,
    space: String,
    work: Arc<Workload>,
    seed: u64,
    n: u64,
    gap: Duration,
    live: Arc<Live>,
) -> anyhow::Result<ProbeOutcome> {
    let mut out = ProbeOutcome {
        visibility: histogram(),
        observe_to_visible: histogram(),
        visibility_below_warning: histogram(),
        not_found: 0,
        acked: Vec::new(),
    };
    if n == 0 {
        return Ok(out);
    }
    let mut client = target.connect().await?;
    let mut recall = client.clone();
    let (tx, rx) = mpsc::channel::<pb::ObserveRequest>(16);
    tx.send(observe_req(pb::observe_request::Kind::Init(pb::Init {
        space: space.clone(),
        ..Default::default()
    })))
    .await?;
    let mut inbound = client.observe(ReceiverStream::new(rx)).await?.into_inner();
    for p in 0..n {
        tokio::time::sleep(gap).await;
        let id = work.probe_id(p);
        let v = work.probe_vector(seed, p);
        // "Below Warning": Normal when sent and when found, and never refused.
        let normal = || live.state.load(Ordering::Relaxed) == pb::PressureState::Normal as u8;
        let mut below_warning = normal();
        // Re-sent after a refusal; the clock starts at the send that is accepted.
        let (sent, acked_at, lsn) = loop {
            let sent = Instant::now();
            tx.send(observe_req(pb::observe_request::Kind::Observation(
                pb::Observation {
                    id: id.clone(),
                    content: format!("visibility probe {p}"),
                    embedding: v.clone(),
                    sequence: p + 1,
                    ..Default::default()
                },
            )))
            .await?;
            let ack = loop {
                match inbound.message().await? {
                    Some(pb::ObserveResponse {
                        kind: Some(pb::observe_response::Kind::Acks(b)),
                    }) => {
                        if let Some(a) = b.acks.into_iter().next() {
                            break a;
                        }
                    }
                    Some(pb::ObserveResponse {
                        kind: Some(pb::observe_response::Kind::Status(st)),
                    }) => live.saw_state(st.state),
                    Some(_) => {}
                    None => anyhow::bail!("probe session: the server ended the stream"),
                }
            };
            match pb::AckStatus::try_from(ack.status) {
                Ok(pb::AckStatus::Accepted) => break (sent, Instant::now(), ack.lsn),
                Ok(pb::AckStatus::Rejected)
                    if ack.code == pb::RejectCode::Overloaded as i32
                        || ack.code == pb::RejectCode::WindowExceeded as i32 =>
                {
                    below_warning = false;
                    tokio::time::sleep(Duration::from_millis(ack.retry_after_ms.max(10))).await;
                }
                _ => anyhow::bail!("probe {p} refused: {} {}", ack.code, ack.reason),
            }
        };
        out.acked.push((id.clone(), lsn));
        let deadline = sent + Duration::from_secs(10);
        loop {
            let r = recall
                .recall_once(pb::RecallRequest {
                    space: space.clone(),
                    cue: v.clone(),
                    k: 10,
                    ..Default::default()
                })
                .await?
                .into_inner();
            if r.memories.iter().any(|m| m.id == id) {
                record(&mut out.observe_to_visible, sent.elapsed());
                let seen = acked_at.elapsed();
                record(&mut out.visibility, seen);
                if below_warning && normal() {
                    record(&mut out.visibility_below_warning, seen);
                }
                break;
            }
            if Instant::now() > deadline {
                out.not_found += 1;
                break;
            }
        }
    }
    tx.send(observe_req(pb::observe_request::Kind::Close(pb::Close {
        drain: false,
    })))
    .await?;
    Ok(out)
}

/// The server as the poller last saw it.
#[derive(Default, Clone, Copy)]
pub(crate) struct ServerView {
    pub(crate) committed: u64,
    pub(crate) indexed: u64,
    pub(crate) peak_rss: u64,
}

/// Polls Stats every `every` until `stop`; keeps the worst pressure and the peak RSS.
pub(crate) async fn poll_stats(
    target: Conn,
    space: String,
    every: Duration,
    live: Arc<Live>,
    view: Arc<Mutex<ServerView>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut client = target.connect().await?;
    while !stop.load(Ordering::Relaxed) {
        let s = client.stats(pb::StatsRequest {}).await?.into_inner();
        if let Some(p) = s.pressure {
            live.saw_state(p.state);
        }
        let mut v = ServerView {
            peak_rss: s.server_peak_rss_bytes,
            ..Default::default()
        };
        if let Some(st) = s
            .spaces
            .iter()
            .find(|sp| sp.info.as_ref().is_some_and(|i| i.name == space))
            .and_then(|sp| sp.stats)
        {
            v.committed = st.committed_lsn;
            v.indexed = st.indexed_lsn;
        }
        if let Ok(mut g) = view.lock() {
            *g = v;
        }
        tokio::time::sleep(every).await;
    }
    Ok(())
}
