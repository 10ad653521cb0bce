//! The `mnemo.v1.Mnemo` service: thin handlers over the engine. Recalls rank on
//! the recall threads (`recall_batches.rs`); other blocking engine calls run on
//! tokio's blocking pool (`offload.rs`); sessions are `stream.rs`.

use futures::StreamExt;
use mnemo_engine::{Engine, Error};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Access, Auth, Right};
use crate::convert::{self, status};
use crate::offload::blocking;
use crate::pb;
use crate::pb::mnemo_server::Mnemo;
use crate::recall_batches::{self, Reading};
use crate::stream::{Inbound, Incoming, SessionStream, Wire};

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
    auth: Arc<Auth>,
    /// Flips to true when the server shuts down: open streams end with UNAVAILABLE.
    shutdown: watch::Receiver<bool>,
    /// Where recalls rank (none: the blocking pool).
    recall_pool: Option<Arc<crate::RecallPool>>,
    /// Where Observe and MemoryStream sessions run (none: the serving runtime).
    sessions: Option<tokio::runtime::Handle>,
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
        self.recall_pool = pool;
        self
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
            ],
            limits: Some(self.limits_message(engine)),
        };
        tx.send(Ok(W::init_ack(ack)))
            .await
            .map_err(|_| Status::cancelled("client went away"))?;
        let run = SessionStream {
            engine: Arc::clone(engine),
            space: init.space.clone(),
            want_indexed: init.want_indexed,
            tx,
            shutdown: self.shutdown.clone(),
            access,
            recall_pool: self.recall_pool.clone(),
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
        let inbound = request.into_inner().map(|m| m.map(Incoming::from));
        Ok(Response::new(
            self.start_session(access, Box::pin(inbound)).await?,
        ))
    }

    type MemoryStreamStream = BoxStream<pb::MemoryResponse>;

    async fn memory_stream(
        &self,
        request: Request<Streaming<pb::MemoryRequest>>,
    ) -> Result<Response<Self::MemoryStreamStream>, Status> {
        let access = self.access(&request)?;
        let inbound = request.into_inner().map(|m| m.map(Incoming::from));
        Ok(Response::new(
            self.start_session(access, Box::pin(inbound)).await?,
        ))
    }

    async fn recall(
        &self,
        request: Request<pb::RecallRequest>,
    ) -> Result<Response<Self::RecallStream>, Status> {
        let access = self.access(&request)?;
        let r = request.into_inner();
        access.check(Right::Read, &r.space)?;
        let engine = Arc::clone(self.engine()?);
        let req = convert::recall_request(&r);
        let reading = Reading::new(r.batch_size, EAGER_MEMORIES, r.include_embedding);
        // Batches up to EAGER_MEMORIES memories in all come back with the ranking; a
        // larger k streams on.
        let ranked =
            recall_batches::rank(engine, self.recall_pool.as_ref(), r.space, req, reading).await?;
        let snapshot = ranked.snapshot;
        let message = move |memories: Vec<pb::Memory>, more: bool| pb::RecallResponse {
            memories,
            snapshot_lsn: snapshot,
            more,
        };
        let done = ranked.cursor.is_done();
        let last = ranked.batches.len() - 1;
        let ready: Vec<Result<pb::RecallResponse, Status>> = ranked
            .batches
            .into_iter()
            .enumerate()
            .map(|(i, found)| Ok(message(found, i < last || !done)))
            .collect();
        if done {
            return Ok(Response::new(Box::pin(futures::stream::iter(ready))));
        }
        let (tx, rx) = mpsc::channel(4);
        let mut cursor = ranked.cursor;
        tokio::task::spawn_blocking(move || {
            for msg in ready {
                if tx.blocking_send(msg).is_err() {
                    return;
                }
            }
            loop {
                let msg = recall_batches::next_batch(&mut cursor, reading)
                    .map(|found| message(found, !cursor.is_done()));
                let last = msg.as_ref().map_or(true, |m| !m.more);
                if tx.blocking_send(msg.map_err(status)).is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let access = self.access(&request)?;
        let r = request.into_inner();
        access.check(Right::Read, &r.space)?;
        let engine = Arc::clone(self.engine()?);
        let snapshot = if r.snapshot_lsn == 0 {
            engine.snapshot(&r.space).map_err(status)?
        } else {
            r.snapshot_lsn
        };
        let batch = match r.batch_size {
            0 => 256,
            n => n.min(4096) as usize,
        };
        // The first batch is read here so that a bad request fails the call itself.
        let space = r.space;
        let first = {
            let (engine, space) = (Arc::clone(&engine), space.clone());
            blocking(move || engine.export(&space, r.after_lsn, snapshot, batch)).await?
        };
        let with_embedding = r.include_embedding;
        let (tx, rx) = mpsc::channel(4);
        // A bounded channel: a slow reader holds at most a few batches here.
        tokio::task::spawn_blocking(move || {
            let mut found = Ok(first);
            let mut after = r.after_lsn;
            loop {
                let msg = found.map(|memories| {
                    after = memories.last().map_or(snapshot, |m| m.lsn);
                    pb::ExportResponse {
                        memories: memories
                            .into_iter()
                            .map(|m| convert::memory(m, with_embedding))
                            .collect(),
                        snapshot_lsn: snapshot,
                        more: after < snapshot,
                    }
                });
                let last = msg.as_ref().map_or(true, |m| !m.more);
                if tx.blocking_send(msg.map_err(status)).is_err() || last {
                    return;
                }
                found = engine.export(&space, after, snapshot, batch);
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
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
        let r = request.into_inner();
        access.check(Right::Read, &r.space)?;
        let engine = Arc::clone(self.engine()?);
        let req = convert::recall_request(&r);
        let reading = Reading::new(0, usize::MAX, r.include_embedding);
        let ranked =
            recall_batches::rank(engine, self.recall_pool.as_ref(), r.space, req, reading).await?;
        Ok(Response::new(pb::RecallOnceResponse {
            memories: ranked.batches.into_iter().flatten().collect(),
            snapshot_lsn: ranked.snapshot,
        }))
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
        }))
    }
}
