//! Runtimes beside the main one for the load generator's own tasks, and the
//! in-process server.

use anyhow::Context;
use std::path::PathBuf;

/// A runtime beside the main one. Dropped without waiting for its tasks: a runtime
/// must not be dropped (blocking) inside async code, and an error path drops it.
pub(super) struct SideRuntime {
    handle: tokio::runtime::Handle,
    /// Taken only by drop.
    runtime: Option<tokio::runtime::Runtime>,
}

impl SideRuntime {
    /// Two worker threads (this machine class has two cores) named `name`, at `nice`.
    pub(super) fn start(name: &'static str, nice: i32) -> anyhow::Result<Self> {
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

    pub(super) fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
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

/// A server started in this process.
pub(super) struct Embedded {
    pub(super) addr: String,
    pub(super) shutdown: tokio::sync::oneshot::Sender<()>,
    pub(super) task: tokio::task::JoinHandle<Result<(), mnemo_server::ServeError>>,
    _dir: Option<tempfile::TempDir>,
}

/// Starts a server in this process on `data_dir` (default: a temporary directory,
/// removed afterwards) with `options` (its runtimes: see `mnemo_server::Runtimes`).
pub(super) async fn start_embedded(
    data_dir: Option<PathBuf>,
    options: mnemo_server::Options,
) -> anyhow::Result<Embedded> {
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
        options,
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
