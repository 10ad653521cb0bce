//! `mnemo serve` configuration: defaults, then a TOML file, then `MNEMO_*`
//! environment variables (nested keys with `__`, e.g. `MNEMO_ENGINE__LOG__DURABILITY`),
//! then command-line flags: each overrides the one before.

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use mnemo_engine::EngineConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything `mnemo serve` runs with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ServeConfig {
    /// gRPC listen address. Default 127.0.0.1:7400.
    pub(crate) listen: SocketAddr,
    /// Prometheus `/metrics` address; "" disables it. Default 127.0.0.1:7401.
    pub(crate) metrics: String,
    /// Largest request message, bytes. Default 4 MiB.
    pub(crate) max_message_bytes: usize,
    /// Largest response message, bytes: recall and export batches are cut there, a
    /// RecallOnce answer past it is refused. Default 16 MiB (1 MiB..=64 MiB).
    pub(crate) max_response_bytes: usize,
    /// Recalls in progress at once (waiting for `min_lsn`, ranking, or streaming),
    /// server-wide; past it RESOURCE_EXHAUSTED with a retry-after. Default 1,024.
    pub(crate) max_recalls: usize,
    /// Recalls in progress per connection. Default 64.
    pub(crate) max_recalls_per_connection: usize,
    /// Recalls in progress per API key (all its connections). Default 256.
    pub(crate) max_recalls_per_key: usize,
    /// A streaming Recall or Export whose client reads nothing for this long is
    /// closed (ABORTED), in seconds. Default 30.
    pub(crate) stream_idle_timeout_s: u64,
    /// Streams (calls) a connection may have open at once. Default 256.
    pub(crate) max_streams_per_connection: u32,
    /// Niceness (0..=19, Linux) of the threads that run Observe and MemoryStream
    /// sessions (ingestion). Connections, requests and recalls run at normal
    /// priority, so on a machine busy ingesting they win the cores. Default 5 (the
    /// log writer: `engine.log.writer_nice`, 5; index workers: `engine.index_nice`, 10).
    pub(crate) session_nice: i32,
    /// The engine (data directory, log, index, ingestion).
    pub(crate) engine: EngineConfig,
    /// API keys with per-space rights (none: every call allowed).
    pub(crate) auth: mnemo_server::auth::AuthConfig,
    /// TLS for the gRPC listener (cert + key; optional client_ca for mutual TLS).
    pub(crate) tls: mnemo_server::auth::TlsConfig,
    /// The distributed mode (off unless `cluster.nats` is set): docs/scale-out.md.
    pub(crate) cluster: mnemo_cluster::ClusterConfig,
    /// Checkpoints in object storage (distributed mode; off unless `url` is set).
    pub(crate) checkpoints: mnemo_cluster::CheckpointConfig,
}

impl ServeConfig {
    /// The checked API keys and the loaded TLS settings (none when TLS is off).
    pub(crate) fn security(
        &self,
    ) -> anyhow::Result<(
        mnemo_server::auth::Auth,
        Option<tonic::transport::ServerTlsConfig>,
    )> {
        let bad = |e: String| anyhow::anyhow!("configuration: {e}");
        let auth = mnemo_server::auth::Auth::from_config(&self.auth).map_err(bad)?;
        let tls = if self.tls.enabled() {
            Some(self.tls.load().map_err(bad)?)
        } else {
            None
        };
        Ok((auth, tls))
    }
}

impl ServeConfig {
    /// Every server limit in its range; the error names the field.
    fn check_limits(&self) -> anyhow::Result<()> {
        if self.cluster.enabled() {
            self.cluster
                .validate()
                .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        }
        if self.checkpoints.enabled() {
            anyhow::ensure!(
                self.cluster.enabled(),
                "configuration: [checkpoints] in object storage need the distributed mode ([cluster] nats = …)"
            );
            self.checkpoints
                .validate()
                .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        }
        let within = |name: &str, v: u64, lo: u64, hi: u64| {
            anyhow::ensure!(
                (lo..=hi).contains(&v),
                "configuration: {name} must be in {lo}..={hi}, got {v}"
            );
            Ok(())
        };
        within(
            "max_message_bytes",
            self.max_message_bytes as u64,
            64 << 10,
            64 << 20,
        )?;
        within(
            "max_response_bytes",
            self.max_response_bytes as u64,
            1 << 20,
            64 << 20,
        )?;
        within("max_recalls", self.max_recalls as u64, 1, 1 << 20)?;
        within(
            "max_recalls_per_connection",
            self.max_recalls_per_connection as u64,
            1,
            1 << 20,
        )?;
        within(
            "max_recalls_per_key",
            self.max_recalls_per_key as u64,
            1,
            1 << 20,
        )?;
        within("stream_idle_timeout_s", self.stream_idle_timeout_s, 1, 3600)?;
        within(
            "max_streams_per_connection",
            u64::from(self.max_streams_per_connection),
            1,
            1 << 16,
        )
    }

