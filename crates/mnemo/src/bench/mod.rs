//! `mnemo bench`: a load generator and benchmark report. Without `--addr` it starts
//! a server in this process on a temporary data directory and drives it over
//! loopback gRPC, exactly as a remote client would.
//!
//! Phases: ingest (sessions, with recall clients and visibility probes alongside),
//! wait until everything is in the graph, recall@10 against ground truth, an
//! exhaustive export to check that no acked observation is missing, then (optional)
//! the bare-usearch comparison. See docs/benchmarks.md for what each figure means.

mod load;
mod raw;
mod report;
mod workload;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mnemo_server::pb;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use crate::client::{IndexFlags, parse_metric, parse_precision};
use load::{Live, Plan, ServerView};
use pb::Metric;
use report::Report;
use workload::Workload;

#[derive(Debug, Clone, clap::Args, Serialize)]
pub(crate) struct BenchArgs {
    /// Drive this server instead of starting one in-process.
    #[arg(long)]
    addr: Option<String>,
    /// API key and TLS for --addr.
    #[command(flatten)]
    #[serde(skip)]
    security: crate::client::Security,
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

/// A server started in this process.
struct Embedded {
    addr: String,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), mnemo_server::ServeError>>,
    _dir: Option<tempfile::TempDir>,
}

