//! One session stream after Init, shared by `Observe` and `MemoryStream`: a task
//! that selects over the client's messages, acks due (in sequence order), INDEXED
//! notifications, recall results (MemoryStream), pressure changes and shutdown.
//! The outbound channel is bounded, so a client that stops reading stops the task
//! from reading further requests (HTTP/2 flow control then pushes back on it).

use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::{FutureExt, Stream, StreamExt};
use mnemo_engine::{AckKind, Engine, Error, Session};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use crate::convert::{self, EmbeddingForm, status};
use crate::indexed_watch::IndexedWatch;
use crate::offload::blocking;
use crate::pb;
use crate::recall_admission::RecallAdmission;
use crate::recall_batches::{Reading, Recaller};

/// What the client sent, whichever stream it came on.
pub(crate) enum Incoming {
    Observation(pb::Observation),
    /// An `ObservationBatch`'s observations.
    Batch(Vec<pb::Observation>),
    Recall(pb::RecallQuery),
    FlowControl(pb::FlowControl),
    Close(pb::Close),
    /// Init: the first message of a stream; anywhere else an error.
    Init(pb::Init),
    /// A message with no kind.
    Empty,
}

impl From<pb::ObserveRequest> for Incoming {
    fn from(m: pb::ObserveRequest) -> Self {
        use pb::observe_request::Kind;
        match m.kind {
            Some(Kind::Observation(o)) => Incoming::Observation(o),
            Some(Kind::Batch(b)) => Incoming::Batch(b.observations),
            Some(Kind::FlowControl(f)) => Incoming::FlowControl(f),
            Some(Kind::Close(c)) => Incoming::Close(c),
            Some(Kind::Init(i)) => Incoming::Init(i),
            None => Incoming::Empty,
        }
    }
}

impl From<pb::MemoryRequest> for Incoming {
    fn from(m: pb::MemoryRequest) -> Self {
        use pb::memory_request::Kind;
        match m.kind {
            Some(Kind::Observation(o)) => Incoming::Observation(o),
            Some(Kind::Batch(b)) => Incoming::Batch(b.observations),
            Some(Kind::Recall(q)) => Incoming::Recall(q),
            Some(Kind::FlowControl(f)) => Incoming::FlowControl(f),
            Some(Kind::Close(c)) => Incoming::Close(c),
            Some(Kind::Init(i)) => Incoming::Init(i),
            None => Incoming::Empty,
        }
    }
}

/// The server's messages of one stream type.
pub(crate) trait Wire: Send + 'static {
    fn init_ack(a: pb::InitAck) -> Self;
    fn acks(acks: Vec<pb::Ack>) -> Self;
    fn status(s: pb::StreamStatus) -> Self;
    fn closed(c: pb::Closed) -> Self;
    /// `None` where the stream has no recall results (Observe).
    fn recall(r: pb::RecallResult) -> Option<Self>
    where
        Self: Sized;
}

impl Wire for pb::ObserveResponse {
    fn init_ack(a: pb::InitAck) -> Self {
        Self {
            kind: Some(pb::observe_response::Kind::InitAck(a)),
        }
    }
    fn acks(acks: Vec<pb::Ack>) -> Self {
        use pb::observe_response::Kind;
        Self {
            kind: Some(Kind::Acks(pb::AckBatch { acks })),
        }
    }
    fn status(s: pb::StreamStatus) -> Self {
        Self {
            kind: Some(pb::observe_response::Kind::Status(s)),
        }
    }
    fn closed(c: pb::Closed) -> Self {
        Self {
            kind: Some(pb::observe_response::Kind::Closed(c)),
        }
    }
    fn recall(_: pb::RecallResult) -> Option<Self> {
        None
    }
}

impl Wire for pb::MemoryResponse {
    fn init_ack(a: pb::InitAck) -> Self {
        Self {
            kind: Some(pb::memory_response::Kind::InitAck(a)),
        }
    }
    fn acks(acks: Vec<pb::Ack>) -> Self {
        Self {
            kind: Some(pb::memory_response::Kind::Acks(pb::AckBatch { acks })),
        }
    }
    fn status(s: pb::StreamStatus) -> Self {
        Self {
            kind: Some(pb::memory_response::Kind::Status(s)),
        }
    }
    fn closed(c: pb::Closed) -> Self {
        Self {
            kind: Some(pb::memory_response::Kind::Closed(c)),
        }
    }
    fn recall(r: pb::RecallResult) -> Option<Self> {
        Some(Self {
            kind: Some(pb::memory_response::Kind::Recall(r)),
        })
    }
}

