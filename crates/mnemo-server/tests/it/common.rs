use mnemo_engine::{Engine, EngineConfig};
use mnemo_server::pb;
use mnemo_server::pb::mnemo_client::MnemoClient;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::net::SocketAddr;
use std::path::Path;
use tokio::sync::oneshot;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// A server on 127.0.0.1:<free port> over `dir`. Dropping it (or `stop`) shuts
/// it down gracefully.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), mnemo_server::ServeError>>>,
}

pub fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.index_threads = 2;
    c.log.durability = mnemo_engine::Durability::Buffered;
    c
}

/// The session runtime of every test server (never dropped: a runtime cannot be
/// dropped inside the tests' own).
static SESSIONS: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("test-session")
        .enable_all()
        .build()
        .expect("a session runtime")
});

/// Recall threads and a session runtime of their own, as under `mnemo serve`.
pub fn serve_options() -> mnemo_server::Options {
    mnemo_server::Options {
        recall_pool: Some(mnemo_server::RecallPool::start(2).unwrap()),
        session_runtime: Some(SESSIONS.handle().clone()),
        ..Default::default()
    }
}

impl TestServer {
    pub async fn start(dir: &Path) -> TestServer {
        Self::start_with(config(dir)).await
    }

    /// Recalls rank on a recall pool and sessions run on a runtime of their own, as
    /// under `mnemo serve`.
    pub async fn start_with(cfg: EngineConfig) -> TestServer {
        Self::start_with_options(cfg, serve_options()).await
    }

    pub async fn start_with_options(
        cfg: EngineConfig,
        options: mnemo_server::Options,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, cfg, options).await
    }

    /// A server on `listener` (a restart on the same port, say).
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        cfg: EngineConfig,
        options: mnemo_server::Options,
    ) -> TestServer {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(mnemo_server::serve(
            listener,
            move || Engine::open(cfg),
            options,
            async move {
                let _ = stopped.await;
            },
            move |_| {
                let _ = ready_tx.send(());
            },
        ));
        ready_rx.await.expect("server failed to start");
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> MnemoClient<Channel> {
        MnemoClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// A client whose HTTP/2 windows are the protocol's 64 KiB minimum: a stream with
    /// more to send than that waits for its reader, whatever the scheduling order.
    pub async fn client_with_small_windows(&self) -> MnemoClient<Channel> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .initial_stream_window_size(Some(65_535))
            .initial_connection_window_size(Some(65_535))
            .connect()
            .await
            .unwrap();
        MnemoClient::new(channel)
    }

    /// Graceful stop; returns once the engine is closed.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn random_vec(r: &mut StdRng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

pub async fn create_space(c: &mut MnemoClient<Channel>, name: &str, dim: u32) {
    c.create_space(pb::CreateSpaceRequest {
        name: name.into(),
        dim,
        ..Default::default()
    })
    .await
    .unwrap();
}

pub async fn space_stats(c: &mut MnemoClient<Channel>, name: &str) -> pb::SpaceStats {
    c.describe_space(pb::DescribeSpaceRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

pub fn observation(seq: u64, embedding: Vec<f32>) -> pb::ObserveRequest {
    pb::ObserveRequest {
        kind: Some(pb::observe_request::Kind::Observation(pb::Observation {
            content: format!("observation {seq}"),
            embedding,
            sequence: seq,
            ..Default::default()
        })),
    }
}

pub fn init(space: &str, session: &str) -> pb::ObserveRequest {
    pb::ObserveRequest {
        kind: Some(pb::observe_request::Kind::Init(pb::Init {
            space: space.into(),
            session_id: session.into(),
            ..Default::default()
        })),
    }
}

/// An open Observe stream: a sender for requests and the response stream.
pub struct ObserveStream {
    pub tx: tokio::sync::mpsc::Sender<pb::ObserveRequest>,
    pub rx: tonic::Streaming<pb::ObserveResponse>,
    pub init_ack: pb::InitAck,
}

pub async fn open_stream(c: &mut MnemoClient<Channel>, first: pb::ObserveRequest) -> ObserveStream {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tx.send(first).await.unwrap();
    let mut rx = c
        .observe(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let init_ack = match rx.message().await.unwrap().unwrap().kind {
        Some(pb::observe_response::Kind::InitAck(a)) => a,
        other => panic!("expected InitAck, got {other:?}"),
    };
    ObserveStream { tx, rx, init_ack }
}

/// Reads messages until `n` acks (of any status except INDEXED) arrived.
pub async fn read_acks(rx: &mut tonic::Streaming<pb::ObserveResponse>, n: usize) -> Vec<pb::Ack> {
    let mut acks = Vec::new();
    while acks.len() < n {
        match rx
            .message()
            .await
            .unwrap()
            .expect("stream ended early")
            .kind
        {
            Some(pb::observe_response::Kind::Acks(b)) => acks.extend(
                b.acks
                    .into_iter()
                    .filter(|a| a.status != pb::AckStatus::Indexed as i32),
            ),
            Some(_) => {}
            None => panic!("empty message"),
        }
    }
    acks
}
