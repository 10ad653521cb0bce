//! One benchmark run against a server: create the space, run the load (sessions,
//! recall clients, visibility probes, Stats poller), wait for the index, then
//! measure recall@10 and audit the stored records against the acks.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mnemo_client::pb;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use super::checks::{self, audit, recall_at_10, with_probes};
use super::load::{self, Live, Plan, ServerView};
use super::report::{self, Report};
use super::retention;
use super::side_runtime::SideRuntime;
use super::workload::Workload;
use super::{BenchArgs, RawInput, Truth};
use crate::cmd::conn::Conn;
use crate::cmd::synth::selected;
use pb::Metric;

#[allow(clippy::too_many_arguments)]
pub(super) async fn drive(
    args: &BenchArgs,
    target: &Conn,
    metric: Metric,
    precision: pb::Precision,
    rate: Option<f64>,
    total: Option<u64>,
    work: Arc<Workload>,
    queries: Vec<Vec<f32>>,
    truth: Truth,
) -> anyhow::Result<(Report, RawInput)> {
    let mut admin = target.connect().await?.stub();
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
            default_ttl_ms: args.ttl.map_or(0, |t| t.as_millis() as u64),
        })
        .await
        .with_context(|| format!("creating space '{space}'"))?
        .into_inner();
    if let Some(other) = &args.probe_recall_addr {
        wait_for_space(other, &target.security, &space).await?;
    }

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
        selectivities: args.filter_selectivity.clone(),
        forget_share: args.forget_share,
    });
    let queries = Arc::new(queries);
    // Sessions, and the recall clients that time what they see, run on runtimes of
    // their own: a recall's answer is not kept waiting behind the ingest tasks.
    let ingest_rt = SideRuntime::start("bench-ingest", args.ingest_nice)?;
    let measure_rt = SideRuntime::start("bench-recall", 0)?;
    let started = Instant::now();
    let stop_disk = Arc::new(AtomicBool::new(false));
    let disk = tokio::spawn(retention::sample_disk(
        target.clone(),
        space.clone(),
        started,
        Arc::clone(&stop_disk),
    ));
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
                Arc::clone(&plan),
                Arc::clone(&live),
                Arc::clone(&stop_recall),
            ))
        })
        .collect();
    let probe_recall = Conn {
        addr: args
            .probe_recall_addr
            .clone()
            .unwrap_or_else(|| target.addr.clone()),
        security: target.security.clone(),
    };
    let probes = measure_rt.spawn(load::probes(
        load::ProbeNodes {
            write: target.clone(),
            recall: probe_recall,
        },
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
    // With --forget-share: one Forget by filter while the recall clients go on.
    let forget = match args.forget_share {
        Some(_) => {
            bar.set_message("forgetting …");
            Some(retention::forget_phase(&mut admin, &space, &live.phase).await?)
        }
        None => None,
    };
    stop_recall.store(true, Ordering::Relaxed);
    bar.set_message("waiting for the index to catch up …");
    // Everything up to the last observation's LSN indexed: in the graph, or out of
    // the fresh tier into the warm tier (IVF) when the graph is behind; the graph
    // catches up after the run. The end of the sustained indexing rate (probes
    // still running do not hold it back).
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
        let st = d.stats.unwrap_or_default();
        if st.indexed_lsn >= committed || (st.fresh_count == 0 && st.committed_lsn >= committed) {
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
    stop_disk.store(true, Ordering::Relaxed);
    let disk = disk.await??;
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
    let whole_set = work.len() == Some(rows.len() as u64) && args.forget_share.is_none();
    // What remains: forgotten rows are gone; with a TTL, only recent rows are sure
    // to be there (recall@10 and get by id are measured without a TTL only).
    rows.retain(|&r| !retention::forgotten(r, args.forget_share));
    let end_s = started.elapsed().as_secs_f64();
    let cutoff = args
        .ttl
        .map_or(0, |ttl| retention::expiry_cutoff(&disk, ttl, end_s));
    let measure = args.ttl.is_none();
    let (nearest, truth_source) = match truth {
        _ if !measure => (None, "none (--ttl)"),
        Some(t) if whole_set => (Some(t), "file"),
        _ if args.exact_queries > 0 => {
            let qs: Vec<Vec<f32>> = queries.iter().take(args.exact_queries).cloned().collect();
            let (w, r) = (Arc::clone(&work), rows.clone());
            let t = tokio::task::spawn_blocking(move || w.exact_top_k(metric, &r, &qs, 10)).await?;
            (Some(t), "exact")
        }
        _ => (None, "none"),
    };
    // The probes are stored too: the truth is over rows and probes together.
    let probe_vectors: Vec<(String, Vec<f32>)> = probe
        .acked
        .iter()
        .filter_map(|(id, _)| {
            Some((
                id.clone(),
                work.probe_vector(args.seed, work.probe_index(id)?),
            ))
        })
        .collect();
    let recall_at_10 = match &nearest {
        Some(nearest) => {
            let truth: Vec<Vec<String>> = nearest
                .iter()
                .zip(queries.iter())
                .map(|(n, q)| with_probes(&work, metric, q, n, &probe_vectors))
                .collect();
            Some(recall_at_10(&mut admin, &space, &queries, &truth, None).await?)
        }
        None => None,
    };
    // Per selectivity: recall@10 against the exact top 10 of the matching rows.
    let mut filtered_recall = Vec::new();
    for &p in args.filter_selectivity.iter().filter(|_| measure) {
        let qs: Vec<Vec<f32>> = queries
            .iter()
            .take(args.exact_queries.max(1))
            .cloned()
            .collect();
        let matching: Vec<u64> = rows.iter().copied().filter(|&r| selected(r, p)).collect();
        let (w, q2) = (Arc::clone(&work), qs.clone());
        let nearest =
            tokio::task::spawn_blocking(move || w.exact_top_k(metric, &matching, &q2, 10)).await?;
        let truth: Vec<Vec<String>> = nearest
            .iter()
            .map(|n| n.iter().map(|&r| work.id(r)).collect())
            .collect();
        let filter = Some(load::selectivity_filter(p));
        let found = checks::recall_at_10(&mut admin, &space, &qs, &truth, filter).await?;
        filtered_recall.push(found);
    }

    // GetMemories of 100 acked ids at a time, 200 times: its latency.
    let mut get_latency = load::histogram();
    if !rows.is_empty() && measure {
        for round in 0..200u64 {
            let ids: Vec<String> = (0..100u64)
                .map(|i| work.id(rows[((round * 7919 + i * 104_729) % rows.len() as u64) as usize]))
                .collect();
            let t = Instant::now();
            let got = admin
                .get_memories(pb::GetMemoriesRequest {
                    space: space.clone(),
                    ids,
                    ..Default::default()
                })
                .await?
                .into_inner();
            load::record(&mut get_latency, t.elapsed());
            anyhow::ensure!(
                got.missing.is_empty(),
                "GetMemories missed {} acked ids",
                got.missing.len()
            );
        }
    }

    // The exhaustive check: every acked id present once, at its acked LSN (but the
    // forgotten ones, gone, and with a TTL those that may have expired).
    let mut expected = checks::Expected {
        present: HashMap::new(),
        may_be_gone: HashSet::new(),
        forgotten: HashSet::new(),
    };
    let acked = outcomes
        .iter()
        .flat_map(|o| {
            o.acked
                .iter()
                .map(|&(row, lsn)| (Some(row), work.id(row), lsn))
        })
        .chain(probe.acked.iter().map(|(id, lsn)| (None, id.clone(), *lsn)));
    for (row, id, lsn) in acked {
        if row.is_some_and(|r| retention::forgotten(r, args.forget_share)) {
            expected.forgotten.insert(id);
        } else if lsn <= cutoff {
            expected.may_be_gone.insert(id);
        } else {
            expected.present.insert(id, lsn);
        }
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
        filtered_recall,
        get_latency,
        truth_source,
        audit,
        space: &space,
        forget,
        disk,
    });
    let raw = args
        .compare_raw
        .then(|| (Arc::clone(&work), rows.len() as u64, info));
    Ok((report, raw))
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

/// Waits until the node at `addr` knows `space` (a space created on one node of a
/// cluster reaches the others through the shared catalog), up to 30 s.
async fn wait_for_space(
    addr: &str,
    security: &crate::cmd::conn::Security,
    space: &str,
) -> anyhow::Result<()> {
    let node = Conn {
        addr: addr.to_string(),
        security: security.clone(),
    }
    .connect()
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if node.list_spaces().await?.iter().any(|s| s.name == space) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{addr} does not know space '{space}' 30 s after it was created"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
