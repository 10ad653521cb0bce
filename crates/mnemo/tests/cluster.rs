//! The distributed mode end to end, on loopback: one `nats-server` (JetStream,
//! `sync_interval: always`), three `mnemo serve` nodes (2 partitions) and four
//! spaces, each written by one session through the client's session driver while
//! recalls with `min_lsn` go to the other nodes. Faults, in turn: `kill -9` of a
//! partition's owner mid-stream (and its restart from its data directory plus the
//! stream), `SIGSTOP` of an owner past its lease then `SIGCONT`, `kill -9` of
//! `nats-server` and its restart.
//!
//! Checks: every acked (session, sequence) is stored exactly once at its acked LSN;
//! LSNs are dense per space; an export at one snapshot is byte-identical on every
//! node; a recall on another node with `min_lsn` from an ack finds the memory;
//! recalls keep working on every node that runs, also while NATS is down.
//!
//! Needs `nats-server` (2.10+): `MNEMO_NATS_SERVER` or on `PATH`. Without it the
//! test is skipped, unless `MNEMO_REQUIRE_NATS` is set (CI).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use mnemo_client::pb;
use mnemo_client::{Client, ConnectOptions, Feed, ObserveStream, SessionEvents, SessionOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mnemo");
const DIM: usize = 8;
const SPACES: [&str; 4] = ["c0", "c1", "c2", "c3"];
const LEASE_TTL_MS: u64 = 2_000;
/// Observations per session, and the pause between two of them.
const PER_SESSION: u64 = 5_000;
const INTERVAL: Duration = Duration::from_millis(4);

mod common;
use common::{KillOnDrop as Proc, free_port};

fn nats_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MNEMO_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &p.pid()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

struct Nats {
    bin: PathBuf,
    conf: PathBuf,
    port: u16,
    /// The monitoring endpoint (`/jsz`).
    http: u16,
    proc: Option<Proc>,
}

impl Nats {
    fn new(bin: PathBuf, dir: &Path) -> Nats {
        let (port, http) = (free_port(), free_port());
        let conf = dir.join("nats.conf");
        let store = dir.join("jetstream");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\n\
                 jetstream {{ store_dir: \"{}\", sync_interval: always }}\n",
                store.display()
            ),
        )
        .unwrap();
        Nats {
            bin,
            conf,
            port,
            http,
            proc: None,
        }
    }

    fn start(&mut self) {
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The first sequence still held by each partition stream.
    fn first_sequences(&self) -> Vec<u64> {
        let body = http_get(self.http, "/jsz?streams=true");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut firsts = Vec::new();
        for account in v["account_details"].as_array().into_iter().flatten() {
            for stream in account["stream_detail"].as_array().into_iter().flatten() {
                if stream["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("mnemo_log_"))
                {
                    firsts.push(stream["state"]["first_seq"].as_u64().unwrap());
                }
            }
        }
        firsts
    }
}

/// A plain HTTP/1.0 request on loopback; the response body.
fn http_request(port: u16, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.") && out[9..].starts_with('2'),
        "{method} {path}: {out}"
    );
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn http_get(port: u16, path: &str) -> String {
    http_request(port, "GET", path)
}

/// Where checkpoints go: a moto S3 server (`MNEMO_MOTO_SERVER`: its `moto_server`)
/// with a bucket, or a directory when there is none (unless `MNEMO_REQUIRE_MOTO`).
struct ObjectStorage {
    toml: String,
    _moto: Option<Proc>,
}

fn object_storage(dir: &Path) -> ObjectStorage {
    let Some(moto) = std::env::var_os("MNEMO_MOTO_SERVER") else {
        assert!(
            std::env::var_os("MNEMO_REQUIRE_MOTO").is_none(),
            "MNEMO_REQUIRE_MOTO is set but MNEMO_MOTO_SERVER is not"
        );
        eprintln!("no moto server (MNEMO_MOTO_SERVER): checkpoints go to a directory");
        return ObjectStorage {
            toml: format!(
                "[checkpoints]\nurl = \"file://{}\"\ninterval_s = 1\n",
                dir.join("objects").display()
            ),
            _moto: None,
        };
    };
    let port = free_port();
    let child = Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    http_request(port, "PUT", "/mnemo-checkpoints");
    ObjectStorage {
        toml: format!(
            "[checkpoints]\nurl = \"s3://mnemo-checkpoints/cluster-test\"\n\
             endpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\ninterval_s = 1\n"
        ),
        _moto: Some(proc),
    }
}

struct Node {
    id: String,
    port: u16,
    conf: PathBuf,
    data: PathBuf,
    proc: Option<Proc>,
    /// Recalls are expected to work on it (running, not stopped).
    up: Arc<AtomicBool>,
}

impl Node {
    fn new(id: &str, dir: &Path, nats: &str, checkpoints: &str) -> Node {
        let port = free_port();
        let conf = dir.join(format!("{id}.toml"));
        let data = dir.join(format!("data-{id}"));
        std::fs::write(
            &conf,
            format!(
                "listen = \"127.0.0.1:{port}\"\nmetrics = \"\"\n[engine]\ndata_dir = \"{}\"\nindex_threads = 1\n\
                 [cluster]\nnats = \"{nats}\"\npartitions = 2\nnode_id = \"{id}\"\n\
                 advertise = \"http://127.0.0.1:{port}\"\nlease_ttl_ms = {LEASE_TTL_MS}\n{checkpoints}",
                data.display()
            ),
        )
        .unwrap();
        Node {
            id: id.into(),
            port,
            conf,
            data,
            proc: None,
            up: Arc::default(),
        }
    }

    fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.conf)
            .env("RUST_LOG", "warn")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(c) = Client::connect(ConnectOptions::new(self.addr())).await
                && c.list_spaces().await.is_ok()
            {
                break;
            }
            assert!(Instant::now() < deadline, "node {} did not start", self.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.up.store(true, Ordering::SeqCst);
    }

    fn kill(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        if let Some(p) = self.proc.take() {
            signal(&p, "-KILL");
        }
    }
}

/// Observation `seq` of writer `w`: everything derives from the pair.
fn observation(w: usize, seq: u64) -> pb::Observation {
    let mut r = StdRng::seed_from_u64((w as u64) << 32 | seq);
    pb::Observation {
        id: uuid::Uuid::from_u64_pair(w as u64 + 1, seq).to_string(),
        content: format!("writer {w} observation {seq}"),
        embedding: (0..DIM).map(|_| r.random_range(-1.0f32..1.0)).collect(),
        ..Default::default()
    }
}

struct Writes(usize);

impl Feed for Writes {
    fn next(&mut self, sequence: u64) -> mnemo_client::Result<Option<pb::Observation>> {
        Ok((sequence <= PER_SESSION).then(|| observation(self.0, sequence)))
    }
}

/// Every ack a writer got: sequence → LSN, and any ack that contradicts an earlier one.
#[derive(Default)]
struct Acks {
    lsn: BTreeMap<u64, u64>,
    contradictions: Vec<String>,
}

struct Recorder(Arc<Mutex<Acks>>, Arc<AtomicU64>);

impl SessionEvents for Recorder {
    fn acked(&mut self, ack: &pb::Ack, _first_sent: tokio::time::Instant) {
        let mut acks = self.0.lock().unwrap();
        if let Some(&before) = acks.lsn.get(&ack.sequence)
            && before != ack.lsn
        {
            acks.contradictions.push(format!(
                "sequence {} acked at LSN {before}, then at {}",
                ack.sequence, ack.lsn
            ));
        }
        acks.lsn.insert(ack.sequence, ack.lsn);
        self.1.fetch_max(ack.sequence, Ordering::SeqCst);
    }
}

/// The node (by address) that accepts an Observe session on `space` now, if any.
async fn owner_of(nodes: &[(String, Arc<AtomicBool>)], space: &str) -> Option<String> {
    for (addr, up) in nodes {
        if !up.load(Ordering::SeqCst) {
            continue;
        }
        let Ok(c) = Client::connect(ConnectOptions::new(addr.clone())).await else {
            continue;
        };
        let init = pb::Init {
            space: space.into(),
            ..Default::default()
        };
        if ObserveStream::open(&c, init).await.is_ok() {
            return Some(addr.clone());
        }
    }
    None
}

/// What the reader saw: recalls answered, refused by a running node, and wrong.
#[derive(Default, Debug)]
struct Reads {
    answered: u64,
    failed: Vec<String>,
    wrong: Vec<String>,
}

/// Recalls writer 0's latest acked observation on every running node with
/// `min_lsn` = its ack's LSN, until `stop`. While NATS is down a node may not have
/// the latest records, so then the recall reads the latest snapshot instead and
/// only has to be answered.
async fn reader(
    nodes: Vec<(String, Arc<AtomicBool>)>,
    acks: Arc<Mutex<Acks>>,
    nats_up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Reads {
    let mut reads = Reads::default();
    while !stop.load(Ordering::SeqCst) {
        let latest = acks
            .lock()
            .unwrap()
            .lsn
            .iter()
            .next_back()
            .map(|(s, l)| (*s, *l));
        if let Some((seq, lsn)) = latest {
            let want = observation(0, seq);
            for (addr, up) in &nodes {
                if !up.load(Ordering::SeqCst) {
                    continue;
                }
                let exact = nats_up.load(Ordering::SeqCst);
                let req = pb::RecallRequest {
                    space: SPACES[0].into(),
                    cue: want.embedding.clone(),
                    k: 1,
                    min_lsn: if exact { lsn } else { 0 },
                    max_wait_ms: 5_000,
                    ..Default::default()
                };
                let answer = match Client::connect(ConnectOptions::new(addr.clone())).await {
                    Ok(c) => c.recall_once(req).await,
                    Err(e) => Err(e),
                };
                // A node stopped or killed meanwhile is not a failure of the reads.
                let still_up = up.load(Ordering::SeqCst);
                let exact = exact && nats_up.load(Ordering::SeqCst);
                match answer {
                    Ok(r) if r.memories.first().is_some_and(|m| m.id == want.id) => {
                        reads.answered += 1
                    }
                    Ok(_) if !exact => reads.answered += 1,
                    Ok(r) => reads.wrong.push(format!(
                        "{addr}: min_lsn {lsn} (sequence {seq}) found {:?}",
                        r.memories.first().map(|m| (&m.id, m.lsn))
                    )),
                    Err(e) if still_up => reads.failed.push(format!("{addr}: {e}")),
                    Err(_) => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reads
}

async fn export(addr: &str, space: &str, snapshot: u64) -> Vec<pb::Memory> {
    let c = Client::connect(ConnectOptions::new(addr)).await.unwrap();
    let mut stream = c
        .export(pb::ExportRequest {
            space: space.into(),
            snapshot_lsn: snapshot,
            include_embedding: true,
            packed_embeddings: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(batch) = stream.message().await.unwrap() {
        assert_eq!(batch.snapshot_lsn, snapshot);
        out.extend(batch.memories);
    }
    out
}

async fn committed(addr: &str, space: &str) -> Option<u64> {
    let c = Client::connect(ConnectOptions::new(addr)).await.ok()?;
    let d = c.describe_space(space).await.ok()?;
    d.stats.map(|s| s.committed_lsn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_keep_every_ack_through_owner_kills_pauses_and_a_nats_restart() {
    let Some(nats_bin) = nats_binary() else {
        assert!(
            std::env::var_os("MNEMO_REQUIRE_NATS").is_none(),
            "MNEMO_REQUIRE_NATS is set but no nats-server was found (MNEMO_NATS_SERVER or PATH)"
        );
        eprintln!("skipped: no nats-server (set MNEMO_NATS_SERVER)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::new(nats_bin, dir.path());
    nats.start();
    let objects = object_storage(dir.path());
    let mut nodes: Vec<Node> = ["n0", "n1", "n2"]
        .iter()
        .map(|id| Node::new(id, dir.path(), &nats.url(), &objects.toml))
        .collect();
    for n in &mut nodes {
        n.start().await;
    }
    let addrs: Vec<(String, Arc<AtomicBool>)> = nodes
        .iter()
        .map(|n| (n.addr(), Arc::clone(&n.up)))
        .collect();
    let admin = Client::connect(ConnectOptions::new(nodes[0].addr()))
        .await
        .unwrap();
    for name in SPACES {
        admin
            .create_space(pb::CreateSpaceRequest {
                name: name.into(),
                dim: DIM as u32,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // Every node adopts them from the shared catalog.
    for (addr, _) in &addrs {
        let c = Client::connect(ConnectOptions::new(addr.clone()))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.list_spaces().await.unwrap().len() < SPACES.len() {
            assert!(Instant::now() < deadline, "{addr} did not adopt the spaces");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Writers: one session per space, each first sent to a different node, with
    // the other nodes as peers.
    let mut writers = Vec::new();
    let mut logs = Vec::new();
    let mut progress = Vec::new();
    for (w, space) in SPACES.iter().enumerate() {
        let acks = Arc::new(Mutex::new(Acks::default()));
        let seen = Arc::new(AtomicU64::new(0));
        logs.push(Arc::clone(&acks));
        progress.push(Arc::clone(&seen));
        let first = w % nodes.len();
        let mut options = ConnectOptions::new(nodes[first].addr());
        options.peers = (0..nodes.len())
            .filter(|&i| i != first)
            .map(|i| nodes[i].addr())
            .collect();
        let mut session = SessionOptions::new(*space);
        session.session_id = Some(format!("writer-{w}"));
        session.interval = Some(INTERVAL);
        session.max_reconnects = 1_000;
        writers.push(tokio::spawn(async move {
            let client = Client::connect(options).await.unwrap();
            client
                .observe(session, &mut Writes(w), &mut Recorder(acks, seen))
                .await
        }));
    }
    let stop_reads = Arc::new(AtomicBool::new(false));
    let nats_up = Arc::new(AtomicBool::new(true));
    let reads = tokio::spawn(reader(
        addrs.clone(),
        Arc::clone(&logs[0]),
        Arc::clone(&nats_up),
        Arc::clone(&stop_reads),
    ));
    let index_of = |addr: &str| addrs.iter().position(|(a, _)| a == addr).unwrap();
    let wait_acks = |n: u64| {
        let progress = progress.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while progress.iter().any(|p| p.load(Ordering::SeqCst) < n) {
                assert!(Instant::now() < deadline, "writers stalled below {n}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // 1. kill -9 of partition 0's owner mid-stream; writes resume on a new owner.
    wait_acks(500).await;
    let owner = owner_of(&addrs, SPACES[0]).await.expect("an owner of c0");
    let victim = index_of(&owner);
    let before = progress[0].load(Ordering::SeqCst);
    let killed_at = Instant::now();
    nodes[victim].kill();
    let new_owner = loop {
        if let Some(o) = owner_of(&addrs, SPACES[0]).await {
            break o;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no node took partition 0 over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let takeover = killed_at.elapsed();
    assert_ne!(new_owner, owner);
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress[0].load(Ordering::SeqCst) <= before + 10 {
        assert!(Instant::now() < deadline, "writes to c0 did not resume");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resumed = killed_at.elapsed();
    eprintln!(
        "failover: lease TTL {LEASE_TTL_MS} ms; new owner after {takeover:?}; writes resumed after {resumed:?}"
    );
    // The killed node comes back from its data directory and the stream.
    nodes[victim].start().await;

    // 2. SIGSTOP of partition 1's owner past its lease, then SIGCONT: the paused
    //    node's appends are fenced; whatever it acked must be in the log.
    wait_acks(2_000).await;
    let owner = owner_of(&addrs, SPACES[1]).await.expect("an owner of c1");
    let paused = index_of(&owner);
    nodes[paused].up.store(false, Ordering::SeqCst);
    signal(nodes[paused].proc.as_ref().unwrap(), "-STOP");
    tokio::time::sleep(Duration::from_millis(LEASE_TTL_MS * 2)).await;
    signal(nodes[paused].proc.as_ref().unwrap(), "-CONT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[paused].up.store(true, Ordering::SeqCst);

    // 3. kill -9 of nats-server, restart on the same store: writes stall, recalls
    //    go on (asserted by the reader), then writes resume.
    wait_acks(3_000).await;
    nats_up.store(false, Ordering::SeqCst);
    signal(nats.proc.as_ref().unwrap(), "-KILL");
    nats.proc.take();
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.start();
    // Followers have caught up once an ack after the restart is visible everywhere.
    let after = progress[0].load(Ordering::SeqCst) + 5;
    wait_acks(after).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats_up.store(true, Ordering::SeqCst);

    for w in writers {
        let summary = tokio::time::timeout(Duration::from_secs(180), w)
            .await
            .expect("a writer did not finish")
            .unwrap()
            .unwrap();
        assert_eq!(summary.final_sequence, PER_SESSION);
    }
    stop_reads.store(true, Ordering::SeqCst);
    let reads = reads.await.unwrap();

    // Every node converges on the same committed LSN per space.
    let mut snapshots = Vec::new();
    for space in SPACES {
        let deadline = Instant::now() + Duration::from_secs(60);
        let lsn = loop {
            let mut seen = Vec::new();
            for (addr, _) in &addrs {
                seen.push(committed(addr, space).await);
            }
            if seen.iter().all(|s| s.is_some() && *s == seen[0]) {
                break seen[0].unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{space}: nodes disagree: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        snapshots.push(lsn);
    }

    for (w, space) in SPACES.iter().enumerate() {
        let snapshot = snapshots[w];
        let first = export(&addrs[0].0, space, snapshot).await;
        for (addr, _) in &addrs[1..] {
            let other = export(addr, space, snapshot).await;
            assert!(
                first.len() == other.len()
                    && first
                        .iter()
                        .zip(&other)
                        .all(|(a, b)| prost::Message::encode_to_vec(a)
                            == prost::Message::encode_to_vec(b)),
                "{space}: the export at LSN {snapshot} differs between {} and {addr}",
                addrs[0].0
            );
        }
        // LSNs dense; each sequence of the session stored once, and nothing else.
        let lsns: Vec<u64> = first.iter().map(|m| m.lsn).collect();
        assert_eq!(
            lsns,
            (1..=snapshot).collect::<Vec<_>>(),
            "{space}: LSNs not dense"
        );
        let mut stored: BTreeMap<u64, u64> = BTreeMap::new();
        for m in &first {
            assert_eq!(m.session_id, format!("writer-{w}"));
            let want = observation(w, m.session_sequence);
            assert_eq!(
                m.id, want.id,
                "{space}: LSN {} holds the wrong memory",
                m.lsn
            );
            assert!(
                stored.insert(m.session_sequence, m.lsn).is_none(),
                "{space}: sequence {} stored twice",
                m.session_sequence
            );
        }
        assert_eq!(
            stored.len() as u64,
            PER_SESSION,
            "{space}: stored sequences"
        );
        let acks = logs[w].lock().unwrap();
        assert!(acks.contradictions.is_empty(), "{:?}", acks.contradictions);
        for (seq, lsn) in &acks.lsn {
            assert_eq!(
                stored.get(seq),
                Some(lsn),
                "{space}: sequence {seq} was acked at LSN {lsn}"
            );
        }
    }
    eprintln!(
        "reads: {} answered with min_lsn; {} refused",
        reads.answered,
        reads.failed.len()
    );
    assert!(reads.wrong.is_empty(), "{:?}", reads.wrong);
    assert!(
        reads.failed.is_empty(),
        "recalls refused by running nodes: {:?}",
        reads.failed
    );
    assert!(reads.answered > 50, "too few reads: {reads:?}");

    // 4. Checkpoints reach object storage and the streams are trimmed below them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let firsts = nats.first_sequences();
        if firsts.len() == 2 && firsts.iter().all(|&f| f > 1) {
            eprintln!("streams trimmed: first sequences {firsts:?}");
            break;
        }
        assert!(Instant::now() < deadline, "streams not trimmed: {firsts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 5. A node that lost its disk starts from the checkpoints and the stream's
    //    rest, and writes go on through it.
    let lost = 2;
    nodes[lost].kill();
    std::fs::remove_dir_all(&nodes[lost].data).unwrap();
    nodes[lost].start().await;
    let late = Client::connect(ConnectOptions::new(nodes[lost].addr()))
        .await
        .unwrap();
    let mut session = SessionOptions::new(SPACES[0]);
    session.session_id = Some("late".into());
    let summary = late.observe(session, &mut Late, &mut ()).await.unwrap();
    assert_eq!(summary.final_sequence, 100);
    let expected: Vec<u64> = (0..SPACES.len())
        .map(|w| snapshots[w] + if w == 0 { 100 } else { 0 })
        .collect();
    for (w, space) in SPACES.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(60);
        for (addr, _) in &addrs {
            while committed(addr, space).await != Some(expected[w]) {
                assert!(
                    Instant::now() < deadline,
                    "{space}: {addr} is at {:?}, not {}",
                    committed(addr, space).await,
                    expected[w]
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let first = export(&addrs[0].0, space, expected[w]).await;
        let restored = export(&addrs[lost].0, space, expected[w]).await;
        assert_eq!(first.len() as u64, expected[w], "{space}");
        assert!(
            first
                .iter()
                .zip(&restored)
                .all(|(a, b)| prost::Message::encode_to_vec(a) == prost::Message::encode_to_vec(b))
                && first.len() == restored.len(),
            "{space}: the restored node's export differs"
        );
    }

    // 6. Unary writes sent to any node reach the owner (the client follows the
    //    redirect of a node that does not write the space).
    let mut lsn = expected[0];
    for (addr, _) in &addrs {
        let c = Client::connect(ConnectOptions::new(addr.clone()))
            .await
            .unwrap();
        let r = c.remember(SPACES[0], observation(8, lsn)).await.unwrap();
        lsn += 1;
        assert_eq!(r.lsn, lsn, "remember through {addr}");
    }
}

/// 100 more observations, for a session after the restore.
struct Late;

impl Feed for Late {
    fn next(&mut self, sequence: u64) -> mnemo_client::Result<Option<pb::Observation>> {
        Ok((sequence <= 100).then(|| observation(9, sequence)))
    }
}