/// Most recalls of one MemoryStream running or waiting to be sent.
const MAX_RECALLS_PENDING: usize = 16;
/// Most observations in one `ObservationBatch` (more ends the stream: INVALID_ARGUMENT).
pub const MAX_BATCH_OBSERVATIONS: usize = 4096;
/// Inbound messages a session handles before it lets other tasks on its thread run.
const MESSAGES_PER_POLL: usize = 32;

/// An ack to send, or the status that ends the stream (distributed mode: this node
/// no longer writes the space, and the client must go to the owner).
type AckFuture = Pin<Box<dyn futures::Future<Output = Result<pb::Ack, Status>> + Send>>;

/// Refusals that end an Observe stream instead of rejecting one item: the client
/// reconnects (to the owner the status names) and resumes its session there.
fn ends_stream(e: &Error) -> bool {
    matches!(e, Error::NotOwner { .. } | Error::ClusterUnavailable(_))
}
type RecallFuture = Pin<Box<dyn futures::Future<Output = Vec<pb::RecallResult>> + Send>>;

pub(crate) type Inbound = Pin<Box<dyn Stream<Item = Result<Incoming, Status>> + Send>>;

pub(crate) struct SessionStream<W> {
    pub(crate) engine: Arc<Engine>,
    pub(crate) space: String,
    pub(crate) want_indexed: bool,
    pub(crate) tx: mpsc::Sender<Result<W, Status>>,
    /// The caller's rights: recalls inside the stream may name other spaces.
    pub(crate) access: crate::auth::Access,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Recalls made in the stream: admitted, waited and ranked as plain Recall calls are.
    pub(crate) recaller: Recaller,
    pub(crate) admission: Arc<RecallAdmission>,
    pub(crate) connection: Option<std::net::SocketAddr>,
    /// Byte budget of one recall's results in all.
    pub(crate) max_response_bytes: usize,
}

impl<W: Wire> SessionStream<W> {
    async fn send(&self, msg: W) -> bool {
        self.tx.send(Ok(msg)).await.is_ok()
    }

    async fn fail(&self, st: Status) {
        let _ = self.tx.send(Err(st)).await;
    }

