//! Connecting: the address, TLS (a CA, or the system's roots; a client certificate
//! for mutual TLS) and the API key sent with every call.

use std::path::PathBuf;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{Error, Result};
use crate::pb::mnemo_client::MnemoClient;

/// Largest message the client sends or accepts (the server announces its own
/// request limit in `InitAck.limits`).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Where the server is and how to talk to it.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// `http://host:port`, or `https://host:port` for TLS.
    pub addr: String,
    /// Sent as `authorization: Bearer <key>` with every call.
    pub api_key: Option<String>,
    /// CA certificate (PEM) that signed the server's; with `https://` and none, the
    /// system's trusted roots are used.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM), for servers that require mutual TLS.
    pub tls_identity: Option<(PathBuf, PathBuf)>,
    /// Name to verify in the server's certificate (default: the address's host).
    pub tls_domain: Option<String>,
    /// Deadline for each unary call (none: no deadline). Streams are not bounded by it.
    pub timeout: Option<Duration>,
    /// Deadline for establishing the connection. Default 10 s.
    pub connect_timeout: Option<Duration>,
    /// Other nodes of the same cluster (distributed mode), tried in turn by a
    /// session that lost its connection to `addr` and was not told the owner.
    pub peers: Vec<String>,
}

impl ConnectOptions {
    /// Plain settings for `addr`.
    pub fn new(addr: impl Into<String>) -> Self {
        ConnectOptions {
            addr: addr.into(),
            ..Default::default()
        }
    }

    /// With an API key.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("addr", &self.addr)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("tls_ca", &self.tls_ca)
            .field("tls_identity", &self.tls_identity)
            .field("tls_domain", &self.tls_domain)
            .field("timeout", &self.timeout)
            .field("peers", &self.peers)
            .finish()
    }
}

/// The generated stub with the API key interceptor: every protocol call, for what
/// [`crate::Client`] does not wrap.
pub type Stub = MnemoClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <key>` to every request.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

fn read_pem(what: &str, path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::Config(format!("reading the {what} {}: {e}", path.display())))
}

/// Opens a channel to the server and wraps it with the API key.
pub(crate) async fn connect(o: &ConnectOptions) -> Result<Stub> {
    let addr = &o.addr;
    let mut endpoint = Endpoint::from_shared(addr.clone())
        .map_err(|e| Error::Config(format!("server address '{addr}': {e}")))?
        .connect_timeout(o.connect_timeout.unwrap_or(Duration::from_secs(10)));
    if let Some(t) = o.timeout {
        endpoint = endpoint.timeout(t);
    }
    let https = addr.starts_with("https://");
    let wants_tls = o.tls_ca.is_some() || o.tls_identity.is_some() || o.tls_domain.is_some();
    if !https && wants_tls {
        return Err(Error::Config(format!(
            "TLS options need an https:// server address (got {addr})"
        )));
    }
    if https {
        let mut tls = match &o.tls_ca {
            Some(ca) => ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read_pem("CA certificate", ca)?)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        if let Some((cert, key)) = &o.tls_identity {
            tls = tls.identity(Identity::from_pem(
                read_pem("client certificate", cert)?,
                read_pem("client key", key)?,
            ));
        }
        if let Some(d) = &o.tls_domain {
            tls = tls.domain_name(d.clone());
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Error::Config(format!("TLS settings: {e}")))?;
    }
    let bearer = match &o.api_key {
        Some(k) => Some(
            MetadataValue::try_from(format!("Bearer {k}"))
                .map_err(|_| Error::Config("the API key must be printable ASCII".into()))?,
        ),
        None => None,
    };
    let channel = endpoint.connect().await.map_err(|source| Error::Connect {
        addr: addr.clone(),
        source,
    })?;
    Ok(MnemoClient::with_interceptor(channel, Bearer(bearer))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settings_are_checked_before_anything_is_sent() {
        let bad = |o: ConnectOptions| async move {
            match connect(&o).await {
                Err(Error::Config(why)) => why,
                other => panic!("expected a settings error, got {:?}", other.map(|_| ())),
            }
        };
        let mut o = ConnectOptions::new("http://127.0.0.1:1");
        o.tls_ca = Some("ca.pem".into());
        assert!(bad(o).await.contains("https://"));
        let o = ConnectOptions::new("not a uri");
        assert!(bad(o).await.contains("server address"));
        let mut o = ConnectOptions::new("https://127.0.0.1:1");
        o.tls_ca = Some("/nonexistent/ca.pem".into());
        assert!(bad(o).await.contains("CA certificate"));
        let o = ConnectOptions::new("http://127.0.0.1:1").api_key("bad\nkey");
        assert!(bad(o).await.contains("printable ASCII"));
    }

    #[test]
    fn debug_hides_the_key() {
        let o = ConnectOptions::new("http://h:1").api_key("secret");
        assert!(!format!("{o:?}").contains("secret"));
    }
}
