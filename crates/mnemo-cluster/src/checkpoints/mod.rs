//! Checkpoints in object storage (`[checkpoints]`): each partition's owner writes,
//! for every space of the partition, the records the last checkpoint does not have
//! as immutable objects named by their LSN range, then a manifest naming every
//! object with its CRC (written last: a checkpoint exists once its manifest does).
//! A node restores a space from its newest manifest when its local copy is
//! behind, then follows the stream after the manifest's position; a stream is
//! trimmed only below what every space of its partition has checkpointed.
//!
//! Layout under the URL's prefix:
//! `spaces/<no>/records/<from>-<to>-<node>.frames` (log frames, docs/log-format.md)
//! and `spaces/<no>/manifests/<lsn>-<stream seq>-<node>.json`, numbers zero-padded
//! to 20 digits so names sort by LSN, then stream position.

mod manifest;
mod restore;
mod upload;

pub(crate) use manifest::Manifest;
pub(crate) use restore::restore_partition;
pub(crate) use upload::upload_loop;

use object_store::ObjectStore;
use object_store::path::Path;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::within;
use crate::error::ClusterError;

/// `[checkpoints]` in `mnemo.toml`. Credentials come from the environment the
/// usual way (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// `s3://bucket/prefix`, or `file:///dir` (one machine). Empty: off, and the
    /// streams are never trimmed.
    pub url: String,
    /// The S3 endpoint of an S3-compatible store (`http://127.0.0.1:9000`); empty:
    /// `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint: String,
    /// The region; empty: `AWS_REGION`, else `us-east-1`.
    pub region: String,
    /// Seconds between two checkpoints of the spaces of a partition, by its
    /// owner. Default 30 (1..=86,400).
    pub interval_s: u64,
    /// Largest records object, bytes. Default 64 MiB (1 MiB..=1 GiB).
    pub object_bytes: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            url: String::new(),
            endpoint: String::new(),
            region: String::new(),
            interval_s: 30,
            object_bytes: 64 << 20,
        }
    }
}

impl CheckpointConfig {
    /// True when checkpoints go to object storage.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// Every field in range; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("s3://") || self.url.starts_with("file://")) {
            return Err(format!(
                "checkpoints.url must be s3://bucket/prefix or file:///dir, got {:?}",
                self.url
            ));
        }
        within("checkpoints.interval_s", self.interval_s, 1, 86_400)?;
        within(
            "checkpoints.object_bytes",
            self.object_bytes,
            1 << 20,
            1 << 30,
        )?;
        Ok(())
    }
}

/// The object store and what this node knows of each space's newest manifest.
pub(crate) struct Checkpoints {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: Path,
    pub(crate) config: CheckpointConfig,
    /// Space number → newest manifest seen or written here.
    pub(crate) newest: Mutex<HashMap<u32, Manifest>>,
}

impl Checkpoints {
    pub(crate) fn open(config: &CheckpointConfig) -> Result<Checkpoints, ClusterError> {
        config.validate().map_err(ClusterError::Config)?;
        // The S3 client's TLS uses ring, as the gRPC server does (an Err means a
        // provider is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bad = |e: object_store::Error| ClusterError::Config(format!("checkpoints.url: {e}"));
        let (store, prefix): (Arc<dyn ObjectStore>, &str) =
            if let Some(rest) = config.url.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if !config.endpoint.is_empty() {
                    b = b
                        .with_endpoint(&config.endpoint)
                        .with_allow_http(config.endpoint.starts_with("http://"));
                }
                if !config.region.is_empty() {
                    b = b.with_region(&config.region);
                }
                (Arc::new(b.build().map_err(bad)?), prefix)
            } else {
                let dir = config.url.trim_start_matches("file://");
                std::fs::create_dir_all(dir).map_err(|e| {
                    ClusterError::Config(format!("checkpoints.url: creating {dir}: {e}"))
                })?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(bad)?;
                (Arc::new(fs), "")
            };
        Ok(Checkpoints {
            store,
            prefix: Path::from(prefix.trim_matches('/')),
            config: config.clone(),
            newest: Mutex::default(),
        })
    }

    fn space_dir(&self, space: u32, kind: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in ["spaces", &space.to_string(), kind] {
            p = p.clone().join(part);
        }
        p
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_field_is_named() {
        let good = CheckpointConfig {
            url: "s3://bucket/prefix".into(),
            ..CheckpointConfig::default()
        };
        assert!(good.validate().is_ok());
        type Spoil = fn(&mut CheckpointConfig);
        let cases: Vec<(Spoil, &str)> = vec![
            (|c| c.url = "http://x".into(), "url"),
            (|c| c.interval_s = 0, "interval_s"),
            (|c| c.object_bytes = 10, "object_bytes"),
        ];
        for (spoil, field) in cases {
            let mut c = good.clone();
            spoil(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.contains(field), "{e}");
        }
    }
}
