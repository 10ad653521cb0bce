//! One node of the cluster: its NATS connection, partitions and background tasks.

use async_nats::jetstream::{self, kv, stream};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use mnemo_engine::{ClusterHooks, Engine, EngineConfig, Replicator, SharedCatalog};

use crate::catalog::Catalog;
use crate::checkpoints::{CheckpointConfig, Checkpoints};
use crate::config::ClusterConfig;
use crate::error::{ClusterError, nats};
use crate::shared_log::Role;

/// Room left in a message for its headers (message id, expected sequence).
const HEADER_ROOM: usize = 4 << 10;

/// A partition as this node sees it.
pub(crate) struct Partition {
    pub(crate) no: u32,
    pub(crate) stream: String,
    pub(crate) subject: String,
    /// The highest stream sequence whose frames are in the local log.
    pub(crate) applied: AtomicU64,
    pub(crate) role: Mutex<Role>,
}

/// State shared by the hooks the engine calls and the background tasks.
pub(crate) struct Node {
    pub(crate) config: ClusterConfig,
    pub(crate) js: jetstream::Context,
    pub(crate) partitions: Vec<Partition>,
    pub(crate) catalog: Catalog,
    pub(crate) leases: kv::Store,
    pub(crate) handle: tokio::runtime::Handle,
    /// Checkpoints in object storage, if configured.
    pub(crate) checkpoints: Option<Arc<Checkpoints>>,
}

impl Node {
    /// Runs `fut` on the cluster's runtime and waits for it from a plain thread
    /// (the engine's log writer, a blocking request). `None` if the runtime is gone.
    pub(crate) fn run_sync<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().ok()
    }

    /// Steps down from every partition and deletes the lease keys still held.
    pub(crate) async fn release_leases(self: Arc<Self>) {
        let mut held = Vec::new();
        for (p, part) in self.partitions.iter().enumerate() {
            let mut role = part.role.lock();
            if let Role::Owner { revision, .. } = *role {
                held.push((p, revision));
            }
            *role = Role::Follower { owner: None };
            crate::metrics::owner(p, false);
        }
        for (p, revision) in held {
            // Only if still ours: a newer revision means another node has it.
            match self
                .leases
                .delete_expect_revision(format!("p{p}"), Some(revision))
                .await
            {
                Ok(()) => tracing::info!(partition = p, "lease released"),
                Err(e) => tracing::warn!(partition = p, error = %e, "releasing the lease"),
            }
        }
    }

    /// The spaces of partition `p` known here.
    pub(crate) fn spaces_of(&self, engine: &Engine, p: usize) -> Vec<mnemo_engine::SpaceInfo> {
        engine
            .list_spaces()
            .into_iter()
            .filter(|s| self.catalog.partition_of(s.no) as usize == p)
            .collect()
    }

    /// The state of partition `p`'s stream now (its first and last sequences).
    pub(crate) async fn stream_state(&self, p: usize) -> Result<stream::State, String> {
        let mut s = self
            .js
            .get_stream(&self.partitions[p].stream)
            .await
            .map_err(|e| e.to_string())?;
        Ok(s.info().await.map_err(|e| e.to_string())?.state.clone())
    }

    pub(crate) fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.config.lease_ttl_ms)
    }
}