    pub(crate) async fn run(self, session: Session, mut inbound: Inbound) {
        let mut session = Some(session);
        let mut pending: FuturesOrdered<AckFuture> = FuturesOrdered::new();
        let mut indexed = IndexedWatch::new(
            Arc::clone(&self.engine),
            self.space.clone(),
            session
                .as_ref()
                .map(|s| s.id().to_string())
                .unwrap_or_default(),
        );
        let mut recalls: FuturesUnordered<RecallFuture> = FuturesUnordered::new();
        let mut pressure = self.engine.subscribe_pressure();
        let mut paused = false;
        let mut shutdown = self.shutdown.clone();
        let mut since_yield = 0;
        loop {
            tokio::select! {
                msg = inbound.next() => {
                    let msg = match msg {
                        Some(Ok(m)) => m,
                        // The client half-closed or went away: finish the acks in flight.
                        None | Some(Err(_)) => break,
                    };
                    // A stream with a full window queued would otherwise take it all in
                    // one poll, and other tasks on this thread (a recall's reply) wait.
                    since_yield += 1;
                    if since_yield == MESSAGES_PER_POLL {
                        since_yield = 0;
                        tokio::task::yield_now().await;
                    }
                    match msg {
                        Incoming::Observation(o) => {
                            let ack = match session.as_ref() {
                                Some(s) => self.submit(s, o, &mut pending),
                                None => Ok(Some(convert::rejected(o.sequence, &Error::SessionClosed { session: String::new(), why: "closed" }))),
                            };
                            let ack = match ack {
                                Ok(ack) => ack,
                                Err(st) => { self.end(&mut pending, st).await; return; }
                            };
                            if let Some(rejected) = ack
                                && !self.send(W::acks(vec![rejected])).await
                            {
                                return;
                            }
                        }
                        Incoming::Batch(batch) => {
                            if batch.len() > MAX_BATCH_OBSERVATIONS {
                                self.fail(Status::invalid_argument(format!(
                                    "an ObservationBatch of {} observations: at most {MAX_BATCH_OBSERVATIONS}",
                                    batch.len()
                                ))).await;
                                return;
                            }
                            let mut refused = Vec::new();
                            for o in batch {
                                let ack = match session.as_ref() {
                                    Some(s) => self.submit(s, o, &mut pending),
                                    None => Ok(Some(convert::rejected(o.sequence, &Error::SessionClosed { session: String::new(), why: "closed" }))),
                                };
                                match ack {
                                    Ok(ack) => refused.extend(ack),
                                    Err(st) => {
                                        if !refused.is_empty() && !self.send(W::acks(refused)).await { return; }
                                        self.end(&mut pending, st).await;
                                        return;
                                    }
                                }
                            }
                            if !refused.is_empty() && !self.send(W::acks(refused)).await {
                                return;
                            }
                        }
                        Incoming::Recall(q) => {
                            if recalls.len() >= MAX_RECALLS_PENDING {
                                let busy = refused_recall(q.request_id, &Status::resource_exhausted(format!("more than {MAX_RECALLS_PENDING} recalls in flight on this stream")));
                                if let Some(m) = W::recall(busy) && !self.send(m).await { return; }
                            } else {
                                recalls.push(self.recall(q));
                            }
                        }
                        Incoming::FlowControl(f) => {
                            paused = f.pause;
                            if !paused {
                                let status = convert::stream_status(&pressure.borrow_and_update());
                                if !self.send(W::status(status)).await { return; }
                            }
                        }
                        Incoming::Close(c) => {
                            // Acks of everything sent first, then the close.
                            while let Some(a) = pending.next().await {
                                let a = match a {
                                    Ok(a) => a,
                                    Err(st) => { self.end(&mut pending, st).await; return; }
                                };
                                if !self.send(W::acks(vec![a])).await { return; }
                            }
                            let result = match session.take() {
                                Some(s) => blocking(move || s.close(c.drain, Duration::from_secs(60))).await,
                                None => Err(Status::failed_precondition("the session is already closed")),
                            };
                            match result {
                                Ok(final_sequence) => { let _ = self.send(W::closed(pb::Closed { final_sequence })).await; }
                                Err(st) => self.fail(st).await,
                            }
                            return;
                        }
                        Incoming::Init(_) => {
                            self.fail(Status::invalid_argument("Init may only be the first message")).await;
                            return;
                        }
                        Incoming::Empty => {
                            self.fail(Status::invalid_argument("a request message with no content")).await;
                            return;
                        }
                    }
                }
                Some(first) = pending.next(), if !pending.is_empty() => {
                    let mut ended = None;
                    let mut batch = Vec::new();
                    match first {
                        Ok(a) => batch.push(a),
                        Err(st) => ended = Some(st),
                    }
                    while ended.is_none() && let Some(Some(a)) = pending.next().now_or_never() {
                        match a {
                            Ok(a) => batch.push(a),
                            Err(st) => ended = Some(st),
                        }
                    }
                    if let Some(st) = ended {
                        if !batch.is_empty() && !self.send(W::acks(batch)).await { return; }
                        self.end(&mut pending, st).await;
                        return;
                    }
                    if self.want_indexed {
                        for a in &batch {
                            if a.status == pb::AckStatus::Accepted as i32 {
                                indexed.accepted(a.sequence);
                            }
                        }
                    }
                    if !self.send(W::acks(batch)).await { return; }
                }
                a = indexed.next(), if !paused && indexed.pending() => {
                    indexed.announced(a.sequence);
                    if !self.send(W::acks(vec![a])).await { return; }
                }
                Some(results) = recalls.next(), if !paused && !recalls.is_empty() => {
                    for r in results {
                        if let Some(m) = W::recall(r) && !self.send(m).await { return; }
                    }
                }
                changed = pressure.changed() => {
                    if changed.is_err() { return; }
                    if !paused {
                        let status = convert::stream_status(&pressure.borrow_and_update());
                        if !self.send(W::status(status)).await { return; }
                    }
                }
                _ = shutdown.changed() => {
                    while let Some(Some(Ok(a))) = pending.next().now_or_never() {
                        let _ = self.send(W::acks(vec![a])).await;
                    }
                    self.fail(status(Error::ShuttingDown)).await;
                    return;
                }
            }
        }
        while let Some(a) = pending.next().await {
            let a = match a {
                Ok(a) => a,
                Err(st) => {
                    self.end(&mut pending, st).await;
                    return;
                }
            };
            if !self.send(W::acks(vec![a])).await {
                return;
            }
        }
    }

