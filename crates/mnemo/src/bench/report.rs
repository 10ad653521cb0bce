//! The report: one JSON object (field names are a stable interface) and a table.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

use super::BenchArgs;
use super::checks::Audit;
use super::load::{self, Live, ProbeOutcome, RecallOutcome, SessionOutcome};
use super::retention::{self, DiskSample, ForgetReport};

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// ACCEPTED acks per second, first send → last ack (durable and visible).
    pub(crate) accepted_per_s: f64,
    /// Records per second from the first ack until the last one is in the graph.
    pub(crate) indexed_per_s: f64,
    pub(crate) ack_p50_ms: f64,
    pub(crate) ack_p99_ms: f64,
    /// Probe acked → first recall that returns it.
    pub(crate) visibility_p50_ms: Option<f64>,
    pub(crate) visibility_p99_ms: Option<f64>,
    /// Probe sent → first recall that returns it (ack latency included).
    pub(crate) observe_to_visible_p50_ms: Option<f64>,
    pub(crate) observe_to_visible_p99_ms: Option<f64>,
    /// The same, over the probes during which the server stayed below Warning (as far
    /// as the client saw: Normal when sent and when found, never refused).
    pub(crate) visibility_p99_ms_below_warning: Option<f64>,
    pub(crate) recall_p50_ms: Option<f64>,
    pub(crate) recall_p99_ms: Option<f64>,
    pub(crate) recalls_during_ingest: u64,
    pub(crate) recall_errors: u64,
    pub(crate) recall_at_10: Option<f64>,
    /// Per `--filter-selectivity`: filtered recall latency during ingest and
    /// recall@10 against the exact filtered top 10.
    pub(crate) filtered: Vec<FilteredRecall>,
    /// GetMemories of 100 ids, after the run (200 calls).
    pub(crate) get_100_p50_ms: Option<f64>,
    pub(crate) get_100_p99_ms: Option<f64>,
    /// Where recall@10's truth came from: file | exact | none.
    pub(crate) recall_truth: &'static str,
    /// Observations acked (ACCEPTED or DUPLICATE), probes not counted.
    pub(crate) observations: u64,
    pub(crate) probes: u64,
    pub(crate) probes_not_found: u64,
    /// REJECTED acks (each retried until accepted), by code.
    pub(crate) rejected: u64,
    pub(crate) rejected_by_code: BTreeMap<String, u64>,
    pub(crate) duplicates: u64,
    /// Acked observations missing from the final export (must be 0).
    pub(crate) lost: u64,
    pub(crate) stored: u64,
    pub(crate) stored_twice: u64,
    pub(crate) unacked_stored: u64,
    /// Forgotten observations still stored (must be 0).
    pub(crate) forgotten_stored: u64,
    /// `--forget-share`: the forget, and recall latency before and during it.
    pub(crate) forget: Option<ForgetReport>,
    /// The space's memories and the server's disk, sampled every second.
    pub(crate) disk: Vec<DiskSample>,
    /// Recall results above their snapshot LSN (must be 0).
    pub(crate) snapshot_violations: u64,
    /// Peak RSS of the server process (in-process: includes this load generator).
    pub(crate) server_rss_bytes: u64,
    pub(crate) pressure_max_state: &'static str,
    /// Start → the last observation in the graph.
    pub(crate) duration_s: f64,
    /// Start → last observation acked.
    pub(crate) ingest_s: f64,
    pub(crate) raw_index_insert_per_s: Option<f64>,
    pub(crate) indexed_vs_raw: Option<f64>,
    pub(crate) space: String,
    pub(crate) server: String,
    pub(crate) cores: usize,
    pub(crate) config: BenchArgs,
}

/// Filtered recall at one selectivity.
#[derive(Debug, Serialize)]
pub(crate) struct FilteredRecall {
    pub(crate) selectivity: f64,
    pub(crate) recalls: u64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) recall_at_10: f64,
}

pub(crate) struct Inputs<'a> {
    pub(crate) args: &'a BenchArgs,
    pub(crate) started: Instant,
    pub(crate) ingest_end: Instant,
    pub(crate) indexed_at: Instant,
    /// LSN of the last observation: every record up to it is in the graph at `indexed_at`.
    pub(crate) committed: u64,
    pub(crate) sessions: Vec<SessionOutcome>,
    pub(crate) recalls: Vec<RecallOutcome>,
    pub(crate) probes: ProbeOutcome,
    pub(crate) live: &'a Live,
    pub(crate) server_peak_rss: u64,
    pub(crate) recall_at_10: Option<f64>,
    pub(crate) filtered_recall: Vec<f64>,
    pub(crate) get_latency: Histogram<u64>,
    pub(crate) truth_source: &'static str,
    pub(crate) audit: Audit,
    pub(crate) space: &'a str,
    /// `--forget-share`: how many were forgotten, and the call's time (s).
    pub(crate) forget: Option<(u64, f64)>,
    pub(crate) disk: Vec<DiskSample>,
}

