//! `mnemo serve`: metrics exporter, listener, signals, then the server.

use anyhow::Context;
use mnemo_engine::Engine;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::ServeConfig;

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves with `cfg`; `runtimes` are the server's recall threads and session
/// runtime (`mnemo_server::Runtimes::options`).
pub(crate) async fn run(cfg: ServeConfig, runtimes: mnemo_server::Options) -> anyhow::Result<()> {
    if !cfg.metrics.is_empty() {
        let addr: std::net::SocketAddr = cfg
            .metrics
            .parse()
            .with_context(|| format!("metrics address '{}'", cfg.metrics))?;
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets(&[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ])?
            .install()
            .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
        tracing::info!(%addr, "Prometheus metrics on http://{addr}/metrics");
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let (auth, tls) = cfg.security()?;
    let options = mnemo_server::Options {
        limits: cfg.limits(),
        auth,
        tls,
        ..runtimes
    };
    if !options.auth.enabled() && !cfg.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %cfg.listen,
            "listening beyond loopback without API keys: anyone who can reach it can read and write"
        );
    }
    let engine_cfg = cfg.engine.clone();
    tracing::info!(
        listen = %cfg.listen, data_dir = %engine_cfg.data_dir.display(),
        "recovering data (health: NOT_SERVING until done)"
    );
    let started = Instant::now();
    // Distributed mode: the node joins the cluster as the engine opens, and starts
    // following and leasing once it is ready. It outlives the server.
    let cluster: Arc<Mutex<Option<mnemo_cluster::Cluster>>> = Arc::default();
    let cluster_cfg = cfg.cluster.clone();
    let checkpoints_cfg = cfg.checkpoints.clone();
    let (opened, started_cluster) = (Arc::clone(&cluster), Arc::clone(&cluster));
    mnemo_server::serve(
        listener,
        move || {
            if !cluster_cfg.enabled() {
                return Engine::open(engine_cfg);
            }
            let (node, engine) =
                mnemo_cluster::Cluster::open(cluster_cfg, &checkpoints_cfg, engine_cfg).map_err(
                    |e| match e {
                        mnemo_cluster::ClusterError::Engine(e) => e,
                        other => mnemo_engine::Error::ClusterUnavailable(other.to_string()),
                    },
                )?;
            *opened
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(node);
            Ok(engine)
        },
        options,
        shutdown_signal(),
        move |engine| {
            if let Some(node) = started_cluster
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
            {
                node.run(Arc::clone(&engine));
                tracing::info!("following the cluster's partitions");
            }
            tracing::info!(
                spaces = engine.list_spaces().len(),
                recovery_ms = started.elapsed().as_millis() as u64,
                "mnemo ready on {}",
                cfg.listen
            );
        },
    )
    .await?;
    // The engine is closed: hand the partitions over at once.
    let node = cluster
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(node) = node {
        tokio::task::spawn_blocking(move || {
            node.leave();
            drop(node);
        })
        .await?;
    }
    Ok(())
}
