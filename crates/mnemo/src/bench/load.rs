//! The load: Observe sessions that keep their credit window full (paced when a rate
//! is set), recall clients at a fixed total rate, visibility probes, and a poller of
//! the server's Stats. Each task owns its histograms; they are merged at the end.

use crate::cmd::conn::Conn;
use crate::cmd::synth::{selected, selectivity_key};
use anyhow::Context;
use hdrhistogram::Histogram;
use mnemo_client::pb::observe_response::Kind as In;
use mnemo_client::{Feed, ObserveStream, SessionEvents, SessionOptions, pb};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use super::workload::Workload;

/// Latency histogram in microseconds, 1 µs to 10 min, 3 significant digits.
#[allow(clippy::expect_used)] // constant bounds, valid by construction
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
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
    /// Ingest, or the windows around a `--forget-share` forget.
    pub(crate) phase: super::retention::Phase,
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
    /// Shares of the rows tagged `sel<p>=yes` (see `--filter-selectivity`).
    pub(crate) selectivities: Vec<f64>,
    /// `--forget-share`: rows tagged to be forgotten.
    pub(crate) forget_share: Option<f64>,
}

impl Plan {
    /// The tags of row `row`.
    pub(crate) fn tags(&self, row: u64) -> std::collections::HashMap<String, String> {
        let mut tags: std::collections::HashMap<String, String> = self
            .selectivities
            .iter()
            .filter(|p| selected(row, **p))
            .map(|p| (selectivity_key(*p), "yes".to_string()))
            .collect();
        if super::retention::forgotten(row, self.forget_share) {
            tags.insert(super::retention::FORGET_TAG.into(), "yes".into());
        }
        tags
    }
}

/// The filter that matches the rows of share `p`.
pub(crate) fn selectivity_filter(p: f64) -> pb::Filter {
    pb::Filter {
        tags: vec![pb::TagClause {
            key: selectivity_key(p),
            test: Some(pb::tag_clause::Test::Equals("yes".into())),
        }],
        ..Default::default()
    }
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

/// Session `s`'s share of the rows, as a feed for the session driver: rows dealt
/// round-robin, until the plan's total or (duration runs) time up.
struct PlanFeed {
    s: u64,
    plan: Arc<Plan>,
    work: Arc<Workload>,
    live: Arc<Live>,
    first_send: Option<Instant>,
}

impl Feed for PlanFeed {
    fn next(&mut self, seq: u64) -> mnemo_client::Result<Option<pb::Observation>> {
        let row = self.plan.row(self.s, seq);
        let done = match self.plan.total {
            Some(total) => row >= total,
            None => self.live.time_up.load(Ordering::Relaxed),
        };
        if done {
            return Ok(None);
        }
        self.first_send.get_or_insert_with(Instant::now);
        Ok(Some(pb::Observation {
            id: self.work.id(row),
            content: format!("bench observation {row}"),
            embedding: self.work.vector(row),
            tags: self.plan.tags(row),
            ..Default::default()
        }))
    }
}

/// Records what the session driver reports.
struct Recorder<'a> {
    s: u64,
    plan: &'a Plan,
    live: &'a Live,
    out: &'a mut SessionOutcome,
}