fn ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

fn merge<'a>(hs: impl Iterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut all = load::histogram();
    for h in hs {
        // Same bounds everywhere: adding cannot fail.
        let _ = all.add(h);
    }
    all
}

impl Report {
    pub(crate) fn build(i: Inputs<'_>) -> Report {
        let ack = merge(i.sessions.iter().map(|s| &s.ack_latency));
        let recall = merge(i.recalls.iter().map(|r| &r.latency));
        let first_send = i.sessions.iter().filter_map(|s| s.first_send).min();
        let last_ack = i.sessions.iter().filter_map(|s| s.last_ack).max();
        let observations: u64 = i.sessions.iter().map(|s| s.acked.len() as u64).sum();
        let accepted = i.live.accepted.load(Ordering::Relaxed);
        let accepted_per_s = match (first_send, last_ack) {
            (Some(a), Some(b)) if b > a => accepted as f64 / (b - a).as_secs_f64(),
            _ => 0.0,
        };
        let indexed_per_s = match first_send {
            Some(a) if i.indexed_at > a => i.committed as f64 / (i.indexed_at - a).as_secs_f64(),
            _ => 0.0,
        };
        let mut rejected_by_code = BTreeMap::new();
        for s in &i.sessions {
            for (code, n) in &s.rejected_by_code {
                *rejected_by_code.entry(code.clone()).or_default() += n;
            }
        }
        let filtered = i
            .args
            .filter_selectivity
            .iter()
            .zip(&i.filtered_recall)
            .enumerate()
            .map(|(j, (&selectivity, &recall_at_10))| {
                let h = merge(i.recalls.iter().filter_map(|r| r.filtered.get(j)));
                FilteredRecall {
                    selectivity,
                    recalls: h.len(),
                    p50_ms: ms(&h, 0.5),
                    p99_ms: ms(&h, 0.99),
                    recall_at_10,
                }
            })
            .collect();
        let forget = i.forget.map(|(forgotten, forget_s)| {
            let before = merge(i.recalls.iter().map(|r| &r.before_forget));
            let during = merge(i.recalls.iter().map(|r| &r.during_forget));
            ForgetReport {
                forgotten,
                forget_s,
                recall_before_p50_ms: ms(&before, 0.5),
                recall_before_p99_ms: ms(&before, 0.99),
                recall_during_p50_ms: ms(&during, 0.5),
                recall_during_p99_ms: ms(&during, 0.99),
                recalls_during: during.len(),
            }
        });
        Report {
            forget,
            disk: i.disk,
            forgotten_stored: i.audit.forgotten_stored,
            filtered,
            get_100_p50_ms: ms(&i.get_latency, 0.5),
            get_100_p99_ms: ms(&i.get_latency, 0.99),
            accepted_per_s,
            indexed_per_s,
            ack_p50_ms: ms(&ack, 0.5).unwrap_or(0.0),
            ack_p99_ms: ms(&ack, 0.99).unwrap_or(0.0),
            visibility_p50_ms: ms(&i.probes.visibility, 0.5),
            visibility_p99_ms: ms(&i.probes.visibility, 0.99),
            observe_to_visible_p50_ms: ms(&i.probes.observe_to_visible, 0.5),
            observe_to_visible_p99_ms: ms(&i.probes.observe_to_visible, 0.99),
            visibility_p99_ms_below_warning: ms(&i.probes.visibility_below_warning, 0.99),
            recall_p50_ms: ms(&recall, 0.5),
            recall_p99_ms: ms(&recall, 0.99),
            recalls_during_ingest: i.recalls.iter().map(|r| r.count).sum(),
            recall_errors: i.recalls.iter().map(|r| r.errors).sum(),
            recall_at_10: i.recall_at_10,
            recall_truth: i.truth_source,
            observations,
            probes: i.probes.acked.len() as u64,
            probes_not_found: i.probes.not_found,
            rejected: rejected_by_code.values().sum(),
            rejected_by_code,
            duplicates: i.sessions.iter().map(|s| s.duplicates).sum(),
            lost: i.audit.lost,
            stored: i.audit.stored,
            stored_twice: i.audit.stored_twice,
            unacked_stored: i.audit.unacked_stored,
            snapshot_violations: i.recalls.iter().map(|r| r.snapshot_violations).sum(),
            server_rss_bytes: i.server_peak_rss,
            pressure_max_state: load::state_name(i.live.max_state.load(Ordering::Relaxed)),
            duration_s: (i.indexed_at - i.started).as_secs_f64(),
            ingest_s: (i.ingest_end - i.started).as_secs_f64(),
            raw_index_insert_per_s: None,
            indexed_vs_raw: None,
            space: i.space.to_string(),
            server: i.args.addr.clone().unwrap_or_else(|| "in-process".into()),
            cores: std::thread::available_parallelism().map_or(0, |c| c.get()),
            config: i.args.clone(),
        }
    }

