//! The crash harness: `mnemo serve` as a child process, several Observe sessions
//! streaming with resume logic, recalls alongside, and the server SIGKILLed at random
//! moments and restarted on the same data directory. At the end, against every
//! ACCEPTED ack the clients received: each observation is stored with identical
//! content and embedding at its acked LSN, nothing is stored twice, each session's
//! sequences are dense, and no recall returned a record above its snapshot.
//!
//! Short profile (CI): 5 kills. Long profile:
//! `MNEMO_CRASH_KILLS=100 cargo test --release -p mnemo --test crash -- --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use mnemo_client::pb;
use mnemo_client::pb::mnemo_client::MnemoClient;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_mnemo");
const DIM: usize = 16;
const SPACE: &str = "crash";

mod common;
use common::{KillOnDrop as Server, free_port};

fn start(dir: &Path, port: u16) -> Server {
    Server(
        Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--metrics", ""])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

async fn connect(addr: &str) -> MnemoClient<Channel> {
    loop {
        if let Ok(c) = MnemoClient::connect(addr.to_string()).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Observation `seq` of session `s`: everything derives from the pair, so the
/// checker can tell exactly what each stored record must hold.
fn observation(s: u64, seq: u64) -> pb::Observation {
    let mut r = StdRng::seed_from_u64(s << 32 | seq);
    pb::Observation {
        id: uuid::Uuid::from_u64_pair(s + 1, seq).to_string(),
        content: format!("session {s} observation {seq}"),
        embedding: (0..DIM).map(|_| r.random_range(-1.0f32..1.0)).collect(),
        sequence: seq,
        ..Default::default()
    }
}

fn req(kind: pb::observe_request::Kind) -> pb::ObserveRequest {
    pb::ObserveRequest { kind: Some(kind) }
}

/// What one client saw.
#[derive(Default)]
struct ClientLog {
    /// Sequence → (memory id, LSN) of each ACCEPTED (or DUPLICATE) ack received.
    acked: BTreeMap<u64, (String, u64)>,
    /// Highest sequence sent.
    sent: u64,
    reconnects: u64,
}

/// One session that streams until `stop`, then until all it sent is acked. On any
/// break it reconnects with its session id and re-sends what the server lacks.
async fn client(addr: String, s: u64, stop: Arc<AtomicBool>) -> ClientLog {
    let session_id = format!("crash-session-{s}");
    let mut log = ClientLog::default();
    let mut first = true;
    loop {
        match connection(&addr, s, &session_id, first, &stop, &mut log).await {
            Ok(()) => return log,
            Err(_) => {
                log.reconnects += 1;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        first = false;
    }
}

async fn connection(
    addr: &str,
    s: u64,
    session_id: &str,
    first: bool,
    stop: &AtomicBool,
    log: &mut ClientLog,
) -> Result<(), String> {
    let mut c = connect(addr).await;
    let (tx, rx) = mpsc::channel(512);
    tx.send(req(pb::observe_request::Kind::Init(pb::Init {
        space: SPACE.into(),
        session_id: session_id.into(),
        resume_only: !first,
        ..Default::default()
    })))
    .await
    .map_err(|e| e.to_string())?;
    let mut inbound = c
        .observe(ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let ack = match inbound.message().await.map_err(|e| e.to_string())? {
        Some(pb::ObserveResponse {
            kind: Some(pb::observe_response::Kind::InitAck(a)),
        }) => a,
        other => return Err(format!("no InitAck: {other:?}")),
    };
    // Everything below next_sequence is durable; re-send from there.
    let mut next = ack.next_sequence;
    assert!(
        next <= log.sent + 1,
        "the server knows sequence {next} but only {} were sent",
        log.sent
    );
    let window = u64::from(ack.credit_window.clamp(1, 256));
    let mut in_flight = 0u64;
    let mut closing = false;
    loop {
        while !closing && in_flight < window && !(stop.load(Ordering::Relaxed) && next > log.sent) {
            tx.send(req(pb::observe_request::Kind::Observation(observation(
                s, next,
            ))))
            .await
            .map_err(|e| e.to_string())?;
            log.sent = log.sent.max(next);
            next += 1;
            in_flight += 1;
        }
        if !closing && in_flight == 0 && stop.load(Ordering::Relaxed) && next > log.sent {
            closing = true;
            tx.send(req(pb::observe_request::Kind::Close(pb::Close {
                drain: false,
            })))
            .await
            .map_err(|e| e.to_string())?;
        }
        let msg = tokio::time::timeout(Duration::from_millis(200), inbound.message()).await;
        let msg = match msg {
            Err(_) => continue, // look at `stop` again
            Ok(m) => m.map_err(|e| e.to_string())?,
        };
        match msg.and_then(|m| m.kind) {
            Some(pb::observe_response::Kind::Acks(b)) => {
                for a in b.acks {
                    match pb::AckStatus::try_from(a.status) {
                        Ok(pb::AckStatus::Accepted | pb::AckStatus::Duplicate) => {
                            in_flight -= 1;
                            let prev = log.acked.insert(a.sequence, (a.memory_id, a.lsn));
                            if let Some(prev) = prev {
                                assert_eq!(
                                    (&prev.0, prev.1),
                                    (&log.acked[&a.sequence].0, log.acked[&a.sequence].1),
                                    "sequence {} acked twice with different records",
                                    a.sequence
                                );
                            }
                        }
                        Ok(pb::AckStatus::Indexed) => {}
                        _ => {
                            // Overload or a gap after one: back off and resume from
                            // what the server has, on a fresh stream.
                            let wait = a.retry_after_ms.clamp(10, 1000);
                            tokio::time::sleep(Duration::from_millis(wait)).await;
                            return Err(format!("refused: {}", a.reason));
                        }
                    }
                }
            }
            Some(pb::observe_response::Kind::Closed(_)) => return Ok(()),
            Some(_) => {}
            None => return Err("stream ended".into()),
        }
    }
}

/// Recalls through the run; counts results above their reported snapshot.
async fn recaller(
    addr: String,
    stop: Arc<AtomicBool>,
    checked: Arc<AtomicU64>,
    violations: Arc<AtomicU64>,
) {
    let mut r = StdRng::seed_from_u64(99);
    while !stop.load(Ordering::Relaxed) {
        let mut c = connect(&addr).await;
        let cue: Vec<f32> = (0..DIM).map(|_| r.random_range(-1.0f32..1.0)).collect();
        if let Ok(resp) = c
            .recall_once(pb::RecallRequest {
                space: SPACE.into(),
                cue,
                k: 20,
                ..Default::default()
            })
            .await
        {
            let resp = resp.into_inner();
            checked.fetch_add(1, Ordering::Relaxed);
            let bad = resp
                .memories
                .iter()
                .filter(|m| m.lsn > resp.snapshot_lsn)
                .count();
            violations.fetch_add(bad as u64, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

fn kills_wanted() -> u32 {
    std::env::var("MNEMO_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_observations_survive_repeated_sigkill() {
    let kills = kills_wanted();
    let sessions = 4u64;
    let tmp = tempfile::tempdir().unwrap();
    let data: PathBuf = tmp.path().join("data");
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let mut server = start(&data, port);
    let mut admin = connect(&addr).await;
    loop {
        match admin
            .create_space(pb::CreateSpaceRequest {
                name: SPACE.into(),
                dim: DIM as u32,
                ..Default::default()
            })
            .await
        {
            Ok(_) => break,
            Err(st) if st.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(st) => panic!("create space: {st}"),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (checked, violations) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..sessions)
        .map(|s| tokio::spawn(client(addr.clone(), s, Arc::clone(&stop))))
        .collect();
    let recall = tokio::spawn(recaller(
        addr.clone(),
        Arc::clone(&stop),
        Arc::clone(&checked),
        Arc::clone(&violations),
    ));
    // The killer: SIGKILL at a random moment, restart on the same directory.
    let started = Instant::now();
    let mut r = StdRng::seed_from_u64(u64::from(kills));
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(r.random_range(250..900))).await;
        server.0.kill().unwrap(); // SIGKILL
        server.0.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(r.random_range(0..150))).await;
        server = start(&data, port);
        if k % 10 == 9 {
            eprintln!("{} kills, {:.0} s", k + 1, started.elapsed().as_secs_f64());
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for c in clients {
        logs.push(
            tokio::time::timeout(Duration::from_secs(120), c)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    recall.await.unwrap();

    // The check, against a full export with embeddings.
    let mut admin = connect(&addr).await;
    let mut export = admin
        .export(pb::ExportRequest {
            space: SPACE.into(),
            batch_size: 4096,
            include_embedding: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut by_id: HashMap<String, pb::Memory> = HashMap::new();
    let mut stored = 0u64;
    while let Some(m) = export.message().await.unwrap() {
        for mem in m.memories {
            stored += 1;
            let id = mem.id.clone();
            assert!(
                by_id.insert(id.clone(), mem).is_none(),
                "{id} is stored twice"
            );
        }
    }
    let mut acked = 0;
    for (s, log) in logs.iter().enumerate() {
        let s = s as u64;
        for (seq, (id, lsn)) in &log.acked {
            let want = observation(s, *seq);
            assert_eq!(id, &want.id, "session {s} seq {seq}: acked id");
            let got = by_id.get(id).unwrap_or_else(|| {
                panic!("LOST: session {s} seq {seq} ({id}) was acked at LSN {lsn}")
            });
            assert_eq!(got.lsn, *lsn, "session {s} seq {seq}: LSN");
            assert_eq!(got.content, want.content);
            assert_eq!(
                got.embedding, want.embedding,
                "session {s} seq {seq}: embedding"
            );
            assert_eq!(
                (got.session_id.as_str(), got.session_sequence),
                (format!("crash-session-{s}").as_str(), *seq)
            );
            acked += 1;
        }
        // Dense: the stored sequences of this session are exactly 1..=n.
        let mut seqs: Vec<u64> = by_id
            .values()
            .filter(|m| m.session_id == format!("crash-session-{s}"))
            .map(|m| m.session_sequence)
            .collect();
        seqs.sort_unstable();
        let n = seqs.len() as u64;
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<_>>(),
            "session {s}: sequences not dense"
        );
        assert!(n >= log.acked.len() as u64 && n <= log.sent);
    }
    assert_eq!(stored, by_id.len() as u64);
    assert_eq!(
        violations.load(Ordering::Relaxed),
        0,
        "recalls above their snapshot"
    );
    let reconnects: u64 = logs.iter().map(|l| l.reconnects).sum();
    eprintln!(
        "crash harness: {kills} kills in {:.1} s, {acked} acked, {stored} stored, 0 lost, 0 duplicated, {reconnects} reconnects, {} recalls checked",
        started.elapsed().as_secs_f64(),
        checked.load(Ordering::Relaxed)
    );
    assert!(acked > 0 && reconnects >= u64::from(kills.min(1)));
}