impl SessionEvents for Recorder<'_> {
    fn acked(&mut self, a: &pb::Ack, first_sent: Instant) {
        let now = Instant::now();
        record(&mut self.out.ack_latency, now - first_sent);
        self.out.last_ack = Some(now);
        self.out
            .acked
            .push((self.plan.row(self.s, a.sequence), a.lsn));
        if a.status == pb::AckStatus::Duplicate as i32 {
            self.live.duplicates.fetch_add(1, Ordering::Relaxed);
        } else {
            self.live.accepted.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn refused(&mut self, a: &pb::Ack) {
        let code = pb::RejectCode::try_from(a.code).unwrap_or(pb::RejectCode::Unspecified);
        *self
            .out
            .rejected_by_code
            .entry(code.as_str_name().to_string())
            .or_default() += 1;
        self.live.rejected.fetch_add(1, Ordering::Relaxed);
    }

    fn status(&mut self, st: &pb::StreamStatus) {
        self.live.saw_state(st.state);
    }
}

/// One Observe session sending its share of the rows through `mnemo_client`'s
/// session driver (the one `mnemo observe` uses): refusals are re-sent after the
/// server's retry-after, a lost connection resumes; a refusal a retry cannot fix
/// ends the run with an error.
pub(crate) async fn session(
    target: Conn,
    space: String,
    s: u64,
    plan: Arc<Plan>,
    work: Arc<Workload>,
    live: Arc<Live>,
) -> anyhow::Result<SessionOutcome> {
    let client = target.connect().await?;
    let mut out = SessionOutcome {
        acked: Vec::new(),
        ack_latency: histogram(),
        rejected_by_code: BTreeMap::new(),
        duplicates: 0,
        first_send: None,
        last_ack: None,
        final_sequence: 0,
    };
    let mut feed = PlanFeed {
        s,
        plan: Arc::clone(&plan),
        work,
        live: Arc::clone(&live),
        first_send: None,
    };
    let options = SessionOptions {
        interval: plan.interval,
        ..SessionOptions::new(space)
    };
    let mut events = Recorder {
        s,
        plan: &plan,
        live: &live,
        out: &mut out,
    };
    let done = client
        .observe(options, &mut feed, &mut events)
        .await
        .with_context(|| format!("session {s}"))?;
    out.final_sequence = done.final_sequence;
    out.duplicates = done.duplicates;
    out.first_send = feed.first_send;
    Ok(out)
}

/// What the recall clients measured.
pub(crate) struct RecallOutcome {
    pub(crate) latency: Histogram<u64>,
    /// Unfiltered recall latency after ingest: before a `--forget-share` forget,
    /// and during it (and the purge after it).
    pub(crate) before_forget: Histogram<u64>,
    pub(crate) during_forget: Histogram<u64>,
    /// Per selectivity (in `Plan::selectivities` order): filtered recall latency.
    pub(crate) filtered: Vec<Histogram<u64>>,
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
/// until `stop` is set, taking turns between unfiltered and each selectivity's
/// filter; latency runs to the last message.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn recaller(
    target: Conn,
    space: String,
    queries: Arc<Vec<Vec<f32>>>,
    first: usize,
    pace: Pace,
    plan: Arc<Plan>,
    live: Arc<Live>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<RecallOutcome> {
    let mut client = target.connect().await?.stub();
    let mut out = RecallOutcome {
        filtered: plan.selectivities.iter().map(|_| histogram()).collect(),
        latency: histogram(),
        before_forget: histogram(),
        during_forget: histogram(),
        count: 0,
        errors: 0,
        snapshot_violations: 0,
    };
    // Clients start out of phase (`phase` of an interval each), so that together they
    // send evenly spaced recalls instead of a burst of all of them every interval.
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + pace.phase, pace.interval);
    // Open loop: each recall is timed from when it was due, so a slow answer that
    // delays the next send counts in that one's latency too (no coordinated
    // omission), and late sends go out at once to catch up.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut q = first;
    while !stop.load(Ordering::Relaxed) {
        let due = tick.tick().await;
        if stop.load(Ordering::Relaxed) || queries.is_empty() {
            break;
        }
        let cue = queries[q % queries.len()].clone();
        // Turn 0: unfiltered; turn j: the j-th selectivity.
        let turn = q % (plan.selectivities.len() + 1);
        q += 1;
        let filter = turn
            .checked_sub(1)
            .map(|j| selectivity_filter(plan.selectivities[j]));
        let result: Result<(), tonic::Status> = async {
            let mut stream = client
                .recall(pb::RecallRequest {
                    space: space.clone(),
                    cue,
                    k: 10,
                    batch_size: 5,
                    filter,
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
                use super::retention::Phase;
                let h = match (turn.checked_sub(1), live.phase.get()) {
                    (Some(j), _) => &mut out.filtered[j],
                    (None, Phase::BEFORE_FORGET) => &mut out.before_forget,
                    (None, Phase::FORGETTING) => &mut out.during_forget,
                    (None, _) => &mut out.latency,
                };
                record(h, due.elapsed());
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

/// Where probes are written, and where they are recalled (the same server, or
/// another node of a cluster).
pub(crate) struct ProbeNodes {
    pub(crate) write: Conn,
    pub(crate) recall: Conn,
}

/// Probes one at a time through their own session: observe a marked vector, then
/// recall it (k = 10) until it comes back, `gap` apart.
pub(crate) async fn probes(
    nodes: ProbeNodes,
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
    let client = nodes.write.connect().await?;
    let mut recall = nodes.recall.connect().await?.stub();
    let mut stream = ObserveStream::open(
        &client,
        pb::Init {
            space: space.clone(),
            ..Default::default()
        },
    )
    .await?;
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
            stream
                .send(pb::Observation {
                    id: id.clone(),
                    content: format!("visibility probe {p}"),
                    embedding: v.clone(),
                    sequence: p + 1,
                    ..Default::default()
                })
                .await?;
            let ack = loop {
                match stream.next().await? {
                    Some(In::Acks(b)) => {
                        if let Some(a) = b.acks.into_iter().next() {
                            break a;
                        }
                    }
                    Some(In::Status(st)) => live.saw_state(st.state),
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
                let best = r.memories.first().map(|m| (m.lsn, m.score));
                tracing::warn!(
                    probe = p,
                    lsn,
                    snapshot = r.snapshot_lsn,
                    ?best,
                    "a visibility probe was not found by a recall within 10 s"
                );
                out.not_found += 1;
                break;
            }
        }
    }
    stream.close(false).await?;
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
    let mut client = target.connect().await?.stub();
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