    pub(crate) fn set_raw(&mut self, raw_per_s: f64) {
        self.raw_index_insert_per_s = Some(raw_per_s);
        self.indexed_vs_raw = Some(self.indexed_per_s / raw_per_s.max(1e-9));
    }

    pub(crate) fn print(&self) {
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.2}{unit}"));
        println!(
            "mnemo bench: {} observations into '{}' on {} ({} cores)",
            self.observations, self.space, self.server, self.cores
        );
        println!(
            "  {:<28} {:>12.0}/s",
            "accepted (durable+visible)", self.accepted_per_s
        );
        println!(
            "  {:<28} {:>12.0}/s",
            "indexed, warm or graph", self.indexed_per_s
        );
        if let (Some(raw), Some(ratio)) = (self.raw_index_insert_per_s, self.indexed_vs_raw) {
            println!(
                "  {:<28} {:>12.0}/s  (server / raw = {ratio:.2})",
                "raw usearch insert", raw
            );
        }
        println!(
            "  {:<28} {:>12}  p99 {}",
            "ack latency p50",
            opt(Some(self.ack_p50_ms), " ms"),
            opt(Some(self.ack_p99_ms), " ms")
        );
        println!(
            "  {:<28} {:>12}  p99 {}  (below Warning p99 {})",
            "visibility p50",
            opt(self.visibility_p50_ms, " ms"),
            opt(self.visibility_p99_ms, " ms"),
            opt(self.visibility_p99_ms_below_warning, " ms")
        );
        println!(
            "  {:<28} {:>12}  p99 {}",
            "observe → visible p50",
            opt(self.observe_to_visible_p50_ms, " ms"),
            opt(self.observe_to_visible_p99_ms, " ms")
        );
        println!(
            "  {:<28} {:>12}  p99 {}  ({} recalls, {} errors)",
            "recall during ingest p50",
            opt(self.recall_p50_ms, " ms"),
            opt(self.recall_p99_ms, " ms"),
            self.recalls_during_ingest,
            self.recall_errors
        );
        println!(
            "  {:<28} {:>12}  (truth: {})",
            "recall@10",
            self.recall_at_10.map_or("-".into(), |r| format!("{r:.4}")),
            self.recall_truth
        );
        for f in &self.filtered {
            println!(
                "  {:<28} {:>12}  p99 {}  ({} recalls, recall@10 {:.4})",
                format!("filter {} p50", f.selectivity),
                opt(f.p50_ms, " ms"),
                opt(f.p99_ms, " ms"),
                f.recalls,
                f.recall_at_10
            );
        }
        println!(
            "  {:<28} {:>12}  p99 {}",
            "get 100 ids p50",
            opt(self.get_100_p50_ms, " ms"),
            opt(self.get_100_p99_ms, " ms")
        );
        println!(
            "  {:<28} {:>12}  {:?}",
            "rejected (retried)", self.rejected, self.rejected_by_code
        );
        println!(
            "  {:<28} {:>12}  (stored {}, twice {}, unacked {}, snapshot violations {})",
            "lost",
            self.lost,
            self.stored,
            self.stored_twice,
            self.unacked_stored,
            self.snapshot_violations
        );
        println!(
            "  {:<28} {:>12}",
            "pressure, worst", self.pressure_max_state
        );
        println!(
            "  {:<28} {:>9} MiB",
            "server peak RSS",
            self.server_rss_bytes >> 20
        );
        println!(
            "  {:<28} {:>10.2} s  (ingest {:.2} s)",
            "duration", self.duration_s, self.ingest_s
        );
        if let Some(f) = &self.forget {
            println!(
                "  {:<28} {:>12}  in {:.3} s  (still stored: {})",
                "forgotten (one filter)", f.forgotten, f.forget_s, self.forgotten_stored
            );
            println!(
                "  {:<28} {:>12}  p99 {}  (before it: p50 {}, p99 {}; {} recalls during)",
                "recall during forget p50",
                opt(f.recall_during_p50_ms, " ms"),
                opt(f.recall_during_p99_ms, " ms"),
                opt(f.recall_before_p50_ms, " ms"),
                opt(f.recall_before_p99_ms, " ms"),
                f.recalls_during
            );
        }
        if self.config.ttl.is_some() || self.config.duration.is_some() {
            println!("  disk over time (every 5 s):");
            retention::print_curve(&self.disk);
            println!("  tiers each second (rows/s; rows held):");
            retention::print_tiers(&self.disk);
        }
    }
}
