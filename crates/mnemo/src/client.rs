//! Client commands against a running server: spaces, recall, stats, synth.

use anyhow::Context;
use mnemo_server::pb;
use mnemo_server::pb::mnemo_client::MnemoClient;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::io::Write;
use std::path::PathBuf;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

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
    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        self.security.connect(&self.addr).await
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

/// A Mnemo client that sends the API key (if any) with every call.
pub(crate) type Client = MnemoClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <key>` to every request.
#[derive(Clone)]
pub(crate) struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

fn read_pem(what: &str, path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

impl Security {
    /// Connects to `addr` with these settings.
    pub(crate) async fn connect(&self, addr: &str) -> anyhow::Result<Client> {
        let mut endpoint = Endpoint::from_shared(addr.to_string())
            .with_context(|| format!("server address '{addr}'"))?;
        let https = addr.starts_with("https://");
        let wants_tls = self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some();
        anyhow::ensure!(
            https || !wants_tls,
            "TLS options need an https:// server address (got {addr})"
        );
        if https {
            let mut tls = match &self.tls_ca {
                Some(ca) => ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(read_pem("CA certificate", ca)?)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(
                        read_pem("client certificate", cert)?,
                        read_pem("client key", key)?,
                    ));
                }
                (None, None) => {}
                _ => anyhow::bail!("--tls-cert and --tls-key go together"),
            }
            if let Some(d) = &self.tls_domain {
                tls = tls.domain_name(d.clone());
            }
            endpoint = endpoint.tls_config(tls).context("TLS settings")?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let bearer = match &self.api_key {
            Some(k) => Some(
                MetadataValue::try_from(format!("Bearer {k}"))
                    .map_err(|_| anyhow::anyhow!("the API key must be printable ASCII"))?,
            ),
            None => None,
        };
        Ok(MnemoClient::with_interceptor(channel, Bearer(bearer))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }
}

/// HNSW parameters of a new space (`space create`, `bench`).
#[derive(Debug, Clone, Copy, clap::Args, serde::Serialize)]
pub(crate) struct IndexFlags {
    /// HNSW M (0 = default 16).
    #[arg(long, default_value_t = 0)]
    pub(crate) m: u32,
    /// HNSW ef_construction (0 = default 128).
    #[arg(long, default_value_t = 0)]
    pub(crate) ef_construction: u32,
    /// HNSW ef_search (0 = default 160).
    #[arg(long, default_value_t = 0)]
    pub(crate) ef_search: u32,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SpaceCommand {
    /// Create a space.
    Create {
        name: String,
        /// Vector dimension.
        #[arg(long)]
        dim: u32,
        /// cosine | l2 | ip
        #[arg(long, default_value = "cosine")]
        metric: String,
        /// f16 | f32 | i8 (i8 only with cosine)
        #[arg(long, default_value = "f16")]
        precision: String,
        #[command(flatten)]
        index: IndexFlags,
    },
    /// List spaces.
    List,
    /// Describe a space with its counters.
    Describe { name: String },
    /// Drop a space and its data.
    Drop { name: String },
}

/// A metric flag: cosine | l2 | ip.
pub(crate) fn parse_metric(s: &str) -> anyhow::Result<pb::Metric> {
    Ok(match s {
        "cosine" => pb::Metric::Cosine,
        "l2" => pb::Metric::L2,
        "ip" | "inner_product" => pb::Metric::InnerProduct,
        other => anyhow::bail!("unknown metric '{other}' (cosine, l2, ip)"),
    })
}

/// A precision flag: f16 | f32 | i8.
pub(crate) fn parse_precision(s: &str) -> anyhow::Result<pb::Precision> {
    Ok(match s {
        "f16" => pb::Precision::F16,
        "f32" => pb::Precision::F32,
        "i8" => pb::Precision::I8,
        other => anyhow::bail!("unknown precision '{other}' (f16, f32, i8)"),
    })
}

fn metric_name(m: i32) -> &'static str {
    match pb::Metric::try_from(m) {
        Ok(pb::Metric::L2) => "l2",
        Ok(pb::Metric::InnerProduct) => "ip",
        _ => "cosine",
    }
}

fn precision_name(p: i32) -> &'static str {
    match pb::Precision::try_from(p) {
        Ok(pb::Precision::F32) => "f32",
        Ok(pb::Precision::I8) => "i8",
        _ => "f16",
    }
}

fn print_space(i: &pb::SpaceInfo) {
    println!(
        "{:<24} dim {:<5} {:<7} {:<4} M={} ef_construction={} ef_search={}",
        i.name,
        i.dim,
        metric_name(i.metric),
        precision_name(i.precision),
        i.m,
        i.ef_construction,
        i.ef_search
    );
}

pub(crate) async fn space(conn: Conn, cmd: SpaceCommand) -> anyhow::Result<()> {
    let mut c = conn.connect().await?;
    match cmd {
        SpaceCommand::Create {
            name,
            dim,
            metric,
            precision,
            index,
        } => {
            let metric = parse_metric(&metric)?;
            let precision = parse_precision(&precision)?;
            let info = c
                .create_space(pb::CreateSpaceRequest {
                    name,
                    dim,
                    metric: metric as i32,
                    precision: precision as i32,
                    m: index.m,
                    ef_construction: index.ef_construction,
                    ef_search: index.ef_search,
                })
                .await?
                .into_inner();
            print!("created ");
            print_space(&info);
        }
        SpaceCommand::List => {
            for s in c
                .list_spaces(pb::ListSpacesRequest {})
                .await?
                .into_inner()
                .spaces
            {
                print_space(&s);
            }
        }
        SpaceCommand::Describe { name } => {
            let d = c
                .describe_space(pb::DescribeSpaceRequest { name })
                .await?
                .into_inner();
            if let Some(i) = &d.info {
                print_space(i);
            }
            if let Some(s) = d.stats {
                println!(
                    "committed LSN {}  indexed LSN {}  in graph {}  in fresh tier {}  checkpoint LSN {}",
                    s.committed_lsn,
                    s.indexed_lsn,
                    s.indexed_count,
                    s.fresh_count,
                    s.checkpoint_lsn
                );
            }
        }
        SpaceCommand::Drop { name } => {
            c.drop_space(pb::DropSpaceRequest { name: name.clone() })
                .await?;
            println!("dropped {name}");
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct RecallArgs {
    #[command(flatten)]
    conn: Conn,
    /// The space.
    space: String,
    /// The cue embedding as a JSON array, e.g. '[0.1, 0.2, …]'.
    #[arg(long, conflicts_with = "cue_file")]
    cue: Option<String>,
    /// Take the cue from the `embedding` of the first line of this JSON-lines file.
    #[arg(long)]
    cue_file: Option<std::path::PathBuf>,
    /// Line of --cue-file to use (1-based).
    #[arg(long, default_value_t = 1)]
    line: usize,
    /// Number of results.
    #[arg(short, long, default_value_t = 10)]
    k: u32,
    /// Read-your-writes: wait until this LSN is committed.
    #[arg(long, default_value_t = 0)]
    min_lsn: u64,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

fn cue(args: &RecallArgs) -> anyhow::Result<Vec<f32>> {
    if let Some(c) = &args.cue {
        return serde_json::from_str(c).context("--cue must be a JSON array of numbers");
    }
    let Some(path) = &args.cue_file else {
        anyhow::bail!("give --cue or --cue-file");
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text
        .lines()
        .nth(args.line.saturating_sub(1))
        .with_context(|| format!("{} has no line {}", path.display(), args.line))?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    serde_json::from_value(v["embedding"].clone()).context("the line has no \"embedding\" array")
}

pub(crate) async fn recall(args: RecallArgs) -> anyhow::Result<()> {
    let cue = cue(&args)?;
    let mut c = args.conn.connect().await?;
    let r = c
        .recall_once(pb::RecallRequest {
            space: args.space.clone(),
            cue,
            k: args.k,
            min_lsn: args.min_lsn,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if args.json {
        for m in &r.memories {
            let line = serde_json::json!({
                "id": m.id, "lsn": m.lsn, "score": m.score, "confidence": m.confidence,
                "content": m.content, "tags": m.tags, "occurred_at_us": m.occurred_at_us,
                "session_id": m.session_id, "session_sequence": m.session_sequence,
                "snapshot_lsn": r.snapshot_lsn,
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    writeln!(out, "snapshot LSN {}", r.snapshot_lsn)?;
    writeln!(out, "{:>4}  {:>7}  {:>8}  content", "rank", "score", "lsn")?;
    for (i, m) in r.memories.iter().enumerate() {
        let content: String = m.content.chars().take(70).collect();
        writeln!(
            out,
            "{:>4}  {:>7.4}  {:>8}  {}",
            i + 1,
            m.score,
            m.lsn,
            content
        )?;
    }
    Ok(())
}

pub(crate) async fn stats(conn: Conn, json: bool) -> anyhow::Result<()> {
    let mut c = conn.connect().await?;
    let s = c.stats(pb::StatsRequest {}).await?.into_inner();
    let p = s.pressure.unwrap_or_default();
    let state = pb::PressureState::try_from(p.state)
        .map(|s| s.as_str_name())
        .unwrap_or("?");
    if json {
        let spaces: Vec<_> = s
            .spaces
            .iter()
            .map(|sp| {
                let i = sp.info.clone().unwrap_or_default();
                let st = sp.stats.unwrap_or_default();
                serde_json::json!({"name": i.name, "dim": i.dim, "committed_lsn": st.committed_lsn,
                    "indexed_lsn": st.indexed_lsn, "indexed_count": st.indexed_count,
                    "fresh_count": st.fresh_count, "checkpoint_lsn": st.checkpoint_lsn})
            })
            .collect();
        let v = serde_json::json!({
            "server_rss_bytes": s.server_rss_bytes, "server_peak_rss_bytes": s.server_peak_rss_bytes,
            "accepted": s.accepted, "refused": s.refused, "duplicates": s.duplicates,
            "indexed": s.indexed, "sessions_open": s.sessions_open, "log_bytes": s.log_bytes,
            "pressure_state": state, "pressure": p.pressure, "queue_depth": p.queue_depth,
            "queue_capacity": p.queue_capacity, "drain_rate": p.drain_rate, "spaces": spaces,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "pressure {state} ({:.0} %), queue {}/{}, drain {:.0}/s, sessions {}",
        p.pressure * 100.0,
        p.queue_depth,
        p.queue_capacity,
        p.drain_rate,
        s.sessions_open
    );
    println!(
        "accepted {}  indexed {}  duplicates {}  refused {}  RSS {} MiB (peak {} MiB)  log {} MiB",
        s.accepted,
        s.indexed,
        s.duplicates,
        s.refused,
        s.server_rss_bytes >> 20,
        s.server_peak_rss_bytes >> 20,
        s.log_bytes >> 20
    );
    for sp in &s.spaces {
        let i = sp.info.clone().unwrap_or_default();
        let st = sp.stats.unwrap_or_default();
        println!(
            "  {:<24} committed {:>9}  in graph {:>9}  fresh {:>7}",
            i.name, st.committed_lsn, st.indexed_count, st.fresh_count
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct SynthArgs {
    /// Dimension.
    #[arg(long, default_value_t = 8)]
    dim: usize,
    /// Number of observations.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Number of clusters (topics).
    #[arg(long, default_value_t = 16)]
    clusters: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub(crate) fn synth(a: SynthArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.dim > 0 && a.clusters > 0,
        "--dim and --clusters must be positive"
    );
    let mut r = StdRng::seed_from_u64(a.seed);
    let centres: Vec<Vec<f32>> = (0..a.clusters)
        .map(|_| (0..a.dim).map(|_| r.random_range(-1.0f32..1.0)).collect())
        .collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..a.count {
        let c = i % a.clusters;
        let v: Vec<f32> = centres[c]
            .iter()
            .map(|x| x + r.random_range(-0.2f32..0.2))
            .collect();
        let line = serde_json::json!({
            "content": format!("synthetic observation {i} about topic {c}"),
            "embedding": v,
            "tags": {"topic": c.to_string()},
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// `mnemo key`: a new random key (32 bytes from the thread-local CSPRNG, hex) and the
/// TOML that grants it, holding only its digest.
pub(crate) fn new_key(name: &str) {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let digest = mnemo_server::auth::key_digest_hex(&key);
    println!("# API key '{name}': give it to the client (--api-key or MNEMO_API_KEY):");
    println!("#   {key}");
    println!("# and add this to the server's config file (it holds no secret):");
    println!("[[auth.keys]]");
    println!("name = {}", toml::Value::from(name));
    println!("key_sha256 = \"{digest}\"");
    println!("read = [\"*\"]   # space patterns: \"*\", \"prefix*\" or a name");
    println!("write = [\"*\"]");
    println!("admin = []      # create / drop");
}
