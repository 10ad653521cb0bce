//! API keys with per-space rights, and the listener's TLS settings.
//!
//! With no key configured, every call is allowed (the default: a local, single-user
//! server). With keys, every `mnemo.v1.Mnemo` call needs `authorization: Bearer <key>`
//! metadata: no key or an unknown one is UNAUTHENTICATED; a known key without the
//! right on the space is PERMISSION_DENIED (also for a space that does not exist, so a
//! key learns nothing about spaces it may not use). Health and reflection stay open.
//!
//! Rights, each a list of space patterns (`"*"`, `"prefix*"` or an exact name):
//! `read` (Recall, RecallOnce, Export, DescribeSpace, recalls inside MemoryStream),
//! `write` (Observe, MemoryStream, Remember), `admin` (CreateSpace, DropSpace).
//! ListSpaces and Stats answer any valid key, showing only the spaces it has a right on.
//!
//! Keys are compared as SHA-256 digests, in constant time and against every
//! configured key (no early exit), so timing tells nothing about a key's bytes.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Shortest accepted plaintext key, bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// The `auth` section of the server configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// API keys; none = authentication off.
    pub keys: Vec<ApiKeyConfig>,
}

/// One API key and its rights.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for logs and error messages (not secret).
    pub name: String,
    /// The key itself (at least 16 bytes). Prefer `key_sha256`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// The key's SHA-256 as 64 hex digits, so the file holds no secret
    /// (`mnemo key` makes a key and prints both).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key_sha256: String,
    /// Spaces this key may recall from and export.
    pub read: Vec<String>,
    /// Spaces this key may observe into.
    pub write: Vec<String>,
    /// Spaces this key may create and drop.
    pub admin: Vec<String>,
}

impl std::fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("name", &self.name)
            .field(
                "key",
                &if self.key.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("key_sha256", &self.key_sha256)
            .field("read", &self.read)
            .field("write", &self.write)
            .field("admin", &self.admin)
            .finish()
    }
}

/// What a call needs on a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Recall, export, describe.
    Read,
    /// Observe, remember.
    Write,
    /// Create, drop.
    Admin,
}

impl Right {
    fn verb(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write to",
            Right::Admin => "administer",
        }
    }
}

/// A space pattern: `*`, `prefix*` or an exact name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl Pattern {
    fn parse(s: &str) -> Result<Pattern, String> {
        match s.strip_suffix('*') {
            Some("") => Ok(Pattern::Any),
            Some(p) if !p.contains('*') => Ok(Pattern::Prefix(p.to_string())),
            None if !s.is_empty() && !s.contains('*') => Ok(Pattern::Exact(s.to_string())),
            _ => Err(format!(
                "space pattern '{s}': use \"*\", \"prefix*\" or an exact name"
            )),
        }
    }

    fn matches(&self, space: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Prefix(p) => space.starts_with(p.as_str()),
            Pattern::Exact(n) => n == space,
        }
    }
}

/// A checked key: its digest and rights.
#[derive(Debug)]
pub struct Key {
    name: String,
    digest: [u8; 32],
    read: Vec<Pattern>,
    write: Vec<Pattern>,
    admin: Vec<Pattern>,
}

impl Key {
    fn patterns(&self, right: Right) -> &[Pattern] {
        match right {
            Right::Read => &self.read,
            Right::Write => &self.write,
            Right::Admin => &self.admin,
        }
    }

