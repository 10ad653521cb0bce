//! The shared catalog: a key-value bucket with `space.<name>` → the space's
//! number, settings and partition; `next-no` (space numbers are allocated by
//! compare-and-set and never reused); `dropped.<no>` for dropped spaces (their
//! frames still in the streams are skipped); `partitions`, fixed by the first node.

use async_nats::jetstream::kv;
use futures::StreamExt;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use mnemo_engine::internals::decode_frame;
use mnemo_engine::{Engine, Error, SharedCatalog, SpaceConfig, SpaceInfo, SpaceNo, now_us};

use crate::error::{ClusterError, nats};
use crate::node::{Hooks, Node};

/// What `space.<name>` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    info: SpaceInfo,
    partition: u32,
}

pub(crate) struct Catalog {
    kv: kv::Store,
    partitions: u32,
    /// Space number → partition, for the spaces adopted here.
    assigned: RwLock<HashMap<u32, u32>>,
    dropped: RwLock<HashSet<u32>>,
}

impl Catalog {
    pub(crate) fn new(kv: kv::Store, partitions: u32) -> Self {
        Catalog {
            kv,
            partitions,
            assigned: RwLock::default(),
            dropped: RwLock::default(),
        }
    }

    /// Records the partition count, or checks it against the one recorded.
    pub(crate) async fn agree_partitions(&self, partitions: u32) -> Result<(), ClusterError> {
        let mine: bytes::Bytes = partitions.to_string().into();
        if self.kv.create("partitions", mine).await.is_ok() {
            return Ok(());
        }
        let have = self
            .kv
            .get("partitions")
            .await
            .map_err(|e| nats("reading the partition count", e))?
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u32>().ok());
        match have {
            Some(n) if n == partitions => Ok(()),
            Some(n) => Err(ClusterError::Mismatch(format!(
                "the cluster has {n} partitions; this node is configured with {partitions}"
            ))),
            None => Err(ClusterError::Mismatch("unreadable partition count".into())),
        }
    }

    pub(crate) fn partition_of(&self, space: SpaceNo) -> u32 {
        self.assigned
            .read()
            .get(&space.0)
            .copied()
            .unwrap_or(space.0 % self.partitions)
    }

    /// `payload`'s frames without those of dropped spaces.
    pub(crate) fn without_dropped(&self, payload: &[u8]) -> Vec<u8> {
        let dropped = self.dropped.read();
        if dropped.is_empty() {
            return payload.to_vec();
        }
        let mut out = Vec::with_capacity(payload.len());
        let mut at = 0;
        while at < payload.len() {
            let Ok(f) = decode_frame(&payload[at..]) else {
                // Left for the engine to refuse as corruption.
                out.extend_from_slice(&payload[at..]);
                break;
            };
            if !dropped.contains(&f.space.0) {
                out.extend_from_slice(&payload[at..at + f.len]);
            }
            at += f.len;
        }
        out
    }

    /// Adopts into `engine` every space of the shared catalog, and drops the ones
    /// dropped there.
    pub(crate) async fn sync(&self, engine: &Engine) -> Result<(), ClusterError> {
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|e| nats("listing the catalog", e))?;
        let mut live = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| nats("listing the catalog", e))?;
            if let Some(no) = key.strip_prefix("dropped.") {
                if let Ok(no) = no.parse() {
                    self.dropped.write().insert(no);
                }
            } else if key.starts_with("space.")
                && let Some(v) = self
                    .kv
                    .get(&key)
                    .await
                    .map_err(|e| nats("reading the catalog", e))?
                && let Ok(entry) = serde_json::from_slice::<Entry>(&v)
            {
                live.push(entry);
            }
        }
        for entry in live {
            self.assigned
                .write()
                .insert(entry.info.no.0, entry.partition);
            if !self.dropped.read().contains(&entry.info.no.0) {
                engine.adopt_space(entry.info)?;
            }
        }
        let dropped = self.dropped.read().clone();
        for info in engine.list_spaces() {
            if dropped.contains(&info.no.0) {
                engine.drop_adopted(&info.name)?;
            }
        }
        Ok(())
    }

    async fn allocate(&self) -> Result<SpaceNo, Error> {
        let unavailable = |e: &dyn std::fmt::Display| {
            Error::ClusterUnavailable(format!("allocating a space number: {e}"))
        };
        for _ in 0..100 {
            match self
                .kv
                .entry("next-no")
                .await
                .map_err(|e| unavailable(&e))?
            {
                Some(e) if e.operation == kv::Operation::Put => {
                    let no: u32 = std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| unavailable(&"unreadable next-no"))?;
                    let next: bytes::Bytes = (no + 1).to_string().into();
                    if self.kv.update("next-no", next, e.revision).await.is_ok() {
                        return Ok(SpaceNo(no));
                    }
                }
                _ => {
                    if self
                        .kv
                        .create("next-no", bytes::Bytes::from_static(b"1"))
                        .await
                        .is_ok()
                    {
                        return Ok(SpaceNo(0));
                    }
                }
            }
        }
        Err(unavailable(&"too much contention"))
    }
}