async fn start_embedded(data_dir: Option<PathBuf>) -> anyhow::Result<Embedded> {
    let (dir, tmp) = match data_dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::Builder::new().prefix("mnemo-bench-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let cfg = mnemo_engine::EngineConfig::new(&dir);
    let task = tokio::spawn(mnemo_server::serve(
        listener,
        move || mnemo_engine::Engine::open(cfg),
        mnemo_server::Options::default(),
        async move {
            let _ = stop_rx.await;
        },
        move |_| {
            let _ = ready_tx.send(());
        },
    ));
    if ready_rx.await.is_err() {
        let why = match task.await {
            Ok(Err(e)) => format!("{e}"),
            _ => "it stopped".into(),
        };
        anyhow::bail!("the in-process server did not start: {why}");
    }
    Ok(Embedded {
        addr,
        shutdown: stop_tx,
        task,
        _dir: tmp,
    })
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

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
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
    let nonce = mnemo_engine::now_us() as u64;
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
        None => Some(start_embedded(args.data_dir.clone()).await?),
    };
    let addr = match (&args.addr, &embedded) {
        (Some(a), _) => a.clone(),
        (None, Some(e)) => e.addr.clone(),
        (None, None) => unreachable!("one of the two is set"),
    };
    let target = crate::client::Conn {
        addr,
        security: args.security.clone(),
    };
    let result = drive(
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
    anyhow::ensure!(
        report.lost == 0,
        "{} acked observations are missing from the server",
        report.lost
    );
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

#[allow(clippy::too_many_arguments)]
async fn drive(
    args: &BenchArgs,
    target: &crate::client::Conn,
    metric: Metric,
    precision: pb::Precision,
    rate: Option<f64>,
    total: Option<u64>,
    work: Arc<Workload>,
    queries: Vec<Vec<f32>>,
    truth: Truth,
) -> anyhow::Result<(Report, RawInput)> {
    let mut admin = target.connect().await?;
    let space = args
        .space
        .clone()
        .unwrap_or_else(|| format!("bench-{}", mnemo_engine::now_us() / 1000));
    let info = admin
        .create_space(pb::CreateSpaceRequest {
            name: space.clone(),
            dim: work.dim() as u32,
            metric: metric as i32,
            precision: precision as i32,
            m: args.index.m,
            ef_construction: args.index.ef_construction,
            ef_search: args.index.ef_search,
        })
        .await
        .with_context(|| format!("creating space '{space}'"))?
        .into_inner();

    let live = Arc::new(Live::default());
    let view = Arc::new(Mutex::new(ServerView::default()));
    let stop_poll = Arc::new(AtomicBool::new(false));
    let stop_recall = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(load::poll_stats(
        target.clone(),
        space.clone(),
        Duration::from_millis(100),
        Arc::clone(&live),
        Arc::clone(&view),
        Arc::clone(&stop_poll),
    ));
    let bar = progress(args.quiet, total);
    let plan = Arc::new(Plan {
        sessions: args.sessions,
        total,
        interval: rate.map(|r| Duration::from_secs_f64(args.sessions as f64 / r)),
    });
    let queries = Arc::new(queries);
    // Sessions, and the recall clients that time what they see, run on runtimes of
    // their own: a recall's answer is not kept waiting behind the ingest tasks.
    let ingest_rt = SideRuntime::start("bench-ingest", args.ingest_nice)?;
    let measure_rt = SideRuntime::start("bench-recall", 0)?;
    let started = Instant::now();
    let sessions: Vec<_> = (0..args.sessions)
        .map(|s| {
            ingest_rt.spawn(load::session(
                target.clone(),
                space.clone(),
                s,
                Arc::clone(&plan),
                Arc::clone(&work),
                Arc::clone(&live),
            ))
        })
        .collect();
    let recall_clients = if args.recall_qps > 0.0 {
        (args.recall_qps.ceil() as usize).clamp(1, 4)
    } else {
        0
    };
    let recall_interval = if recall_clients > 0 {
        Duration::from_secs_f64(recall_clients as f64 / args.recall_qps)
    } else {
        Duration::ZERO
    };
    let recallers: Vec<_> = (0..recall_clients)
        .map(|c| {
            measure_rt.spawn(load::recaller(
                target.clone(),
                space.clone(),
                Arc::clone(&queries),
                c * 7919,
                load::Pace {
                    interval: recall_interval,
                    phase: recall_interval.mul_f64(c as f64 / recall_clients as f64),
                },
                Arc::clone(&live),
                Arc::clone(&stop_recall),
            ))
        })
        .collect();
    let probes = measure_rt.spawn(load::probes(
        target.clone(),
        space.clone(),
        Arc::clone(&work),
        args.seed,
        args.probes,
        Duration::from_millis(args.probe_gap_ms),
        Arc::clone(&live),
    ));
    // Progress, and the end of a --duration run.
    let deadline = args.duration.map(|d| started + Duration::from_secs_f64(d));
    let ticker = {
        let (live, view, bar) = (Arc::clone(&live), Arc::clone(&view), bar.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    live.time_up.store(true, Ordering::Relaxed);
                }
                show(&bar, &live, &view, started);
            }
        })
    };
    let mut outcomes = Vec::new();
    for s in sessions {
        outcomes.push(s.await??);
    }
    let ingest_end = Instant::now();
    stop_recall.store(true, Ordering::Relaxed);
    bar.set_message("waiting for the index to catch up …");
    // Everything up to the last observation's LSN in the graph: the end of the
    // sustained indexing rate (probes still running do not hold it back).
    let committed = outcomes
        .iter()
        .flat_map(|o| o.acked.iter().map(|&(_, lsn)| lsn))
        .max()
        .unwrap_or(0);
    loop {
        let d = admin
            .describe_space(pb::DescribeSpaceRequest {
                name: space.clone(),
            })
            .await?
            .into_inner();
        if d.stats.unwrap_or_default().indexed_lsn >= committed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let indexed_at = Instant::now();
    let mut recall_outcomes = Vec::new();
    for r in recallers {
        recall_outcomes.push(r.await??);
    }
    let probe = probes.await??;
    ticker.abort();
    stop_poll.store(true, Ordering::Relaxed);
    poller.await??;
    bar.finish_and_clear();
    let stats = admin.stats(pb::StatsRequest {}).await?.into_inner();

    // Recall@10 on the full snapshot, against the rows actually stored.
    let mut rows: Vec<u64> = outcomes
        .iter()
        .flat_map(|o| o.acked.iter().map(|&(row, _)| row))
        .collect();
    rows.sort_unstable();
    let whole_set = work.len() == Some(rows.len() as u64);
    let (truth, truth_source) = match truth {
        Some(t) if whole_set => (Some(t), "file"),
        _ if args.exact_queries > 0 => {
            let qs: Vec<Vec<f32>> = queries.iter().take(args.exact_queries).cloned().collect();
            let (w, r) = (Arc::clone(&work), rows.clone());
            let t = tokio::task::spawn_blocking(move || w.exact_top_k(metric, &r, &qs, 10)).await?;
            (Some(t), "exact")
        }
        _ => (None, "none"),
    };
    let recall_at_10 = match &truth {
        Some(t) => Some(
            recall_at_10(
                &mut admin,
                &space,
                &work,
                &queries,
                t,
                probe.acked.len() as u32,
            )
            .await?,
        ),
        None => None,
    };

    // The exhaustive check: every acked id present once, at its acked LSN.
    let mut expected: HashMap<String, u64> = HashMap::new();
    for o in &outcomes {
        for &(row, lsn) in &o.acked {
            expected.insert(work.id(row), lsn);
        }
    }
    for (id, lsn) in &probe.acked {
        expected.insert(id.clone(), *lsn);
    }
    let audit = audit(&mut admin, &space, &expected).await?;

    if args.addr.is_some() && !args.keep {
        admin
            .drop_space(pb::DropSpaceRequest {
                name: space.clone(),
            })
            .await?;
    }
    let report = Report::build(report::Inputs {
        args,
        started,
        ingest_end,
        indexed_at,
        committed,
        sessions: outcomes,
        recalls: recall_outcomes,
        probes: probe,
        live: &live,
        server_peak_rss: stats
            .server_peak_rss_bytes
            .max(view.lock().map(|v| v.peak_rss).unwrap_or(0)),
        recall_at_10,
        truth_source,
        audit,
        space: &space,
    });
    let raw = args
        .compare_raw
        .then(|| (Arc::clone(&work), rows.len() as u64, info));
    Ok((report, raw))
}

