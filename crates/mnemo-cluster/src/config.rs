//! `[cluster]` in `mnemo.toml`: where the shared log is and who this node is.

use serde::{Deserialize, Serialize};

/// The distributed mode's settings. With `nats` empty (the default) Mnemo runs
/// embedded, on its local log alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server URL(s), comma-separated (`nats://127.0.0.1:4222`). Empty: off.
    pub nats: String,
    /// Partitions (a JetStream stream each); every space belongs to one. Fixed
    /// when the cluster is first started: every node must say the same. Default 4.
    pub partitions: u32,
    /// This node's name, unique in the cluster and stable across restarts.
    pub node_id: String,
    /// The gRPC address clients reach this node at (`http://host:port`); sent to
    /// clients as the owner of the partitions this node writes.
    pub advertise: String,
    /// How long a partition's lease lasts without renewal, in milliseconds
    /// (renewed every quarter of it). A dead owner's partitions are taken over
    /// after about this long. Default 3,000 (500..=60,000).
    pub lease_ttl_ms: u64,
    /// Replicas of each stream and bucket (1 on a single NATS server; 3 in
    /// production). Default 1.
    pub replicas: usize,
    /// Prefix of the streams and buckets' names, so several clusters can share a
    /// NATS server. Default `mnemo`.
    pub prefix: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats: String::new(),
            partitions: 4,
            node_id: String::new(),
            advertise: String::new(),
            lease_ttl_ms: 3_000,
            replicas: 1,
            prefix: "mnemo".into(),
        }
    }
}

impl ClusterConfig {
    /// True when the distributed mode is configured.
    pub fn enabled(&self) -> bool {
        !self.nats.is_empty()
    }

    /// Every field in range; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !name_ok(&self.node_id) {
            return Err(format!(
                "cluster.node_id must be 1..=64 characters of [A-Za-z0-9_-], got {:?}",
                self.node_id
            ));
        }
        if !name_ok(&self.prefix) {
            return Err(format!(
                "cluster.prefix must be 1..=64 characters of [A-Za-z0-9_-], got {:?}",
                self.prefix
            ));
        }
        within("cluster.partitions", self.partitions.into(), 1, 256)?;
        within("cluster.lease_ttl_ms", self.lease_ttl_ms, 500, 60_000)?;
        within("cluster.replicas", self.replicas as u64, 1, 5)?;
        if !(self.advertise.starts_with("http://") || self.advertise.starts_with("https://")) {
            return Err(format!(
                "cluster.advertise must be the URL clients reach this node at (http://host:port), got {:?}",
                self.advertise
            ));
        }
        Ok(())
    }
}

/// `Ok` if `value` is in `lo..=hi`; else the error naming `field`.
pub(crate) fn within(field: &str, value: u64, lo: u64, hi: u64) -> Result<(), String> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(format!("{field} must be in {lo}..={hi}, got {value}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn good() -> ClusterConfig {
        ClusterConfig {
            nats: "nats://127.0.0.1:4222".into(),
            node_id: "a".into(),
            advertise: "http://127.0.0.1:7400".into(),
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        assert!(good().validate().is_ok());
        type Spoil = fn(&mut ClusterConfig);
        let cases: Vec<(Spoil, &str)> = vec![
            (|c| c.node_id = String::new(), "node_id"),
            (|c| c.node_id = "a b".into(), "node_id"),
            (|c| c.prefix = "x.y".into(), "prefix"),
            (|c| c.partitions = 0, "partitions"),
            (|c| c.partitions = 257, "partitions"),
            (|c| c.lease_ttl_ms = 10, "lease_ttl_ms"),
            (|c| c.replicas = 0, "replicas"),
            (|c| c.advertise = "127.0.0.1:7400".into(), "advertise"),
        ];
        for (spoil, field) in cases {
            let mut c = good();
            spoil(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.contains(field), "{e}");
        }
    }
}