/// Re-reads the catalog whenever it changes, for as long as the node runs.
pub(crate) async fn watch(node: Arc<Node>, engine: Arc<Engine>) {
    loop {
        match node.catalog.kv.watch_all().await {
            Ok(mut changes) => {
                // What changed before the watch began is not delivered by it.
                if let Err(e) = node.catalog.sync(&engine).await {
                    tracing::warn!(error = %e, "reading the catalog");
                }
                while let Some(change) = changes.next().await {
                    if change.is_err() {
                        break;
                    }
                    if let Err(e) = node.catalog.sync(&engine).await {
                        tracing::warn!(error = %e, "applying a catalog change");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching the catalog"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl SharedCatalog for Hooks {
    fn create_space(&self, name: &str, config: &SpaceConfig) -> mnemo_engine::Result<SpaceInfo> {
        let node = Arc::clone(&self.0);
        let (name, config) = (name.to_string(), config.clone());
        let run = async move {
            let catalog = &node.catalog;
            let key = format!("space.{name}");
            if let Ok(Some(_)) = catalog.kv.get(&key).await {
                return Err(Error::SpaceExists(name));
            }
            let no = catalog.allocate().await?;
            let entry = Entry {
                info: SpaceInfo {
                    name: name.clone(),
                    no,
                    config,
                    created_at_us: now_us(),
                },
                partition: no.0 % catalog.partitions,
            };
            let value =
                serde_json::to_vec(&entry).map_err(|e| Error::ClusterUnavailable(e.to_string()))?;
            match catalog.kv.create(&key, value.into()).await {
                Ok(_) => {
                    catalog.assigned.write().insert(no.0, entry.partition);
                    Ok(entry.info)
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    Err(Error::SpaceExists(name))
                }
                Err(e) => Err(Error::ClusterUnavailable(format!(
                    "recording space '{name}': {e}"
                ))),
            }
        };
        self.0
            .run_sync(run)
            .unwrap_or_else(|| Err(Error::ClusterUnavailable("the node is stopping".into())))
    }

    fn drop_space(&self, name: &str) -> mnemo_engine::Result<()> {
        let node = Arc::clone(&self.0);
        let name = name.to_string();
        let run = async move {
            let catalog = &node.catalog;
            let key = format!("space.{name}");
            let unavailable = |e: &dyn std::fmt::Display| {
                Error::ClusterUnavailable(format!("dropping space '{name}': {e}"))
            };
            let Some(v) = catalog.kv.get(&key).await.map_err(|e| unavailable(&e))? else {
                return Err(Error::SpaceNotFound(name.clone()));
            };
            let entry: Entry = serde_json::from_slice(&v).map_err(|e| unavailable(&e))?;
            catalog
                .kv
                .put(format!("dropped.{}", entry.info.no.0), bytes::Bytes::new())
                .await
                .map_err(|e| unavailable(&e))?;
            catalog.dropped.write().insert(entry.info.no.0);
            catalog.kv.delete(&key).await.map_err(|e| unavailable(&e))?;
            Ok(())
        };
        self.0
            .run_sync(run)
            .unwrap_or_else(|| Err(Error::ClusterUnavailable("the node is stopping".into())))
    }
}
