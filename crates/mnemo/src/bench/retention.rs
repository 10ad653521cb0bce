//! What `mnemo bench` measures of forgetting: `--forget-share` times one Forget by
//! filter after ingest while recall clients go on (their latency before and
//! during it), and every run samples the space's memories and the server's disk
//! once a second (`--ttl` shows disk use bounded under constant ingest).

use mnemo_client::pb;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;
use tokio::time::Instant;

use crate::cmd::conn::Conn;
use crate::cmd::synth::selected;

/// The tag that marks the rows a `--forget-share` run forgets.
pub(crate) const FORGET_TAG: &str = "forget";

/// True if row `row` is among those a `--forget-share p` run forgets.
pub(crate) fn forgotten(row: u64, share: Option<f64>) -> bool {
    // A share unlike the selectivities' (and so another selection of rows).
    share.is_some_and(|p| selected(row ^ 0x5bd1_e995, p))
}

/// The filter of the rows to forget.
pub(crate) fn forget_filter() -> pb::Filter {
    pb::Filter {
        tags: vec![pb::TagClause {
            key: FORGET_TAG.into(),
            test: Some(pb::tag_clause::Test::Equals("yes".into())),
        }],
        ..Default::default()
    }
}

/// The phase recall clients are in (their latency is kept per phase).
#[derive(Default)]
pub(crate) struct Phase(AtomicU8);

impl Phase {
    pub(crate) const INGEST: u8 = 0;
    /// After ingest, before the forget: the baseline.
    pub(crate) const BEFORE_FORGET: u8 = 1;
    /// From the forget's start to a few seconds after it (the purge follows it).
    pub(crate) const FORGETTING: u8 = 2;

    pub(crate) fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
    fn set(&self, p: u8) {
        self.0.store(p, Ordering::Relaxed);
    }
}

/// What the forget measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ForgetReport {
    pub(crate) forgotten: u64,
    pub(crate) forget_s: f64,
    pub(crate) recall_before_p50_ms: Option<f64>,
    pub(crate) recall_before_p99_ms: Option<f64>,
    pub(crate) recall_during_p50_ms: Option<f64>,
    pub(crate) recall_during_p99_ms: Option<f64>,
    pub(crate) recalls_during: u64,
}

/// A baseline window, then one Forget of the tagged rows, then a window for the
/// purge; returns how many were forgotten and how long the call took.
pub(crate) async fn forget_phase(
    admin: &mut mnemo_client::Stub,
    space: &str,
    phase: &Phase,
) -> anyhow::Result<(u64, f64)> {
    phase.set(Phase::BEFORE_FORGET);
    tokio::time::sleep(Duration::from_secs(3)).await;
    phase.set(Phase::FORGETTING);
    let t = Instant::now();
    let r = admin
        .forget(pb::ForgetRequest {
            space: space.to_string(),
            filter: Some(forget_filter()),
            ..Default::default()
        })
        .await?
        .into_inner();
    let took = t.elapsed().as_secs_f64();
    // The purge (out of the graph) runs within a second of the forget.
    tokio::time::sleep(Duration::from_secs(3)).await;
    phase.set(Phase::INGEST);
    Ok((r.forgotten, took))
}

/// One sample of the disk curve.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct DiskSample {
    pub(crate) t_s: f64,
    pub(crate) committed_lsn: u64,
    pub(crate) memories: u64,
    pub(crate) log_bytes: u64,
    pub(crate) data_bytes: u64,
    /// Rows in each tier, rows that entered the warm tier so far, server RSS.
    pub(crate) fresh: u64,
    pub(crate) warm: u64,
    pub(crate) graph: u64,
    pub(crate) warm_entered: u64,
    pub(crate) rss_bytes: u64,
}

/// Samples the space's memories and the server's disk every second until `stop`.
pub(crate) async fn sample_disk(
    target: Conn,
    space: String,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<DiskSample>> {
    let mut client = target.connect().await?.stub();
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let s = client.stats(pb::StatsRequest {}).await?.into_inner();
        let st = s
            .spaces
            .iter()
            .find(|sp| sp.info.as_ref().is_some_and(|i| i.name == space))
            .and_then(|sp| sp.stats)
            .unwrap_or_default();
        out.push(DiskSample {
            t_s: started.elapsed().as_secs_f64(),
            committed_lsn: st.committed_lsn,
            memories: st.memories,
            log_bytes: s.log_bytes,
            data_bytes: s.data_bytes,
            fresh: st.fresh_count,
            warm: st.warm_count,
            graph: st.indexed_count,
            warm_entered: st.warm_entered,
            rss_bytes: s.server_rss_bytes,
        });
    }
    Ok(out)
}

/// With a TTL: the LSN below which acked memories may have expired by `end` (a
/// memory is only required back if it was committed after it): the last sampled
/// commit watermark at least `ttl` (and a margin for the sweep) before `end`.
pub(crate) fn expiry_cutoff(samples: &[DiskSample], ttl: Duration, end_s: f64) -> u64 {
    let horizon = end_s - ttl.as_secs_f64() + 5.0;
    samples
        .iter()
        .filter(|s| s.t_s <= horizon)
        .map(|s| s.committed_lsn)
        .max()
        .unwrap_or(0)
}

/// Every fifth sample of the curve (and the last), as table lines.
pub(crate) fn print_curve(samples: &[DiskSample]) {
    if samples.is_empty() {
        return;
    }
    println!(
        "  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}",
        "t (s)", "committed", "memories", "log MB", "data MB"
    );
    let last = samples.len() - 1;
    for (i, s) in samples.iter().enumerate() {
        if i % 5 == 0 || i == last {
            println!(
                "  {:>7.0}  {:>10}  {:>10}  {:>10.1}  {:>10.1}",
                s.t_s,
                s.committed_lsn,
                s.memories,
                s.log_bytes as f64 / 1e6,
                s.data_bytes as f64 / 1e6
            );
        }
    }
}

/// Each second of the run: accepted, into the warm tier and into the graph (rows
/// per second over that second), each tier's rows and the server's RSS.
pub(crate) fn print_tiers(samples: &[DiskSample]) {
    if samples.len() < 2 {
        return;
    }
    println!(
        "  {:>5}  {:>9}  {:>9}  {:>9}  {:>8}  {:>9}  {:>9}  {:>7}",
        "t (s)", "accepted/s", "to warm/s", "to graph/s", "fresh", "warm", "graph", "RSS MB"
    );
    for w in samples.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let dt = (b.t_s - a.t_s).max(1e-3);
        let rate = |x: u64, y: u64| y.saturating_sub(x) as f64 / dt;
        println!(
            "  {:>5.0}  {:>10.0}  {:>9.0}  {:>10.0}  {:>8}  {:>9}  {:>9}  {:>7.0}",
            b.t_s,
            rate(a.committed_lsn, b.committed_lsn),
            rate(a.warm_entered, b.warm_entered),
            rate(a.graph, b.graph),
            b.fresh,
            b.warm,
            b.graph,
            b.rss_bytes as f64 / 1e6
        );
    }
}