    /// Ends the stream with `st`, after the acks of what did commit before it.
    async fn end(&self, pending: &mut FuturesOrdered<AckFuture>, st: Status) {
        while let Some(a) = pending.next().await {
            if let Ok(a) = a
                && !self.send(W::acks(vec![a])).await
            {
                return;
            }
        }
        self.fail(st).await;
    }

    /// Submits one observation; a refusal comes back as the REJECTED ack to send.
    fn submit(
        &self,
        session: &Session,
        o: pb::Observation,
        pending: &mut FuturesOrdered<AckFuture>,
    ) -> Result<Option<pb::Ack>, Status> {
        let seq = o.sequence;
        let lane = convert::lane(o.lane);
        let obs = match convert::observation(o) {
            Ok(obs) => obs,
            Err(st) => {
                return Ok(Some(convert::rejected(
                    seq,
                    &Error::InvalidArgument(st.message().to_string()),
                )));
            }
        };
        match session.observe(seq, obs, lane) {
            Ok(ticket) => {
                pending.push_back(Box::pin(async move {
                    match ticket.await {
                        Ok(a) => Ok(pb::Ack {
                            sequence: a.seq,
                            // Nil: a duplicate of a memory forgotten and compacted away.
                            memory_id: if a.id.is_nil() {
                                String::new()
                            } else {
                                a.id.to_string()
                            },
                            lsn: a.lsn,
                            status: match a.kind {
                                AckKind::Accepted => pb::AckStatus::Accepted,
                                AckKind::Duplicate => pb::AckStatus::Duplicate,
                            } as i32,
                            ..Default::default()
                        }),
                        Err(e) if ends_stream(&e) => Err(status(e)),
                        Err(e) => Ok(convert::rejected(seq, &e)),
                    }
                }));
                Ok(None)
            }
            Err(e) if ends_stream(&e) => Err(status(e)),
            Err(e) => Ok(Some(convert::rejected(seq, &e))),
        }
    }

    /// Runs one recall query on the recall threads (or the blocking pool); its results
    /// come back tagged.
    fn recall(&self, q: pb::RecallQuery) -> RecallFuture {
        let mut req = q.request.unwrap_or_default();
        if req.space.is_empty() {
            req.space.clone_from(&self.space);
        }
        let id = q.request_id;
        if let Err(denied) = self.access.check(crate::auth::Right::Read, &req.space) {
            return Box::pin(async move { vec![refused_recall(id, &denied)] });
        }
        let permit = match self
            .admission
            .admit(self.connection, self.access.key_name())
        {
            Ok(p) => p,
            Err(busy) => return Box::pin(async move { vec![refused_recall(id, &busy)] }),
        };
        let spec = match convert::recall_request(&req) {
            Ok(spec) => spec,
            Err(bad) => return Box::pin(async move { vec![refused_recall(id, &bad)] }),
        };
        // The whole answer is built before it is sent: it must fit in the budget.
        let max = self.max_response_bytes;
        let form = EmbeddingForm::of(req.include_embedding, req.packed_embeddings);
        let reading = Reading::new(req.batch_size, max, usize::MAX, form).total_bytes(max);
        let recaller = self.recaller.clone();
        Box::pin(async move {
            let _permit = permit;
            let ranked = match recaller.rank(req.space, spec, reading).await {
                Ok(r) if !r.cursor.is_done() => {
                    let too_big = Status::invalid_argument(format!(
                        "the answer exceeds the response limit of {max} bytes: ask for fewer (k), \
                         leave out embeddings, or use the streaming Recall"
                    ));
                    return vec![refused_recall(id, &too_big)];
                }
                Ok(r) => r,
                Err(st) => return vec![refused_recall(id, &st)],
            };
            let last = ranked.batches.len() - 1;
            ranked
                .batches
                .into_iter()
                .enumerate()
                .map(|(i, memories)| pb::RecallResult {
                    request_id: id.clone(),
                    memories,
                    snapshot_lsn: ranked.snapshot,
                    more: i < last,
                    ..Default::default()
                })
                .collect()
        })
    }
}

/// The canonical gRPC name of a status code (as in `grpc/status.proto`).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

fn refused_recall(request_id: String, st: &Status) -> pb::RecallResult {
    pb::RecallResult {
        request_id,
        error_code: code_name(st.code()).to_string(),
        error: st.message().to_string(),
        ..Default::default()
    }
}
