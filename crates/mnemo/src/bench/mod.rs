//! `mnemo bench`: a load generator and benchmark report. Without `--addr` it starts
//! a server in this process on a temporary data directory and drives it over
//! loopback gRPC, exactly as a remote client would.
//!
//! Phases: ingest (sessions, with recall clients and visibility probes alongside),
//! wait until everything is in the graph, recall@10 against ground truth, an
//! exhaustive export to check that no acked observation is missing, then (optional)
//! the bare-usearch comparison. See docs/benchmarks.md for what each figure means.

mod checks;
mod drive;
mod load;
mod raw;
mod report;
mod retention;
mod side_runtime;
mod workload;

use anyhow::Context;
use mnemo_client::pb;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cmd::conn::Conn;
use crate::cmd::space::{IndexFlags, parse_metric, parse_precision};
use side_runtime::start_embedded;
use workload::Workload;

#[derive(Debug, Clone, clap::Args, Serialize)]
pub(crate) struct BenchArgs {
    /// Drive this server instead of starting one in-process.
    #[arg(long)]
    addr: Option<String>,
    /// API key and TLS for --addr.
    #[command(flatten)]
    #[serde(skip)]
    security: crate::cmd::conn::Security,
    /// Data directory of the in-process server (default: a temporary one, removed).
    #[arg(long, conflicts_with = "addr")]
    data_dir: Option<PathBuf>,
    /// Vector dimension of the synthetic workload.
    #[arg(long, default_value_t = 768)]
    dim: usize,
    /// Observations to send (default 20000, or the whole --dataset).
    #[arg(long, conflicts_with = "duration")]
    observations: Option<u64>,
    /// Send for this many seconds instead of a fixed count.
    #[arg(long)]
    duration: Option<f64>,
    /// Parallel Observe sessions.
    #[arg(long, default_value_t = 4)]
    sessions: u64,
    /// Observations per second in total, or `max` (as fast as acks and the credit window allow).
    #[arg(long, default_value = "max")]
    rate: String,
    /// Recalls per second in total during ingest (k = 10), from up to 4 clients; 0 = none.
    #[arg(long, default_value_t = 10.0)]
    recall_qps: f64,
    /// Visibility probes: observe a marked vector, recall it until found.
    #[arg(long, default_value_t = 100)]
    probes: u64,
    /// Pause between two probes, milliseconds.
    #[arg(long, default_value_t = 50)]
    probe_gap_ms: u64,
    /// Recall the probes on this node instead (distributed mode: the visibility
    /// then measured is the follower lag, ack on `--addr` → visible here).
    #[arg(long, requires = "addr")]
    probe_recall_addr: Option<String>,
    /// Real vectors to observe (`.fvecs`), e.g. from ../shared/data.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Query vectors (`.fvecs`) for recall@10.
    #[arg(long, requires = "dataset")]
    queries: Option<PathBuf>,
    /// Ground truth (`.ivecs`, row ids into --dataset) for --queries.
    #[arg(long, requires = "queries")]
    groundtruth: Option<PathBuf>,
    /// Without --groundtruth: this many queries get exact neighbours by brute force (0 = no recall@10).
    #[arg(long, default_value_t = 100)]
    exact_queries: usize,
    /// cosine | l2 | ip
    #[arg(long, default_value = "cosine")]
    metric: String,
    /// f16 | f32 | i8 (i8 only with cosine)
    #[arg(long, default_value = "f16")]
    index_precision: String,
    #[command(flatten)]
    #[serde(flatten)]
    index: IndexFlags,
    /// Clusters of the synthetic workload.
    #[arg(long, default_value_t = 64)]
    clusters: usize,
    /// Seed of the synthetic vectors, queries and probes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Space to create (default: bench-<time>); it must not exist.
    #[arg(long)]
    space: Option<String>,
    /// Keep the space on a remote server afterwards (it is dropped by default).
    #[arg(long)]
    keep: bool,
    /// Also time a bare usearch index built from the same rows on this machine.
    #[arg(long)]
    compare_raw: bool,
    /// Filtered recall, e.g. `0.5,0.05,0.001`: for each p a share p of the rows is
    /// tagged `sel<p>=yes`; the recall clients take turns with unfiltered recalls and
    /// recalls filtered on each, and the report gives each one's latency and
    /// recall@10 against the exact filtered top 10.
    #[arg(long, value_delimiter = ',')]
    filter_selectivity: Vec<f64>,
    /// Forget a share of the rows (tagged `forget=yes`) with one Forget by filter
    /// once ingest ends, while the recall clients go on: the report gives its time
    /// and the recall latency before and during it (and the purge after it).
    #[arg(long)]
    forget_share: Option<f64>,
    /// Create the space with this default time-to-live (e.g. `60s`): with
    /// `--duration`, disk use under constant ingest (the report's disk curve).
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<std::time::Duration>,
    /// Niceness of the threads that send observations (0..=19; Linux). The load
    /// generator shares the machine with the server it measures: niced, its ingest
    /// side does not take CPU from the server, and recalls are timed on threads of
    /// their own at normal priority.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    ingest_nice: i32,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

impl BenchArgs {
    /// Runs its own server in this process (no `--addr`).
    pub(crate) fn embedded(&self) -> bool {
        self.addr.is_none()
    }
}

/// The rate flag: `None` = max.
fn rate(s: &str) -> anyhow::Result<Option<f64>> {
    if s == "max" {
        return Ok(None);
    }
    let r: f64 = s
        .parse()
        .with_context(|| format!("--rate must be a number or 'max', not '{s}'"))?;
    anyhow::ensure!(r > 0.0 && r.is_finite(), "--rate must be positive");
    Ok(Some(r))
}

/// Runs the benchmark; an in-process server (no `--addr`) runs with `server`, the
/// options of the same runtime layout as `mnemo serve`.
pub(crate) async fn run(args: BenchArgs, server: mnemo_server::Options) -> anyhow::Result<()> {
    let metric = parse_metric(&args.metric)?;
    let precision = parse_precision(&args.index_precision)?;
    let rate = rate(&args.rate)?;
    anyhow::ensure!(args.sessions > 0, "--sessions must be at least 1");
    anyhow::ensure!(
        args.recall_qps >= 0.0 && args.recall_qps.is_finite(),
        "--recall-qps must be 0 or more"
    );
    if let Some(d) = args.duration {
        anyhow::ensure!(d > 0.0 && d.is_finite(), "--duration must be positive");
    }
    anyhow::ensure!(
        args.filter_selectivity
            .iter()
            .all(|p| *p > 0.0 && *p <= 1.0),
        "--filter-selectivity values must be in (0, 1]"
    );
    if let Some(p) = args.forget_share {
        anyhow::ensure!(p > 0.0 && p < 1.0, "--forget-share must be in (0, 1)");
    }
    if let Some(t) = args.ttl {
        anyhow::ensure!(
            t >= std::time::Duration::from_secs(10),
            "--ttl must be at least 10s"
        );
    }
    let nonce = mnemo_engine::now_us().unsigned_abs();
    let work = Arc::new(match &args.dataset {
        Some(path) => Workload::dataset(path, nonce)?,
        None => {
            anyhow::ensure!(args.dim > 0, "--dim must be positive");
            Workload::synthetic(args.dim, args.clusters, args.seed, nonce)
        }
    });
    let total = match (args.observations, args.duration, work.len()) {
        (Some(n), _, Some(len)) => Some(n.min(len)),
        (Some(n), _, None) => Some(n),
        (None, Some(_), len) => len,
        (None, None, Some(len)) => Some(len),
        (None, None, None) => Some(20_000),
    };
    // Queries and their truth.
    let (queries, truth) = queries_and_truth(&args, &work)?;

    let embedded = match &args.addr {
        Some(_) => None,
        None => Some(start_embedded(args.data_dir.clone(), server).await?),
    };
    let addr = match (&args.addr, &embedded) {
        (Some(a), _) => a.clone(),
        (None, Some(e)) => e.addr.clone(),
        (None, None) => unreachable!("one of the two is set"),
    };
    let target = Conn {
        addr,
        security: args.security.clone(),
    };
    let result = drive::drive(
        &args, &target, metric, precision, rate, total, work, queries, truth,
    )
    .await;
    if let Some(e) = embedded {
        let _ = e.shutdown.send(());
        match e.task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!("in-process server: {err}"),
            Err(err) => tracing::warn!("in-process server task: {err}"),
        }
    }
    let (mut report, raw_input) = result?;
    if let Some((work, n, info)) = raw_input {
        let threads = std::thread::available_parallelism().map_or(2, |c| c.get());
        eprintln!("timing a bare usearch index on {n} rows with {threads} threads …");
        let raw =
            tokio::task::spawn_blocking(move || raw::insert_rate(&work, n, metric, &info, threads))
                .await??;
        report.set_raw(raw);
    }
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // A run fails on anything a database must never do, not only on a loss.
    let failures = [
        (report.lost, "acked observations missing from the server"),
        (report.stored_twice, "observations stored twice"),
        (
            report.forgotten_stored,
            "forgotten observations still stored",
        ),
        (report.unacked_stored, "stored records no ack named"),
        (
            report.snapshot_violations,
            "recall results above their snapshot",
        ),
        (
            report.probes_not_found,
            "visibility probes never found by a recall",
        ),
    ];
    let failed: Vec<String> = failures
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    anyhow::ensure!(failed.is_empty(), "the run failed: {}", failed.join("; "));
    Ok(())
}