/// A running node: the NATS connection and the tasks that follow the partitions,
/// hold leases and watch the catalog. Dropping it stops them.
pub struct Cluster {
    node: Arc<Node>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node.config.node_id)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to NATS, creates the streams and buckets if this is the first node,
    /// and opens the engine on `engine` as a node of the cluster. Call
    /// [`Cluster::run`] with the engine (shared) to start following and leasing.
    pub fn open(
        config: ClusterConfig,
        checkpoints: &CheckpointConfig,
        mut engine: EngineConfig,
    ) -> Result<(Cluster, Engine), ClusterError> {
        config.validate().map_err(ClusterError::Config)?;
        // The local log is this node's copy of the shared log, which is the durable
        // one (JetStream with `sync_interval: always`): a tail lost to a power cut
        // is followed again from the stream, so the copy is not fsynced.
        engine.log.durability = mnemo_engine::Durability::Buffered;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mnemo-cluster")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::Nats(format!("starting the cluster runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let mut node = runtime.block_on(connect(config, handle))?;
        // One group commit is one message: it must fit the server's message limit.
        let max_payload = node.js.client().max_payload();
        engine.log.max_batch_bytes = engine
            .log
            .max_batch_bytes
            .min(max_payload.saturating_sub(HEADER_ROOM).max(4096));
        if checkpoints.enabled() {
            node.checkpoints = Some(Arc::new(Checkpoints::open(checkpoints)?));
        }
        let node = Arc::new(node);
        let hooks = ClusterHooks {
            replicator: Arc::new(Hooks(Arc::clone(&node))) as Arc<dyn Replicator>,
            catalog: Arc::new(Hooks(Arc::clone(&node))) as Arc<dyn SharedCatalog>,
        };
        let engine = Engine::open_clustered(engine, hooks)?;
        // The spaces created elsewhere while this node was away, before serving.
        runtime.block_on(node.catalog.sync(&engine))?;
        Ok((
            Cluster {
                node,
                runtime: Some(runtime),
            },
            engine,
        ))
    }

    /// Starts following every partition into `engine`, watching the catalog, and
    /// (once caught up) competing for partition leases.
    pub fn run(&self, engine: Arc<Engine>) {
        let Some(rt) = &self.runtime else { return };
        rt.spawn(crate::catalog::watch(
            Arc::clone(&self.node),
            Arc::clone(&engine),
        ));
        for p in 0..self.node.partitions.len() {
            rt.spawn(crate::follower::follow(
                Arc::clone(&self.node),
                Arc::clone(&engine),
                p,
            ));
            rt.spawn(crate::lease::hold(Arc::clone(&self.node), p));
        }
        if let Some(ck) = &self.node.checkpoints {
            rt.spawn(crate::checkpoints::upload_loop(
                Arc::clone(&self.node),
                Arc::clone(&engine),
                Arc::clone(ck),
            ));
        }
    }

    /// Gives up the leases this node holds, so the other nodes take its partitions
    /// over at their next check instead of after the lease TTL. Call after the
    /// engine is closed (nothing more can be written through this node).
    pub fn leave(&self) {
        let Some(rt) = &self.runtime else { return };
        rt.block_on(Arc::clone(&self.node).release_leases());
    }

    /// The partitions this node writes now.
    pub fn owned(&self) -> Vec<u32> {
        self.node
            .partitions
            .iter()
            .filter(|p| p.role.lock().is_owner_now())
            .map(|p| p.no)
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &self.node.partitions {
            *p.role.lock() = Role::Follower { owner: None };
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The engine's view of the node: the shared log and the shared catalog.
pub(crate) struct Hooks(pub(crate) Arc<Node>);

pub(crate) async fn connect(
    config: ClusterConfig,
    handle: tokio::runtime::Handle,
) -> Result<Node, ClusterError> {
    // Not retried at start: a node that cannot reach NATS says so and exits (a
    // service manager restarts it); once connected, the client reconnects itself.
    let (options, shown) = nats_options(&config)?;
    let client = options
        .connect(config.nats.as_str())
        .await
        .map_err(|e| nats(&format!("connecting to {shown}"), e))?;
    let js = jetstream::new(client);
    let prefix = &config.prefix;
    let catalog_kv = bucket(
        &js,
        &config,
        &format!("{prefix}_catalog"),
        Duration::ZERO,
        1,
    )
    .await?;
    let leases = bucket(
        &js,
        &config,
        &format!("{prefix}_leases"),
        Duration::from_millis(config.lease_ttl_ms),
        1,
    )
    .await?;
    let catalog = Catalog::new(catalog_kv, config.partitions);
    catalog.agree_partitions(config.partitions).await?;
    let mut partitions = Vec::new();
    for no in 0..config.partitions {
        let name = format!("{prefix}_log_{no}");
        let subject = format!("{prefix}.log.{no}");
        js.get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            // Retried appends carry their message id; the window only needs to
            // outlast the settling of one append.
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            max_message_size: 16 << 20,
            ..Default::default()
        })
        .await
        .map_err(|e| nats(&format!("creating stream {name}"), e))?;
        partitions.push(Partition {
            no,
            stream: name,
            subject,
            applied: AtomicU64::new(0),
            role: Mutex::new(Role::Follower { owner: None }),
        });
    }
    Ok(Node {
        config,
        js,
        partitions,
        catalog,
        leases,
        handle,
        checkpoints: None,
    })
}

/// The connection options for `config.nats`, with the credentials its URLs carry
/// (`nats://user:password@host`, or `nats://token@host`), and the URLs as they may be
/// shown (credentials masked).
fn nats_options(
    config: &ClusterConfig,
) -> Result<(async_nats::ConnectOptions, String), ClusterError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("mnemo-{}", config.node_id))
        .connection_timeout(Duration::from_secs(5));
    let mut shown = Vec::new();
    for url in config.nats.split(',').map(str::trim) {
        let addr: async_nats::ServerAddr = url
            .parse()
            .map_err(|e| ClusterError::Config(format!("cluster.nats: {e}")))?;
        match (addr.username(), addr.password()) {
            (Some(user), Some(password)) => {
                options = options.user_and_password(user.to_string(), password.to_string());
            }
            (Some(token), None) => options = options.token(token.to_string()),
            _ => {}
        }
        shown.push(format!(
            "{}://{}:{}",
            addr.scheme(),
            addr.host(),
            addr.port()
        ));
    }
    Ok((options, shown.join(",")))
}

async fn bucket(
    js: &jetstream::Context,
    config: &ClusterConfig,
    name: &str,
    max_age: Duration,
    history: i64,
) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: name.to_string(),
        history,
        max_age,
        num_replicas: config.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| nats(&format!("creating bucket {name}"), e))
}

#[cfg(test)]
mod tests;
