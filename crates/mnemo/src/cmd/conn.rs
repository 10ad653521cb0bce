//! Connection flags shared by every client command (address, API key, TLS), turned
//! into `mnemo_client` options.

use mnemo_client::{Client, ConnectOptions};
use std::path::PathBuf;

/// Where the server is.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Conn {
    /// Server address (https:// for TLS).
    #[arg(
        long,
        global = true,
        env = "MNEMO_ADDR",
        default_value = "http://127.0.0.1:7400"
    )]
    pub(crate) addr: String,
    #[command(flatten)]
    pub(crate) security: Security,
}

impl Conn {
    /// The client settings these flags describe.
    pub(crate) fn options(&self) -> anyhow::Result<ConnectOptions> {
        let s = &self.security;
        let identity = match (&s.tls_cert, &s.tls_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        Ok(ConnectOptions {
            addr: self.addr.clone(),
            api_key: s.api_key.clone(),
            tls_ca: s.tls_ca.clone(),
            tls_identity: identity,
            tls_domain: s.tls_domain.clone(),
            ..ConnectOptions::default()
        })
    }

    /// Connects with these flags.
    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(self.options()?).await?)
    }
}

/// How to prove who we are and whom we talk to: API key and TLS.
#[derive(Clone, Default, clap::Args)]
pub(crate) struct Security {
    /// API key, sent as `authorization: Bearer <key>`.
    #[arg(long, global = true, env = "MNEMO_API_KEY", hide_env_values = true)]
    pub(crate) api_key: Option<String>,
    /// CA certificate (PEM) that signed the server's; with an https:// address and
    /// no CA, the system's trusted roots are used.
    #[arg(long, global = true, env = "MNEMO_TLS_CA")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for servers that require one (with --tls-key).
    #[arg(long, global = true, env = "MNEMO_TLS_CERT")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "MNEMO_TLS_KEY")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Name to verify in the server's certificate (default: the address's host).
    #[arg(long, global = true)]
    pub(crate) tls_domain: Option<String>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_domain", &self.tls_domain)
            .finish()
    }
}