/// Queries and, when known, the row ids of their 10 true nearest neighbours among
/// the first `n` rows: from a ground-truth file (valid when the whole data set is
/// observed) or computed exactly after the run (`None` here).
type Truth = Option<Vec<Vec<u64>>>;

fn queries_and_truth(args: &BenchArgs, work: &Workload) -> anyhow::Result<(Vec<Vec<f32>>, Truth)> {
    let queries = match &args.queries {
        Some(q) => {
            let qs = workload::read_fvecs(q)?;
            anyhow::ensure!(
                qs.iter().all(|v| v.len() == work.dim()),
                "{}: queries must have the data set's dimension {}",
                q.display(),
                work.dim()
            );
            qs
        }
        None => work.synthetic_queries(args.seed, args.exact_queries.max(100)),
    };
    let truth = match &args.groundtruth {
        Some(g) => {
            let gt = workload::read_ivecs(g)?;
            anyhow::ensure!(
                gt.len() >= queries.len() && gt.iter().all(|r| r.len() >= 10),
                "{}: needs 10 neighbours for each of the {} queries",
                g.display(),
                queries.len()
            );
            Some(
                gt.iter()
                    .take(queries.len())
                    .map(|r| r.iter().take(10).map(|&i| i as u64).collect())
                    .collect(),
            )
        }
        None => None,
    };
    Ok((queries, truth))
}

/// Everything `--compare-raw` needs once the server is gone.
type RawInput = Option<(Arc<Workload>, u64, pb::SpaceInfo)>;
