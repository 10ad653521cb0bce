//! The `mnemo.v1.Mnemo` service: thin handlers over the engine. Recalls are
//! admitted (`recall_admission.rs`) and rank on the recall threads
//! (`recall_batches.rs`); streamed answers are fed without holding a thread
//! (`streaming.rs`); other blocking engine calls run on tokio's blocking pool
//! (`offload.rs`); sessions are `stream.rs`.

use futures::StreamExt;
use mnemo_engine::{Engine, Error};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Access, Auth, Right};
use crate::convert::{self, EmbeddingForm, status};
use crate::offload::blocking;
use crate::pb;
use crate::pb::mnemo_server::Mnemo;
use crate::recall_admission::{RecallAdmission, RecallLimits, RecallPermit};
use crate::recall_batches::{self, Reading, Recaller};
use crate::stream::{Inbound, Incoming, SessionStream, Wire};
use crate::streaming::produce;

/// Limits announced to clients and enforced by the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request message, bytes. Default 4 MiB.
    pub max_message_bytes: usize,
    /// Largest response message the server builds, bytes: a recall's or an
    /// export's batch is cut there (a RecallOnce answer that does not fit is
    /// refused). Default 16 MiB.
    pub max_response_bytes: usize,
    /// Recalls in progress, server-wide, per connection and per API key.
    pub recalls: RecallLimits,
    /// A streaming Recall or Export whose client reads nothing for this long is
    /// closed (ABORTED). Default 30 s.
    pub stream_idle_timeout: Duration,
    /// Streams (calls) one connection may have open at once. Default 256.
    pub max_streams_per_connection: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 4 << 20,
            max_response_bytes: 16 << 20,
            recalls: RecallLimits::default(),
            stream_idle_timeout: Duration::from_secs(30),
            max_streams_per_connection: 256,
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
    auth: Arc<Auth>,
    /// Flips to true when the server shuts down: open streams end with UNAVAILABLE.
    shutdown: watch::Receiver<bool>,
    /// Where recalls rank (none: the blocking pool).
    recall_pool: Option<Arc<crate::RecallPool>>,
    /// Where Observe and MemoryStream sessions run (none: the serving runtime).
    sessions: Option<tokio::runtime::Handle>,
    /// Recalls in progress, bounded.
    recalls: Arc<RecallAdmission>,
}

impl MnemoService {
    /// A service over `engine`; streams end when `shutdown` turns true. With keys in
    /// `auth`, every call needs one (see [`crate::auth`]).
    pub fn new(
        slot: EngineSlot,
        limits: Limits,
        auth: Arc<Auth>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        MnemoService {
            recalls: RecallAdmission::new(limits.recalls, 1),
            slot,
            limits,
            auth,
            shutdown,
            recall_pool: None,
            sessions: None,
        }
    }

    /// Runs Observe and MemoryStream sessions on `runtime` instead of the serving
    /// one: a niced runtime there keeps the serving runtime (connections, recalls'
    /// requests and replies) free for recalls on a machine busy ingesting.
    #[must_use]
    pub fn with_session_runtime(mut self, runtime: Option<tokio::runtime::Handle>) -> Self {
        self.sessions = runtime;
        self
    }

    /// Ranks recalls on `pool` instead of the runtime's blocking pool.
    #[must_use]
    pub fn with_recall_pool(mut self, pool: Option<Arc<crate::RecallPool>>) -> Self {
        let threads = pool.as_ref().map_or(1, |p| p.threads());
        self.recalls = RecallAdmission::new(self.limits.recalls, threads);
        self.recall_pool = pool;
        self
    }

    /// Admits one recall of this request's connection and key (see
    /// [`RecallAdmission`]).
    fn admit_recall<T>(
        &self,
        request: &Request<T>,
        access: &Access,
    ) -> Result<RecallPermit, Status> {
        self.recalls.admit(request.remote_addr(), access.key_name())
    }

