//! The `mnemo.v1.Mnemo` service: thin handlers over the engine. Blocking engine
//! calls (recall cursors, draining close) run on tokio's blocking pool.

use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use mnemo_engine::{AckKind, Engine, Error, Session};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{self, status};
use crate::pb;
use crate::pb::mnemo_server::Mnemo;

/// Limits announced to clients and enforced by the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request message, bytes.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 4 << 20,
        }
    }
}

/// Where the engine appears once it has recovered; until then every call is
/// UNAVAILABLE (and health says NOT_SERVING).
pub type EngineSlot = Arc<std::sync::OnceLock<Arc<Engine>>>;

/// The service. Cheap to clone.
#[derive(Clone)]
pub struct MnemoService {
    slot: EngineSlot,
    limits: Limits,
    /// Flips to true when the server shuts down: open streams end with UNAVAILABLE.
    shutdown: watch::Receiver<bool>,
}

impl MnemoService {
    /// A service over `engine`; streams end when `shutdown` turns true.
    pub fn new(slot: EngineSlot, limits: Limits, shutdown: watch::Receiver<bool>) -> Self {
        MnemoService {
            slot,
            limits,
            shutdown,
        }
    }

    fn engine(&self) -> Result<&Arc<Engine>, Status> {
        if *self.shutdown.borrow() {
            return Err(status(Error::ShuttingDown));
        }
        self.slot
            .get()
            .ok_or_else(|| Status::unavailable("the server is recovering its data; retry shortly"))
    }

    fn limits_message(&self, engine: &Engine) -> pb::Limits {
        let cfg = engine.config();
        pb::Limits {
            max_dim: mnemo_engine::MAX_DIM,
            max_content_bytes: mnemo_engine::MAX_CONTENT_BYTES as u32,
            max_message_bytes: self.limits.max_message_bytes as u32,
            max_k: mnemo_engine::MAX_RECALL_K as u32,
            max_sessions: cfg.ingest.max_sessions as u32,
        }
    }
}

type BoxStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// Runs a blocking engine call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> mnemo_engine::Result<T> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("task failed: {e}")))?
        .map_err(status)
}

#[tonic::async_trait]
impl Mnemo for MnemoService {
    type ObserveStream = BoxStream<pb::ObserveResponse>;
    type RecallStream = BoxStream<pb::RecallResponse>;

