//! [`Client`]: one connection and the protocol's calls. Cheap to clone (clones share
//! the connection); safe to use from many tasks at once.

use tokio_stream::StreamExt;

use crate::connect::{ConnectOptions, Stub, connect};
use crate::error::Result;
use crate::pb;
use crate::session::{Feed, SessionEvents, SessionOptions, SessionSummary, drive};

/// A connection to one Mnemo server.
#[derive(Clone)]
pub struct Client {
    stub: Stub,
    options: ConnectOptions,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.options.addr)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects (TLS and API key as `options` say).
    pub async fn connect(options: ConnectOptions) -> Result<Client> {
        let stub = connect(&options).await?;
        Ok(Client { stub, options })
    }

    /// A new connection with the same settings (sessions reconnect through it).
    pub async fn reconnect(&self) -> Result<Client> {
        Client::connect(self.options.clone()).await
    }

    /// A connection with the same settings to another node: `addr` as given, or
    /// with this client's scheme when it has none (`host:port`).
    pub async fn connect_to(&self, addr: &str) -> Result<Client> {
        let mut options = self.options.clone();
        options.addr = if addr.contains("://") {
            addr.to_string()
        } else {
            let scheme = self.options.addr.split("://").next().unwrap_or("http");
            format!("{scheme}://{addr}")
        };
        Client::connect(options).await
    }

    /// The settings this client connected with.
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// The generated stub on this connection, for calls not wrapped here.
    pub fn stub(&self) -> Stub {
        self.stub.clone()
    }

    /// Creates a space (dimension, metric, index parameters: 0 means the default).
    pub async fn create_space(&self, req: pb::CreateSpaceRequest) -> Result<pb::SpaceInfo> {
        Ok(self.stub().create_space(req).await?.into_inner())
    }

    /// The spaces this client may see.
    pub async fn list_spaces(&self) -> Result<Vec<pb::SpaceInfo>> {
        let r = self.stub().list_spaces(pb::ListSpacesRequest {}).await?;
        Ok(r.into_inner().spaces)
    }

    /// One space's settings and counters.
    pub async fn describe_space(&self, name: &str) -> Result<pb::DescribeSpaceResponse> {
        let req = pb::DescribeSpaceRequest { name: name.into() };
        Ok(self.stub().describe_space(req).await?.into_inner())
    }

    /// Drops a space and its data.
    pub async fn drop_space(&self, name: &str) -> Result<()> {
        let req = pb::DropSpaceRequest { name: name.into() };
        self.stub().drop_space(req).await?;
        Ok(())
    }

    /// Stores one observation outside any session; returns once it is durable and
    /// visible (its memory id and LSN).
    pub async fn remember(
        &self,
        space: &str,
        observation: pb::Observation,
    ) -> Result<pb::RememberResponse> {
        let req = pb::RememberRequest {
            space: space.into(),
            observation: Some(observation),
        };
        self.on_owner(|mut stub| {
            let req = req.clone();
            async move { stub.remember(req).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// One recall, answered in a single message.
    pub async fn recall_once(&self, req: pb::RecallRequest) -> Result<pb::RecallOnceResponse> {
        Ok(self.stub().recall_once(req).await?.into_inner())
    }

    /// A streaming recall, its batches gathered: the snapshot LSN and the memories,
    /// best first.
    pub async fn recall(&self, req: pb::RecallRequest) -> Result<(u64, Vec<pb::Memory>)> {
        let mut stream = self.stub().recall(req).await?.into_inner();
        let (mut snapshot, mut out) = (0, Vec::new());
        while let Some(m) = stream.next().await {
            let m = m?;
            snapshot = m.snapshot_lsn;
            out.extend(m.memories);
        }
        Ok((snapshot, out))
    }

    /// Memories by id as of a snapshot (`snapshot_lsn` 0: the latest); ids with no
    /// memory are listed in `missing`.
    pub async fn get_memories(
        &self,
        space: &str,
        ids: Vec<String>,
        snapshot_lsn: u64,
    ) -> Result<pb::GetMemoriesResponse> {
        let req = pb::GetMemoriesRequest {
            space: space.into(),
            ids,
            snapshot_lsn,
            include_embedding: false,
            packed_embeddings: false,
        };
        Ok(self.stub().get_memories(req).await?.into_inner())
    }

    /// Forgets the memories `req` selects (ids, session and filter together: their
    /// intersection); returns how many and the forget's LSN.
    pub async fn forget(&self, req: pb::ForgetRequest) -> Result<pb::ForgetResponse> {
        self.on_owner(|mut stub| {
            let req = req.clone();
            async move { stub.forget(req).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// Runs a write here or, in the distributed mode, on the node a refusal names
    /// as the space's owner (a node that does not own the space writes nothing, so
    /// sending the call there is safe), following at most a few such redirects.
    async fn on_owner<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(Stub) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
    {
        const MAX_REDIRECTS: usize = 3;
        let mut stub = self.stub();
        for _ in 0..MAX_REDIRECTS {
            match call(stub).await {
                Ok(v) => return Ok(v),
                Err(st) => match crate::error::owner_of(&st) {
                    Some(owner) => stub = self.connect_to(&owner).await?.stub(),
                    None => return Err(st.into()),
                },
            }
        }
        Ok(call(stub).await?)
    }

    /// Purges and compacts a space now (needs the admin right).
    pub async fn compact(&self, space: &str) -> Result<pb::CompactResponse> {
        let req = pb::CompactRequest {
            space: space.into(),
        };
        Ok(self.stub().compact(req).await?.into_inner())
    }

    /// Server counters and pressure.
    pub async fn stats(&self) -> Result<pb::StatsResponse> {
        Ok(self.stub().stats(pb::StatsRequest {}).await?.into_inner())
    }

    /// Every memory of a snapshot in LSN order, as a stream of batches.
    pub async fn export(
        &self,
        req: pb::ExportRequest,
    ) -> Result<tonic::Streaming<pb::ExportResponse>> {
        Ok(self.stub().export(req).await?.into_inner())
    }

    /// Streams `feed` into a space through one Observe session until the feed ends
    /// and every observation is acked (see [`crate::session`]).
    pub async fn observe(
        &self,
        options: SessionOptions,
        feed: &mut dyn Feed,
        events: &mut dyn SessionEvents,
    ) -> Result<SessionSummary> {
        drive(self, options, feed, events).await
    }
}