/// A runtime beside the main one. Dropped without waiting for its tasks: a runtime
/// must not be dropped (blocking) inside async code, and an error path drops it.
struct SideRuntime {
    handle: tokio::runtime::Handle,
    /// Taken only by drop.
    runtime: Option<tokio::runtime::Runtime>,
}

impl SideRuntime {
    /// Two worker threads (this machine class has two cores) named `name`, at `nice`.
    fn start(name: &'static str, nice: i32) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .on_thread_start(move || {
                if let Err(e) = mnemo_engine::lower_thread_priority(nice) {
                    tracing::warn!(nice, error = %e, "cannot lower the load generator's priority");
                }
            })
            .enable_all()
            .build()
            .with_context(|| format!("starting the {name} runtime"))?;
        Ok(Self {
            handle: rt.handle().clone(),
            runtime: Some(rt),
        })
    }

    fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }
}

impl Drop for SideRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn progress(quiet: bool, total: Option<u64>) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} {bar:30} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn show(bar: &ProgressBar, live: &Live, view: &Mutex<ServerView>, started: Instant) {
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let accepted = live.accepted.load(Ordering::Relaxed);
    let v = view.lock().map(|v| *v).unwrap_or_default();
    bar.set_position(accepted);
    bar.set_message(format!(
        "accepted {accepted} ({:.0}/s)  indexed {} ({:.0}/s)  {}  rejected {}  recalls {}",
        accepted as f64 / secs,
        v.indexed,
        v.indexed as f64 / secs,
        load::state_name(live.state.load(Ordering::Relaxed)),
        live.rejected.load(Ordering::Relaxed),
        live.recalls.load(Ordering::Relaxed),
    ));
}

/// Recall@10 of the server against `truth` (row ids), 4 queries at a time. The
/// probes are in the space too but not in the truth: each query asks for `probes`
/// more and the first 10 workload rows count.
async fn recall_at_10(
    admin: &mut crate::client::Client,
    space: &str,
    work: &Workload,
    queries: &[Vec<f32>],
    truth: &[Vec<u64>],
    probes: u32,
) -> anyhow::Result<f64> {
    use futures::StreamExt;
    let asks = truth.iter().zip(queries).map(|(t, q)| {
        let mut c = admin.clone();
        let req = pb::RecallRequest {
            space: space.to_string(),
            cue: q.clone(),
            k: 10 + probes,
            ..Default::default()
        };
        async move {
            let got = c.recall_once(req).await?.into_inner();
            let found = got
                .memories
                .iter()
                .filter_map(|m| work.index_of(&m.id))
                .take(10)
                .filter(|i| t.contains(i))
                .count();
            Ok::<_, tonic::Status>((found, t.len().min(10)))
        }
    });
    let results: Vec<_> = futures::stream::iter(asks)
        .buffer_unordered(4)
        .collect()
        .await;
    let (mut found, mut wanted) = (0usize, 0usize);
    for r in results {
        let (f, w) = r?;
        found += f;
        wanted += w;
    }
    Ok(if wanted == 0 {
        0.0
    } else {
        found as f64 / wanted as f64
    })
}

/// What the export found against what was acked.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Audit {
    /// Acked ids missing, or stored at another LSN than acked.
    pub(crate) lost: u64,
    /// Ids stored more than once.
    pub(crate) stored_twice: u64,
    /// Records stored that no ack named.
    pub(crate) unacked_stored: u64,
    pub(crate) stored: u64,
}

async fn audit(
    admin: &mut crate::client::Client,
    space: &str,
    expected: &HashMap<String, u64>,
) -> anyhow::Result<Audit> {
    let mut stream = admin
        .export(pb::ExportRequest {
            space: space.to_string(),
            batch_size: 4096,
            ..Default::default()
        })
        .await?
        .into_inner();
    // Id → LSNs it is stored at.
    let mut stored: HashMap<String, Vec<u64>> = HashMap::new();
    let mut a = Audit::default();
    while let Some(m) = stream.message().await? {
        for mem in m.memories {
            a.stored += 1;
            stored.entry(mem.id).or_default().push(mem.lsn);
        }
    }
    a.stored_twice = stored.values().filter(|l| l.len() > 1).count() as u64;
    a.unacked_stored = stored
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .count() as u64;
    a.lost = expected
        .iter()
        .filter(|(id, lsn)| !stored.get(*id).is_some_and(|l| l.contains(lsn)))
        .count() as u64;
    Ok(a)
}