    async fn observe(
        &self,
        request: Request<Streaming<pb::ObserveRequest>>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before Init"))?;
        let Some(pb::observe_request::Kind::Init(init)) = first.kind else {
            return Err(Status::invalid_argument("the first message must be Init"));
        };
        if init.space.is_empty() {
            return Err(Status::invalid_argument("Init.space is empty"));
        }
        let engine = self.engine()?;
        let session = match (init.session_id.is_empty(), init.resume_only) {
            (true, true) => {
                return Err(Status::invalid_argument("resume_only needs a session_id"));
            }
            (true, false) => engine.open_session(&init.space, None),
            (false, false) => engine.open_session(&init.space, Some(&init.session_id)),
            (false, true) => engine.resume_session(&init.space, &init.session_id),
        }
        .map_err(status)?;
        let window = session.credit_window();
        let window = if init.credit_window > 0 {
            window.min(init.credit_window)
        } else {
            window
        };
        let (tx, rx) = mpsc::channel(256);
        let ack = pb::ObserveResponse {
            kind: Some(pb::observe_response::Kind::InitAck(pb::InitAck {
                session_id: session.id().to_string(),
                next_sequence: session.next_expected(),
                credit_window: window,
                capabilities: vec![
                    "indexed_acks".into(),
                    "lanes".into(),
                    "flow_control".into(),
                    "stream_status".into(),
                ],
                limits: Some(self.limits_message(engine)),
            })),
        };
        tx.send(Ok(ack))
            .await
            .map_err(|_| Status::cancelled("client went away"))?;
        let run = SessionStream {
            engine: Arc::clone(engine),
            space: init.space.clone(),
            want_indexed: init.want_indexed,
            tx,
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(run.run(session, inbound));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn recall(
        &self,
        request: Request<pb::RecallRequest>,
    ) -> Result<Response<Self::RecallStream>, Status> {
        let r = request.into_inner();
        let engine = Arc::clone(self.engine()?);
        let req = convert::recall_request(&r);
        let space = r.space.clone();
        let cursor = blocking(move || engine.recall(&space, req)).await?;
        let batch = if r.batch_size == 0 {
            usize::MAX
        } else {
            r.batch_size as usize
        };
        let with_embedding = r.include_embedding;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut cursor = cursor;
            let snapshot = cursor.snapshot();
            loop {
                let msg = cursor.next_batch(batch).map(|found| pb::RecallResponse {
                    memories: found
                        .into_iter()
                        .map(|m| convert::memory(m, with_embedding))
                        .collect(),
                    snapshot_lsn: snapshot,
                    more: !cursor.is_done(),
                });
                let last = msg.as_ref().map_or(true, |m| !m.more);
                if tx.blocking_send(msg.map_err(status)).is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn remember(
        &self,
        request: Request<pb::RememberRequest>,
    ) -> Result<Response<pb::RememberResponse>, Status> {
        let r = request.into_inner();
        let o = r
            .observation
            .ok_or_else(|| Status::invalid_argument("observation is missing"))?;
        let lane = convert::lane(o.lane);
        let obs = convert::observation(o)?;
        let ticket = self
            .engine()?
            .observe_in_lane(&r.space, obs, lane)
            .map_err(status)?;
        let done = ticket.await.map_err(status)?;
        Ok(Response::new(pb::RememberResponse {
            memory_id: done.id.to_string(),
            lsn: done.lsn,
        }))
    }

    async fn recall_once(
        &self,
        request: Request<pb::RecallRequest>,
    ) -> Result<Response<pb::RecallOnceResponse>, Status> {
        let r = request.into_inner();
        let engine = Arc::clone(self.engine()?);
        let req = convert::recall_request(&r);
        let with_embedding = r.include_embedding;
        let (snapshot, found) = blocking(move || {
            let cursor = engine.recall(&r.space, req)?;
            let snapshot = cursor.snapshot();
            Ok((snapshot, cursor.collect_all()?))
        })
        .await?;
        Ok(Response::new(pb::RecallOnceResponse {
            memories: found
                .into_iter()
                .map(|m| convert::memory(m, with_embedding))
                .collect(),
            snapshot_lsn: snapshot,
        }))
    }

    async fn create_space(
        &self,
        request: Request<pb::CreateSpaceRequest>,
    ) -> Result<Response<pb::SpaceInfo>, Status> {
        let r = request.into_inner();
        let engine = Arc::clone(self.engine()?);
        let info =
            blocking(move || engine.create_space(&r.name, convert::space_config(&r))).await?;
        Ok(Response::new(convert::space_info(&info)))
    }

    async fn list_spaces(
        &self,
        _: Request<pb::ListSpacesRequest>,
    ) -> Result<Response<pb::ListSpacesResponse>, Status> {
        let spaces = self
            .engine()?
            .list_spaces()
            .iter()
            .map(convert::space_info)
            .collect();
        Ok(Response::new(pb::ListSpacesResponse { spaces }))
    }

    async fn describe_space(
        &self,
        request: Request<pb::DescribeSpaceRequest>,
    ) -> Result<Response<pb::DescribeSpaceResponse>, Status> {
        let (info, stats) = self
            .engine()?
            .describe_space(&request.into_inner().name)
            .map_err(status)?;
        Ok(Response::new(pb::DescribeSpaceResponse {
            info: Some(convert::space_info(&info)),
            stats: Some(convert::space_stats(&stats)),
        }))
    }

    async fn drop_space(
        &self,
        request: Request<pb::DropSpaceRequest>,
    ) -> Result<Response<pb::DropSpaceResponse>, Status> {
        let name = request.into_inner().name;
        let engine = Arc::clone(self.engine()?);
        blocking(move || engine.drop_space(&name)).await?;
        Ok(Response::new(pb::DropSpaceResponse {}))
    }

    async fn stats(
        &self,
        _: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let e = self.engine()?;
        let ingest = e.ingest_stats();
        let spaces = e
            .list_spaces()
            .iter()
            .filter_map(|info| {
                let (_, stats) = e.describe_space(&info.name).ok()?;
                Some(pb::stats_response::Space {
                    info: Some(convert::space_info(info)),
                    stats: Some(convert::space_stats(&stats)),
                })
            })
            .collect();
        let (rss, peak) = crate::rss_bytes();
        Ok(Response::new(pb::StatsResponse {
            spaces,
            pressure: Some(convert::stream_status(&ingest.pressure)),
            server_rss_bytes: rss,
            server_peak_rss_bytes: peak,
            accepted: ingest.accepted,
            refused: ingest.refused_overloaded + ingest.refused_window + ingest.gaps,
            duplicates: ingest.duplicates,
            indexed: ingest.indexed,
            sessions_open: ingest.sessions_open as u64,
            log_bytes: e.log_stats().bytes_on_disk,
        }))
    }
}

/// One Observe stream after Init.
struct SessionStream {
    engine: Arc<Engine>,
    space: String,
    want_indexed: bool,
    tx: mpsc::Sender<Result<pb::ObserveResponse, Status>>,
    shutdown: watch::Receiver<bool>,
}

/// Most INDEXED notifications a stream tracks at once; past it they are skipped
/// (they are informational; ACCEPTED already means durable and visible).
const MAX_INDEXED_PENDING: usize = 100_000;

type AckFuture = Pin<Box<dyn futures::Future<Output = pb::Ack> + Send>>;

fn acks(acks: Vec<pb::Ack>) -> pb::ObserveResponse {
    pb::ObserveResponse {
        kind: Some(pb::observe_response::Kind::Acks(pb::AckBatch { acks })),
    }
}

impl SessionStream {
    async fn send(&self, msg: pb::ObserveResponse) -> bool {
        self.tx.send(Ok(msg)).await.is_ok()
    }

    async fn run(self, session: Session, mut inbound: Streaming<pb::ObserveRequest>) {
        let mut session = Some(session);
        let mut pending: FuturesOrdered<AckFuture> = FuturesOrdered::new();
        let mut indexed: FuturesUnordered<AckFuture> = FuturesUnordered::new();
        let mut pressure = self.engine.subscribe_pressure();
        let mut paused = false;
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                msg = inbound.message() => {
                    let msg = match msg {
                        Ok(Some(m)) => m,
                        // The client half-closed or went away: finish the acks in flight.
                        Ok(None) | Err(_) => break,
                    };
                    match msg.kind {
                        Some(pb::observe_request::Kind::Observation(o)) => {
                            let Some(s) = session.as_ref() else {
                                let e = Error::SessionClosed { session: String::new(), why: "closed" };
                                if !self.send(acks(vec![convert::rejected(o.sequence, &e)])).await { return; }
                                continue;
                            };
                            if let Some(rejected) = self.submit(s, o, &mut pending)
                                && !self.send(acks(vec![rejected])).await
                            {
                                return;
                            }
                        }
                        Some(pb::observe_request::Kind::FlowControl(f)) => {
                            paused = f.pause;
                            if !paused {
                                let status = convert::stream_status(&pressure.borrow_and_update());
                                if !self.send(pb::ObserveResponse { kind: Some(pb::observe_response::Kind::Status(status)) }).await { return; }
                            }
                        }
                        Some(pb::observe_request::Kind::Close(c)) => {
                            // Acks of everything sent first, then the close.
                            while let Some(a) = pending.next().await {
                                if !self.send(acks(vec![a])).await { return; }
                            }
                            let result = match session.take() {
                                Some(s) => blocking(move || s.close(c.drain, Duration::from_secs(60))).await,
                                None => Err(Status::failed_precondition("the session is already closed")),
                            };
                            match result {
                                Ok(final_sequence) => {
                                    let closed = pb::ObserveResponse { kind: Some(pb::observe_response::Kind::Closed(pb::Closed { final_sequence })) };
                                    let _ = self.send(closed).await;
                                }
                                Err(st) => { let _ = self.tx.send(Err(st)).await; }
                            }
                            return;
                        }
                        Some(pb::observe_request::Kind::Init(_)) => {
                            let _ = self.tx.send(Err(Status::invalid_argument("Init may only be the first message"))).await;
                            return;
                        }
                        None => {
                            let _ = self.tx.send(Err(Status::invalid_argument("empty ObserveRequest"))).await;
                            return;
                        }
                    }
                }
                Some(first) = pending.next(), if !pending.is_empty() => {
                    let mut batch = vec![first];
                    while let Some(Some(a)) = pending.next().now_or_never() {
                        batch.push(a);
                    }
                    if self.want_indexed && indexed.len() < MAX_INDEXED_PENDING {
                        for a in &batch {
                            if a.status == pb::AckStatus::Accepted as i32 {
                                self.track_indexed(a.clone(), &mut indexed);
                            }
                        }
                    }
                    if !self.send(acks(batch)).await { return; }
                }
                Some(a) = indexed.next(), if !paused && !indexed.is_empty() => {
                    if !self.send(acks(vec![a])).await { return; }
                }
                changed = pressure.changed() => {
                    if changed.is_err() { return; }
                    if !paused {
                        let status = convert::stream_status(&pressure.borrow_and_update());
                        if !self.send(pb::ObserveResponse { kind: Some(pb::observe_response::Kind::Status(status)) }).await { return; }
                    }
                }
                _ = shutdown.changed() => {
                    while let Some(Some(a)) = pending.next().now_or_never() {
                        let _ = self.send(acks(vec![a])).await;
                    }
                    let _ = self.tx.send(Err(status(Error::ShuttingDown))).await;
                    return;
                }
            }
        }
        while let Some(a) = pending.next().await {
            if !self.send(acks(vec![a])).await {
                return;
            }
        }
    }

    /// Submits one observation; a refusal comes back as the REJECTED ack to send.
    fn submit(
        &self,
        session: &Session,
        o: pb::Observation,
        pending: &mut FuturesOrdered<AckFuture>,
    ) -> Option<pb::Ack> {
        let seq = o.sequence;
        let lane = convert::lane(o.lane);
        let obs = match convert::observation(o) {
            Ok(obs) => obs,
            Err(st) => {
                return Some(convert::rejected(
                    seq,
                    &Error::InvalidArgument(st.message().to_string()),
                ));
            }
        };
        match session.observe(seq, obs, lane) {
            Ok(ticket) => {
                pending.push_back(Box::pin(async move {
                    match ticket.await {
                        Ok(a) => pb::Ack {
                            sequence: a.seq,
                            memory_id: a.id.to_string(),
                            lsn: a.lsn,
                            status: match a.kind {
                                AckKind::Accepted => pb::AckStatus::Accepted,
                                AckKind::Duplicate => pb::AckStatus::Duplicate,
                            } as i32,
                            ..Default::default()
                        },
                        Err(e) => convert::rejected(seq, &e),
                    }
                }));
                None
            }
            Err(e) => Some(convert::rejected(seq, &e)),
        }
    }

    fn track_indexed(&self, accepted: pb::Ack, indexed: &mut FuturesUnordered<AckFuture>) {
        let Ok(wait) = self.engine.indexed(&self.space, accepted.lsn) else {
            return;
        };
        indexed.push(Box::pin(async move {
            // A dropped space never indexes: the notification simply never comes.
            if wait.await.is_err() {
                futures::future::pending::<()>().await;
            }
            pb::Ack {
                status: pb::AckStatus::Indexed as i32,
                ..accepted
            }
        }));
    }
}
