//! Running the server: the Mnemo service plus `grpc.health.v1` and reflection
//! (v1 and v1alpha) on one listener, with recovery and graceful shutdown.
//!
//! Lifecycle: the listener serves at once with health NOT_SERVING while the engine
//! recovers (Mnemo calls answer UNAVAILABLE); then SERVING. On the shutdown signal:
//! NOT_SERVING, open streams end with UNAVAILABLE, no new connections, in-flight
//! calls finish; then the engine drains its index queue, checkpoints and closes.

use mnemo_engine::Engine;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;

use crate::auth::Auth;
use crate::pb::mnemo_server::MnemoServer;
use crate::service::{EngineSlot, Limits, MnemoService};

/// Why the server stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The engine failed to open or to close cleanly.
    #[error(transparent)]
    Engine(#[from] mnemo_engine::Error),
    /// The transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A background task panicked.
    #[error("server task failed: {0}")]
    Task(String),
}

/// Health service names this server reports ("" is the whole server).
const HEALTH_NAMES: [&str; 2] = ["", "mnemo.v1.Mnemo"];

async fn set_health(reporter: &tonic_health::server::HealthReporter, status: ServingStatus) {
    for name in HEALTH_NAMES {
        reporter.set_service_status(name, status).await;
    }
}

/// How long a shutdown waits for open connections before closing them.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How the server runs, beyond its engine.
#[derive(Debug, Default)]
pub struct Options {
    /// Message limits.
    pub limits: Limits,
    /// API keys (none: every call allowed).
    pub auth: Auth,
    /// TLS for the listener (none: plain TCP).
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Threads that rank recalls (none: the runtime's blocking pool).
    pub recall_pool: Option<Arc<crate::RecallPool>>,
    /// Runtime for Observe and MemoryStream sessions (none: the serving runtime).
    pub session_runtime: Option<tokio::runtime::Handle>,
}

/// Serves on `listener` until `shutdown` resolves. `open` recovers the engine (on
/// the blocking pool) while the listener already answers health checks.
/// `ready` is called with the engine once it serves.
pub async fn serve(
    listener: TcpListener,
    open: impl FnOnce() -> mnemo_engine::Result<Engine> + Send + 'static,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(Arc<Engine>) + Send + 'static,
) -> Result<(), ServeError> {
    let slot: EngineSlot = Arc::default();
    let (reporter, health) = tonic_health::server::health_reporter();
    set_health(&reporter, ServingStatus::NotServing).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let Options {
        limits,
        auth,
        tls,
        recall_pool,
        session_runtime,
    } = options;
    if auth.enabled() {
        tracing::info!("API keys required for every Mnemo call");
    }
    let service = MnemoService::new(Arc::clone(&slot), limits, Arc::new(auth), stop_rx.clone())
        .with_recall_pool(recall_pool)
        .with_session_runtime(session_runtime);
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Task(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError::Task(e.to_string()))?;
    let mut stopped = stop_rx.clone();
    // Small replies (acks, recall results) must not wait for Nagle + delayed ACK
    // (~40 ms): tonic sets TCP_NODELAY only on listeners it binds itself.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.and_then(|c| {
            c.set_nodelay(true)?;
            Ok(c)
        })
    });
    // Dead peers are noticed (keepalive pings), and one connection cannot open
    // streams without bound.
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_streams_per_connection)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let transport = tokio::spawn(
        builder
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                MnemoServer::new(service)
                    .max_decoding_message_size(limits.max_message_bytes)
                    .max_encoding_message_size(64 << 20),
            )
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }),
    );

    let engine = match tokio::task::spawn_blocking(open).await {
        Ok(Ok(engine)) => Arc::new(engine),
        Ok(Err(e)) => {
            let _ = stop_tx.send(true);
            let _ = transport.await;
            return Err(e.into());
        }
        Err(e) => {
            let _ = stop_tx.send(true);
            return Err(ServeError::Task(e.to_string()));
        }
    };
    let _ = slot.set(Arc::clone(&engine));
    set_health(&reporter, ServingStatus::Serving).await;
    tracing::info!("serving");
    ready(Arc::clone(&engine));

    shutdown.await;
    tracing::info!("shutting down: health NOT_SERVING, closing streams, draining");
    set_health(&reporter, ServingStatus::NotServing).await;
    let _ = stop_tx.send(true);
    // Connections get a grace period to finish; a client that stopped reading its
    // stream would otherwise hold the shutdown (and the final checkpoint) forever.
    let mut transport = transport;
    let served = match tokio::time::timeout(SHUTDOWN_GRACE, &mut transport).await {
        Ok(joined) => joined.map_err(|e| ServeError::Task(e.to_string()))?,
        Err(_) => {
            tracing::warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "connections still open after the grace period (clients not reading?); closing them"
            );
            transport.abort();
            Ok(())
        }
    };
    let closing = Arc::clone(&engine);
    tokio::task::spawn_blocking(move || closing.close_shared())
        .await
        .map_err(|e| ServeError::Task(e.to_string()))??;
    served?;
    tracing::info!("stopped cleanly");
    Ok(())
}