    /// The server's limits from this configuration.
    pub(crate) fn limits(&self) -> mnemo_server::Limits {
        mnemo_server::Limits {
            max_message_bytes: self.max_message_bytes,
            max_response_bytes: self.max_response_bytes,
            recalls: mnemo_server::RecallLimits {
                in_progress: self.max_recalls,
                per_connection: self.max_recalls_per_connection,
                per_key: self.max_recalls_per_key,
            },
            stream_idle_timeout: std::time::Duration::from_secs(self.stream_idle_timeout_s),
            max_streams_per_connection: self.max_streams_per_connection,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            metrics: "127.0.0.1:7401".into(),
            max_message_bytes: 4 << 20,
            max_response_bytes: 16 << 20,
            max_recalls: 1024,
            max_recalls_per_connection: 64,
            max_recalls_per_key: 256,
            stream_idle_timeout_s: 30,
            max_streams_per_connection: 256,
            session_nice: 5,
            engine: EngineConfig::default(),
            auth: Default::default(),
            tls: Default::default(),
            cluster: Default::default(),
            checkpoints: Default::default(),
        }
    }
}

/// Command-line overrides (highest precedence).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ServeFlags {
    /// TOML config file.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (default ./mnemo-data).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// gRPC listen address (default 127.0.0.1:7400).
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
    /// Prometheus metrics address (default 127.0.0.1:7401; "" disables).
    #[arg(long)]
    pub(crate) metrics: Option<String>,
}

impl ServeFlags {
    /// The effective configuration.
    pub(crate) fn resolve(&self) -> anyhow::Result<ServeConfig> {
        let mut fig = Figment::from(Serialized::defaults(ServeConfig::default()));
        if let Some(path) = &self.config {
            anyhow::ensure!(
                path.exists(),
                "config file {} does not exist",
                path.display()
            );
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("MNEMO_").split("__"));
        let mut cfg: ServeConfig = fig.extract().context("reading the configuration")?;
        if let Some(d) = &self.data_dir {
            cfg.engine.data_dir = d.clone();
        }
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if let Some(m) = &self.metrics {
            cfg.metrics = m.clone();
        }
        cfg.engine.validate()?;
        anyhow::ensure!(
            (0..=19).contains(&cfg.session_nice),
            "configuration: session_nice must be in 0..=19, got {}",
            cfg.session_nice
        );
        cfg.check_limits()?;
        cfg.security()?;
        Ok(cfg)
    }

    /// The effective configuration for printing: plaintext API keys appear only as
    /// their SHA-256 (which is also a valid way to configure them).
    pub(crate) fn resolve_redacted(&self) -> anyhow::Result<ServeConfig> {
        let mut cfg = self.resolve()?;
        for k in &mut cfg.auth.keys {
            if !k.key.is_empty() {
                k.key_sha256 = mnemo_server::auth::key_digest_hex(&k.key);
                k.key.clear();
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;

    #[test]
    fn precedence_file_then_env_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "mnemo.toml",
                "listen = \"127.0.0.1:9000\"\nmetrics = \"\"\n[engine]\ndata_dir = \"from-file\"\nindex_threads = 3\n[engine.log]\ndurability = \"buffered\"\n",
            )?;
            jail.set_env("MNEMO_ENGINE__INDEX_THREADS", "5");
            jail.set_env("MNEMO_LISTEN", "127.0.0.1:9100");
            let flags = ServeFlags {
                config: Some("mnemo.toml".into()),
                data_dir: Some("from-flag".into()),
                ..Default::default()
            };
            let cfg = flags.resolve().map_err(|e| e.to_string())?;
            assert_eq!(cfg.engine.data_dir, PathBuf::from("from-flag"), "flag wins");
            assert_eq!(cfg.engine.index_threads, 5, "env beats file");
            assert_eq!(cfg.listen.port(), 9100, "env beats file");
            assert_eq!(cfg.metrics, "", "file beats default");
            assert_eq!(
                cfg.engine.log.durability,
                mnemo_engine::Durability::Buffered
            );
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("MNEMO_ENGINE__INDEX_THREADS", "0");
            assert!(ServeFlags::default().resolve().is_err());
            jail.set_env("MNEMO_ENGINE__INDEX_THREADS", "2");
            assert_eq!(ServeFlags::default().resolve().unwrap().session_nice, 5);
            jail.set_env("MNEMO_SESSION_NICE", "20");
            let err = ServeFlags::default().resolve().unwrap_err();
            assert!(err.to_string().contains("session_nice"), "{err}");
            jail.set_env("MNEMO_SESSION_NICE", "5");
            jail.set_env("MNEMO_ENGINE__LOG__WRITER_NICE", "-1");
            let err = ServeFlags::default().resolve().unwrap_err();
            assert!(err.to_string().contains("writer_nice"), "{err}");
            Ok(())
        });
    }
}