    fn recaller(&self, engine: &Arc<Engine>) -> Recaller {
        Recaller {
            engine: Arc::clone(engine),
            pool: self.recall_pool.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    fn access<T>(&self, request: &Request<T>) -> Result<Access, Status> {
        self.auth.authenticate(request.metadata())
    }

    fn engine(&self) -> Result<&Arc<Engine>, Status> {
        if *self.shutdown.borrow() {
            return Err(status(Error::ShuttingDown));
        }
        self.slot
            .get()
            .ok_or_else(|| Status::unavailable("the server is recovering its data; retry shortly"))
    }

    /// Reads the stream's Init, opens the session it asks for, answers InitAck and
    /// starts the stream task.
    async fn start_session<W: Wire>(
        &self,
        access: Access,
        connection: Option<std::net::SocketAddr>,
        mut inbound: Inbound,
    ) -> Result<BoxStream<W>, Status> {
        let init = match inbound.next().await {
            Some(Ok(Incoming::Init(init))) => init,
            Some(Ok(_)) => return Err(Status::invalid_argument("the first message must be Init")),
            Some(Err(st)) => return Err(st),
            None => return Err(Status::invalid_argument("the stream ended before Init")),
        };
        if init.space.is_empty() {
            return Err(Status::invalid_argument("Init.space is empty"));
        }
        access.check(Right::Write, &init.space)?;
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
        let ack = pb::InitAck {
            session_id: session.id().to_string(),
            next_sequence: session.next_expected(),
            credit_window: window,
            capabilities: vec![
                "indexed_acks".into(),
                "lanes".into(),
                "flow_control".into(),
                "stream_status".into(),
                "observation_batch".into(),
                "packed_embeddings".into(),
            ],
            limits: Some(self.limits_message(engine)),
        };
        tx.send(Ok(W::init_ack(ack)))
            .await
            .map_err(|_| Status::cancelled("client went away"))?;
        let run = SessionStream {
            recaller: self.recaller(engine),
            engine: Arc::clone(engine),
            space: init.space.clone(),
            want_indexed: init.want_indexed,
            tx,
            shutdown: self.shutdown.clone(),
            access,
            admission: Arc::clone(&self.recalls),
            connection,
            max_response_bytes: self.limits.max_response_bytes,
        };
        let session = run.run(session, inbound);
        match &self.sessions {
            Some(runtime) => drop(runtime.spawn(session)),
            None => drop(tokio::spawn(session)),
        }
        Ok(Box::pin(ReceiverStream::new(rx)))
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

/// Memories a recall reads in its first hop to the recall threads (see `recall`).
const EAGER_MEMORIES: usize = 256;

type BoxStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Mnemo for MnemoService {
    type ObserveStream = BoxStream<pb::ObserveResponse>;
    type RecallStream = BoxStream<pb::RecallResponse>;
    type ExportStream = BoxStream<pb::ExportResponse>;

    async fn observe(
        &self,
        request: Request<Streaming<pb::ObserveRequest>>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let access = self.access(&request)?;
        let connection = request.remote_addr();
        let inbound = request.into_inner().map(|m| m.map(Incoming::from));
        Ok(Response::new(
            self.start_session(access, connection, Box::pin(inbound))
                .await?,
        ))
    }

    type MemoryStreamStream = BoxStream<pb::MemoryResponse>;

    async fn memory_stream(
        &self,
        request: Request<Streaming<pb::MemoryRequest>>,
    ) -> Result<Response<Self::MemoryStreamStream>, Status> {
        let access = self.access(&request)?;
        let connection = request.remote_addr();
        let inbound = request.into_inner().map(|m| m.map(Incoming::from));
        Ok(Response::new(
            self.start_session(access, connection, Box::pin(inbound))
                .await?,
        ))
    }

    async fn recall(
        &self,
        request: Request<pb::RecallRequest>,
    ) -> Result<Response<Self::RecallStream>, Status> {
        let access = self.access(&request)?;
        let permit = self.admit_recall(&request, &access)?;
        let r = request.into_inner();
        access.check(Right::Read, &r.space)?;
        let engine = Arc::clone(self.engine()?);
        let req = convert::recall_request(&r)?;
        let reading = Reading::new(
            r.batch_size,
            self.limits.max_response_bytes,
            EAGER_MEMORIES,
            EmbeddingForm::of(r.include_embedding, r.packed_embeddings),
        );
        // Batches up to EAGER_MEMORIES memories in all come back with the ranking; a
        // larger k streams on.
        let ranked = self.recaller(&engine).rank(r.space, req, reading).await?;
        let snapshot = ranked.snapshot;
        let message = move |memories: Vec<pb::Memory>, more: bool| pb::RecallResponse {
            memories,
            snapshot_lsn: snapshot,
            more,
        };
        let done = ranked.cursor.is_done();
        let last = ranked.batches.len() - 1;
        let ready: Vec<pb::RecallResponse> = ranked
            .batches
            .into_iter()
            .enumerate()
            .map(|(i, found)| message(found, i < last || !done))
            .collect();
        if done {
            return Ok(Response::new(Box::pin(futures::stream::iter(
                ready.into_iter().map(Ok),
            ))));
        }
        let mut cursor = ranked.cursor;
        let stream = produce(
            self.limits.stream_idle_timeout,
            self.shutdown.clone(),
            |mut out| async move {
                let _permit = permit;
                for msg in ready {
                    if !out.send(Ok(msg)).await {
                        return;
                    }
                }
                loop {
                    // A blocking thread for the read of one batch, never while waiting.
                    let read = tokio::task::spawn_blocking(move || {
                        let found = recall_batches::next_batch(&mut cursor, reading);
                        (cursor, found)
                    })
                    .await;
                    let Ok((back, found)) = read else {
                        let _ = out.send(Err(Status::internal("recall task failed"))).await;
                        return;
                    };
                    cursor = back;
                    let msg = found
                        .map(|found| message(found, !cursor.is_done()))
                        .map_err(status);
                    let last = msg.as_ref().map_or(true, |m| !m.more);
                    if !out.send(msg).await || last {
                        return;
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let access = self.access(&request)?;
        let r = request.into_inner();
        access.check(Right::Read, &r.space)?;
        let engine = Arc::clone(self.engine()?);
        let stream = crate::export::export(engine, r, &self.limits, self.shutdown.clone()).await?;
        Ok(Response::new(Box::pin(stream)))
    }

    async fn remember(
        &self,
        request: Request<pb::RememberRequest>,
    ) -> Result<Response<pb::RememberResponse>, Status> {
        let access = self.access(&request)?;
        let r = request.into_inner();
        access.check(Right::Write, &r.space)?;
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
        let access = self.access(&request)?;
        let _permit = self.admit_recall(&request, &access)?;
        let r = request.into_inner();
        access.check(Right::Read, &r.space)?;
        let engine = Arc::clone(self.engine()?);
        let req = convert::recall_request(&r)?;
        let max = self.limits.max_response_bytes;
        let reading = Reading::new(
            0,
            max,
            1,
            EmbeddingForm::of(r.include_embedding, r.packed_embeddings),
        );
        let mut ranked = self.recaller(&engine).rank(r.space, req, reading).await?;
        if !ranked.cursor.is_done() {
            let fit = ranked.batches.iter().map(Vec::len).sum::<usize>();
            return Err(Status::invalid_argument(format!(
                "the answer exceeds the response limit of {max} bytes after {fit} memories: ask \
                 for fewer (k), leave out embeddings, or use the streaming Recall"
            )));
        }
        Ok(Response::new(pb::RecallOnceResponse {
            memories: ranked.batches.pop().unwrap_or_default(),
            snapshot_lsn: ranked.snapshot,
        }))
    }

    async fn get_memories(
        &self,
        request: Request<pb::GetMemoriesRequest>,
    ) -> Result<Response<pb::GetMemoriesResponse>, Status> {
        let access = self.access(&request)?;
        let r = request.into_inner();
        access.check(Right::Read, &r.space)?;
        let engine = Arc::clone(self.engine()?);
        if r.ids.len() > mnemo_engine::MAX_GET_IDS {
            return Err(Status::invalid_argument(format!(
                "{} ids, the limit is {}",
                r.ids.len(),
                mnemo_engine::MAX_GET_IDS
            )));
        }
        let ids = convert::ids(&r.ids)?;
        let snapshot = (r.snapshot_lsn > 0).then_some(r.snapshot_lsn);
        let with_embedding = EmbeddingForm::of(r.include_embedding, r.packed_embeddings);
        let got = blocking(move || engine.get_memories(&r.space, &ids, snapshot)).await?;
        Ok(Response::new(pb::GetMemoriesResponse {
            memories: got
                .found
                .into_iter()
                .map(|m| convert::memory(m, with_embedding))
                .collect(),
            missing: got.missing.iter().map(ToString::to_string).collect(),
            snapshot_lsn: got.snapshot,
            superseded: got
                .superseded
                .iter()
                .map(|(id, by)| pb::Superseded {
                    id: id.to_string(),
                    superseded_by: by.to_string(),
                })
                .collect(),
        }))
    }

    async fn forget(
        &self,
        request: Request<pb::ForgetRequest>,
    ) -> Result<Response<pb::ForgetResponse>, Status> {
        let access = self.access(&request)?;
        let r = request.into_inner();
        access.check(Right::Write, &r.space)?;
        let engine = Arc::clone(self.engine()?);
        crate::forget::forget(engine, r).await.map(Response::new)
    }

    async fn compact(
        &self,
        request: Request<pb::CompactRequest>,
    ) -> Result<Response<pb::CompactResponse>, Status> {
        let access = self.access(&request)?;
        let r = request.into_inner();
        access.check(Right::Admin, &r.space)?;
        let engine = Arc::clone(self.engine()?);
        crate::forget::compact(engine, r).await.map(Response::new)
    }

    async fn create_space(
        &self,
        request: Request<pb::CreateSpaceRequest>,
    ) -> Result<Response<pb::SpaceInfo>, Status> {
        let access = self.access(&request)?;
        let r = request.into_inner();
        access.check(Right::Admin, &r.name)?;
        let engine = Arc::clone(self.engine()?);
        let info =
            blocking(move || engine.create_space(&r.name, convert::space_config(&r))).await?;
        Ok(Response::new(convert::space_info(&info)))
    }

    async fn list_spaces(
        &self,
        request: Request<pb::ListSpacesRequest>,
    ) -> Result<Response<pb::ListSpacesResponse>, Status> {
        let access = self.access(&request)?;
        let spaces = self
            .engine()?
            .list_spaces()
            .iter()
            .filter(|info| access.sees(&info.name))
            .map(convert::space_info)
            .collect();
        Ok(Response::new(pb::ListSpacesResponse { spaces }))
    }

    async fn describe_space(
        &self,
        request: Request<pb::DescribeSpaceRequest>,
    ) -> Result<Response<pb::DescribeSpaceResponse>, Status> {
        let access = self.access(&request)?;
        let name = request.into_inner().name;
        access.check(Right::Read, &name)?;
        let (info, stats) = self.engine()?.describe_space(&name).map_err(status)?;
        Ok(Response::new(pb::DescribeSpaceResponse {
            info: Some(convert::space_info(&info)),
            stats: Some(convert::space_stats(&stats)),
        }))
    }

    async fn drop_space(
        &self,
        request: Request<pb::DropSpaceRequest>,
    ) -> Result<Response<pb::DropSpaceResponse>, Status> {
        let access = self.access(&request)?;
        let name = request.into_inner().name;
        access.check(Right::Admin, &name)?;
        let engine = Arc::clone(self.engine()?);
        blocking(move || engine.drop_space(&name)).await?;
        Ok(Response::new(pb::DropSpaceResponse {}))
    }

    async fn stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let access = self.access(&request)?;
        let e = self.engine()?;
        let ingest = e.ingest_stats();
        let spaces = e
            .list_spaces()
            .iter()
            .filter(|info| access.sees(&info.name))
            .filter_map(|info| {
                let (_, stats) = e.describe_space(&info.name).ok()?;
                Some(pb::stats_response::Space {
                    info: Some(convert::space_info(info)),
                    stats: Some(convert::space_stats(&stats)),
                })
            })
            .collect();
        let (rss, peak) = crate::rss_bytes();
        let log = e.log_stats();
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
            log_bytes: log.bytes_on_disk,
            disk_free_bytes: log.free_bytes,
            disk_reserve_bytes: e.config().log.min_free_bytes,
            data_bytes: e.data_bytes(),
        }))
    }
}
