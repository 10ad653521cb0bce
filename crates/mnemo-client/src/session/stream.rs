//! [`ObserveStream`]: one opened Observe stream (Init sent, InitAck read), with no
//! policy of its own: send observations, read what the server sends. The session
//! driver builds on it; a client that wants its own policy can too.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::calls::Client;
use crate::error::{Error, Result};
use crate::pb;
use crate::pb::observe_request::Kind as Out;
use crate::pb::observe_response::Kind as In;

/// Messages queued towards the server before `send` waits (HTTP/2 flow control
/// pushes back further).
const OUTBOUND_QUEUE: usize = 1024;

/// An open Observe stream.
pub struct ObserveStream {
    tx: mpsc::Sender<pb::ObserveRequest>,
    inbound: tonic::Streaming<pb::ObserveResponse>,
    init: pb::InitAck,
}

impl std::fmt::Debug for ObserveStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserveStream")
            .field("session_id", &self.init.session_id)
            .finish_non_exhaustive()
    }
}

fn request(kind: Out) -> pb::ObserveRequest {
    pb::ObserveRequest { kind: Some(kind) }
}

impl ObserveStream {
    /// Opens the stream with `init` and reads the server's InitAck.
    pub async fn open(client: &Client, init: pb::Init) -> Result<Self> {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        tx.send(request(Out::Init(init)))
            .await
            .map_err(|_| Error::Protocol("the stream closed before Init".into()))?;
        let mut inbound = client
            .stub()
            .observe(ReceiverStream::new(rx))
            .await?
            .into_inner();
        match inbound.message().await? {
            Some(pb::ObserveResponse {
                kind: Some(In::InitAck(init)),
            }) => Ok(ObserveStream { tx, inbound, init }),
            Some(other) => Err(Error::Protocol(format!(
                "expected InitAck first, got {other:?}"
            ))),
            None => Err(Error::Protocol(
                "the server ended the stream before InitAck".into(),
            )),
        }
    }

    /// What the server answered to Init: session id, next sequence, window, limits.
    pub fn init(&self) -> &pb::InitAck {
        &self.init
    }

    /// Sends one observation (its `sequence` set by the caller).
    pub async fn send(&self, observation: pb::Observation) -> Result<()> {
        self.tx
            .send(request(Out::Observation(observation)))
            .await
            .map_err(|_| Error::Protocol("the stream is closed".into()))
    }

    /// Sends several observations in one message (`ObservationBatch`; the server
    /// must list the `observation_batch` capability).
    pub async fn send_batch(&self, observations: Vec<pb::Observation>) -> Result<()> {
        self.tx
            .send(request(Out::Batch(pb::ObservationBatch { observations })))
            .await
            .map_err(|_| Error::Protocol("the stream is closed".into()))
    }

    /// True if the server listed `capability` in its InitAck.
    pub fn can(&self, capability: &str) -> bool {
        self.init.capabilities.iter().any(|c| c == capability)
    }

    /// Asks the server to close the session once everything sent is acked (and, with
    /// `drain`, indexed); the server answers `Closed`.
    pub async fn close(&self, drain: bool) -> Result<()> {
        self.tx
            .send(request(Out::Close(pb::Close { drain })))
            .await
            .map_err(|_| Error::Protocol("the stream is closed".into()))
    }

    /// Pauses or resumes INDEXED notifications and status messages.
    pub async fn flow_control(&self, pause: bool) -> Result<()> {
        self.tx
            .send(request(Out::FlowControl(pb::FlowControl {
                pause,
                ..Default::default()
            })))
            .await
            .map_err(|_| Error::Protocol("the stream is closed".into()))
    }

    /// The server's next message; `None` once it ended the stream.
    pub async fn next(&mut self) -> Result<Option<In>> {
        loop {
            match self.inbound.message().await? {
                Some(pb::ObserveResponse { kind: Some(k) }) => return Ok(Some(k)),
                Some(pb::ObserveResponse { kind: None }) => continue,
                None => return Ok(None),
            }
        }
    }
}