    /// The key's name (not secret).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The server's keys. Empty = authentication off.
#[derive(Debug, Default)]
pub struct Auth {
    keys: Vec<Arc<Key>>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex_digest(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The SHA-256 of a key, hex: what goes into `key_sha256`.
pub fn key_digest_hex(key: &str) -> String {
    hex(&sha256(key.as_bytes()))
}

impl Auth {
    /// Checks the configuration: names present and unique, exactly one of `key` /
    /// `key_sha256` per key, keys long enough, digests well-formed and unique,
    /// patterns valid.
    pub fn from_config(cfg: &AuthConfig) -> Result<Auth, String> {
        let mut keys: Vec<Arc<Key>> = Vec::with_capacity(cfg.keys.len());
        for (i, k) in cfg.keys.iter().enumerate() {
            let label = if k.name.is_empty() {
                return Err(format!("auth.keys[{i}] has no name"));
            } else {
                format!("auth key '{}'", k.name)
            };
            let digest = match (k.key.is_empty(), k.key_sha256.is_empty()) {
                (false, true) => {
                    if k.key.len() < MIN_KEY_BYTES {
                        return Err(format!(
                            "{label}: the key must be at least {MIN_KEY_BYTES} bytes"
                        ));
                    }
                    sha256(k.key.as_bytes())
                }
                (true, false) => parse_hex_digest(&k.key_sha256.to_ascii_lowercase())
                    .ok_or_else(|| format!("{label}: key_sha256 must be 64 hex digits"))?,
                _ => return Err(format!("{label}: give exactly one of key and key_sha256")),
            };
            let parse = |list: &[String]| {
                list.iter()
                    .map(|p| Pattern::parse(p).map_err(|e| format!("{label}: {e}")))
                    .collect::<Result<Vec<_>, _>>()
            };
            let key = Key {
                name: k.name.clone(),
                digest,
                read: parse(&k.read)?,
                write: parse(&k.write)?,
                admin: parse(&k.admin)?,
            };
            if keys.iter().any(|o| o.name == key.name) {
                return Err(format!("{label}: the name is used twice"));
            }
            if keys.iter().any(|o| o.digest == key.digest) {
                return Err(format!("{label}: the same key is configured twice"));
            }
            keys.push(Arc::new(key));
        }
        Ok(Auth { keys })
    }

    /// Whether keys are required.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The caller's access from its `authorization` metadata.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Access, Status> {
        if self.keys.is_empty() {
            return Ok(Access::Open);
        }
        let Some(value) = metadata.get("authorization") else {
            return Err(Status::unauthenticated(
                "this server requires an API key: send `authorization: Bearer <key>` metadata",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| {
                Status::unauthenticated("the authorization metadata must be `Bearer <key>`")
            })?;
        let presented = sha256(token.as_bytes());
        // Every key is compared, whatever matched earlier: constant time over the set.
        let mut found: Option<&Arc<Key>> = None;
        for key in &self.keys {
            let hit: bool = key.digest.ct_eq(&presented).into();
            if hit {
                found = Some(key);
            }
        }
        found
            .map(|k| Access::Key(Arc::clone(k)))
            .ok_or_else(|| Status::unauthenticated("the API key is not valid"))
    }
}

/// What an authenticated caller may do.
#[derive(Debug, Clone)]
pub enum Access {
    /// Authentication is off: everything.
    Open,
    /// A key's rights.
    Key(Arc<Key>),
}

impl Access {
    /// The caller's key name (none with authentication off).
    pub fn key_name(&self) -> Option<&str> {
        match self {
            Access::Open => None,
            Access::Key(k) => Some(k.name()),
        }
    }

    /// `Ok` if the caller has `right` on `space`, else PERMISSION_DENIED.
    pub fn check(&self, right: Right, space: &str) -> Result<(), Status> {
        match self {
            Access::Open => Ok(()),
            Access::Key(k) if k.patterns(right).iter().any(|p| p.matches(space)) => Ok(()),
            Access::Key(k) => Err(Status::permission_denied(format!(
                "API key '{}' may not {} space '{space}'",
                k.name,
                right.verb()
            ))),
        }
    }

    /// Whether the caller has any right on `space` (ListSpaces and Stats show it).
    pub fn sees(&self, space: &str) -> bool {
        [Right::Read, Right::Write, Right::Admin]
            .into_iter()
            .any(|r| self.check(r, space).is_ok())
    }
}

/// The `tls` section: serve gRPC over TLS (rustls).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, PEM. Empty = plain TCP.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// With a CA certificate (PEM) here, clients must present a certificate it signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty() || !self.key.as_os_str().is_empty()
    }

    /// Reads the files into tonic's settings; errors name the file.
    pub fn load(&self) -> Result<tonic::transport::ServerTlsConfig, String> {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let read = |what: &str, p: &PathBuf| {
            if p.as_os_str().is_empty() {
                return Err(format!("tls.{what} is not set (TLS needs cert and key)"));
            }
            std::fs::read(p).map_err(|e| format!("tls.{what} {}: {e}", p.display()))
        };
        let cert = read("cert", &self.cert)?;
        let key = read("key", &self.key)?;
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read("client_ca", ca)?));
        }
        Ok(tls)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(name: &str, secret: &str, read: &[&str], write: &[&str]) -> ApiKeyConfig {
        ApiKeyConfig {
            name: name.into(),
            key: secret.into(),
            read: read.iter().map(|s| s.to_string()).collect(),
            write: write.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn bearer(token: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().unwrap());
        m
    }

    #[test]
    fn patterns_match_all_prefix_or_exact() {
        assert!(Pattern::parse("*").unwrap().matches("x"));
        assert!(Pattern::parse("team-*").unwrap().matches("team-a"));
        assert!(!Pattern::parse("team-*").unwrap().matches("teams"));
        assert!(Pattern::parse("a").unwrap().matches("a"));
        assert!(!Pattern::parse("a").unwrap().matches("ab"));
        for bad in ["", "a*b*", "*a"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_authenticate_and_rights_are_per_space() {
        let cfg = AuthConfig {
            keys: vec![
                key("reader", "reader-key-0123456789", &["*"], &[]),
                ApiKeyConfig {
                    key: String::new(),
                    key_sha256: key_digest_hex("writer-key-0123456789").to_uppercase(),
                    ..key("writer", "", &[], &["agents-*"])
                },
            ],
        };
        let auth = Auth::from_config(&cfg).unwrap();
        assert!(auth.enabled());
        let reader = auth.authenticate(&bearer("reader-key-0123456789")).unwrap();
        assert!(reader.check(Right::Read, "anything").is_ok());
        let denied = reader.check(Right::Write, "agents-1").unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("'reader'"), "{denied:?}");
        let writer = auth.authenticate(&bearer("writer-key-0123456789")).unwrap();
        assert!(writer.check(Right::Write, "agents-1").is_ok());
        assert!(writer.check(Right::Write, "other").is_err());
        assert!(writer.check(Right::Admin, "agents-1").is_err());
        assert!(writer.sees("agents-9") && !writer.sees("other"));

        for bad in [
            MetadataMap::new(),
            bearer("nope-nope-nope-nope"),
            bearer(""),
            {
                let mut m = MetadataMap::new();
                m.insert("authorization", "Basic abc".parse().unwrap());
                m
            },
        ] {
            let e = auth.authenticate(&bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
        }
        // Off: everything is open.
        let open = Auth::default().authenticate(&MetadataMap::new()).unwrap();
        assert!(open.check(Right::Admin, "x").is_ok());
    }

    #[test]
    fn bad_key_configs_are_refused() {
        let cases = [
            key("", "long-enough-key-0123", &[], &[]),
            key("short", "short", &[], &[]),
            ApiKeyConfig {
                key_sha256: "abc".into(),
                ..key("both", "long-enough-key-0123", &[], &[])
            },
            key("neither", "", &[], &[]),
            ApiKeyConfig {
                key: String::new(),
                key_sha256: "zz".repeat(32),
                ..key("hex", "", &[], &[])
            },
            key("pattern", "long-enough-key-0123", &["a*b"], &[]),
        ];
        for c in cases {
            let name = c.name.clone();
            assert!(
                Auth::from_config(&AuthConfig { keys: vec![c] }).is_err(),
                "{name}"
            );
        }
        let twice = AuthConfig {
            keys: vec![
                key("a", "long-enough-key-0123", &[], &[]),
                key("b", "long-enough-key-0123", &[], &[]),
            ],
        };
        assert!(Auth::from_config(&twice).unwrap_err().contains("twice"));
        let dbg = format!("{:?}", key("a", "long-enough-key-0123", &[], &[]));
        assert!(!dbg.contains("long-enough"), "Debug must not print the key");
    }
}
