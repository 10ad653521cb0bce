//! `mnemo-client` against a real server: the session driver streams a feed exactly
//! once through refusals, a server restart and a restarted feed; a refusal that a
//! retry cannot fix ends it with a typed error.
use mnemo_client::{Client, ConnectOptions, Feed, SessionEvents, SessionOptions, pb};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{TestServer, config, random_vec, rng, serve_options};

/// Rows `from..to` of a seeded set, `dim` wide; each knows its row in `content`.
struct Rows {
    next: u64,
    to: u64,
    dim: usize,
}

impl Feed for Rows {
    fn next(&mut self, _seq: u64) -> mnemo_client::Result<Option<pb::Observation>> {
        if self.next >= self.to {
            return Ok(None);
        }
        let row = self.next;
        self.next += 1;
        Ok(Some(pb::Observation {
            content: format!("row {row}"),
            embedding: random_vec(&mut rng(row), self.dim),
            ..Default::default()
        }))
    }
}

/// Counts acks as they come; `acked` is shared so a test can watch progress.
#[derive(Default)]
struct Seen {
    acked: Arc<AtomicU64>,
    lsns: HashMap<u64, u64>,
    statuses: u64,
}

impl SessionEvents for Seen {
    fn acked(&mut self, a: &pb::Ack, _: tokio::time::Instant) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        assert!(
            self.lsns.insert(a.sequence, a.lsn).is_none(),
            "sequence {} acked twice",
            a.sequence
        );
    }
    fn status(&mut self, _: &pb::StreamStatus) {
        self.statuses += 1;
    }
}

async fn client(addr: SocketAddr) -> Client {
    Client::connect(ConnectOptions::new(format!("http://{addr}")))
        .await
        .unwrap()
}

async fn space(c: &Client, name: &str, dim: u32) {
    c.create_space(pb::CreateSpaceRequest {
        name: name.into(),
        dim,
        ..Default::default()
    })
    .await
    .unwrap();
}

/// Every stored record of `space` by content, with its session sequence.
async fn stored(c: &Client, space: &str) -> HashMap<String, Vec<u64>> {
    let mut s = c
        .export(pb::ExportRequest {
            space: space.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut by_content: HashMap<String, Vec<u64>> = HashMap::new();
    while let Some(m) = s.message().await.unwrap() {
        for mem in m.memories {
            by_content
                .entry(mem.content)
                .or_default()
                .push(mem.session_sequence);
        }
    }
    by_content
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_is_stored_once_in_sequence_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let c = client(server.addr).await;
    space(&c, "s", 8).await;
    let mut seen = Seen::default();
    let mut feed = Rows {
        next: 0,
        to: 2000,
        dim: 8,
    };
    let done = c
        .observe(SessionOptions::new("s"), &mut feed, &mut seen)
        .await
        .unwrap();
    assert_eq!(done.accepted, 2000);
    assert_eq!(done.final_sequence, 2000);
    assert_eq!((done.duplicates, done.reconnects), (0, 0));
    assert!(!done.session_id.is_empty());
    // Acks name dense LSNs in sequence order (one session, nothing else writing).
    for seq in 1..=2000 {
        assert_eq!(seen.lsns[&seq], seq);
    }
    let stored = stored(&c, "s").await;
    assert_eq!(stored.len(), 2000);
    assert!(stored.values().all(|seqs| seqs.len() == 1));
    assert_eq!(stored["row 7"], vec![8]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_refusals_are_retried_until_everything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.index_threads = 1;
    cfg.ingest.queue_max_items = 300;
    cfg.ingest.pressure_sample_ms = 2;
    let server = TestServer::start_with(cfg).await;
    let c = client(server.addr).await;
    space(&c, "s", 256).await;
    let mut seen = Seen::default();
    let mut feed = Rows {
        next: 0,
        to: 3000,
        dim: 256,
    };
    let done = c
        .observe(SessionOptions::new("s"), &mut feed, &mut seen)
        .await
        .unwrap();
    assert_eq!(done.accepted, 3000);
    assert!(
        done.refused > 0,
        "the load was meant to be refused: {done:?}"
    );
    assert!(seen.statuses > 0, "pressure changes are reported");
    let stored = stored(&c, "s").await;
    assert_eq!(stored.len(), 3000);
    assert!(stored.values().all(|seqs| seqs.len() == 1));
    server.stop().await;
}

async fn restart(dir: &Path, addr: SocketAddr) -> TestServer {
    // The old listener is closed; the port may take a moment to be free.
    for _ in 0..100 {
        if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
            return TestServer::start_on(l, config(dir), serve_options()).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("could not bind {addr} again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_across_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let addr = server.addr;
    let c = client(addr).await;
    space(&c, "s", 8).await;
    let acked = Arc::new(AtomicU64::new(0));
    let mut seen = Seen {
        acked: Arc::clone(&acked),
        ..Default::default()
    };
    let driver = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut feed = Rows {
                next: 0,
                to: 20_000,
                dim: 8,
            };
            let options = SessionOptions {
                session_id: Some("resumer".into()),
                // Slow enough that the restart lands in the middle.
                interval: Some(Duration::from_micros(200)),
                ..SessionOptions::new("s")
            };
            let done = c.observe(options, &mut feed, &mut seen).await;
            (done, seen)
        })
    };
    while acked.load(Ordering::Relaxed) < 2000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.stop().await;
    let server = restart(dir.path(), addr).await;
    let (done, seen) = driver.await.unwrap();
    let done = done.unwrap();
    assert!(done.reconnects >= 1, "{done:?}");
    assert_eq!(done.final_sequence, 20_000);
    // Acked in this run, or found durable at resume: every sequence exactly once.
    assert_eq!(done.accepted + done.duplicates, 20_000, "{done:?}");
    assert_eq!(seen.lsns.len() as u64 + done.duplicates, 20_000);
    let stored = stored(&c.reconnect().await.unwrap(), "s").await;
    assert_eq!(stored.len(), 20_000);
    assert!(stored.values().all(|seqs| seqs.len() == 1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_feed_skips_what_the_server_has() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let c = client(server.addr).await;
    space(&c, "s", 8).await;
    let options = SessionOptions {
        session_id: Some("import-1".into()),
        ..SessionOptions::new("s")
    };
    let first = c
        .observe(
            options.clone(),
            &mut Rows {
                next: 0,
                to: 100,
                dim: 8,
            },
            &mut (),
        )
        .await
        .unwrap();
    assert_eq!(first.accepted, 100);
    // The same input again, now longer: the first 100 are skipped, not re-sent.
    let again = c
        .observe(
            options,
            &mut Rows {
                next: 0,
                to: 150,
                dim: 8,
            },
            &mut (),
        )
        .await
        .unwrap();
    assert_eq!((again.duplicates, again.accepted), (100, 50));
    assert_eq!(again.final_sequence, 150);
    let stored = stored(&c, "s").await;
    assert_eq!(stored.len(), 150);
    assert_eq!(stored["row 120"], vec![121]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_a_retry_cannot_fix_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let c = client(server.addr).await;
    space(&c, "s", 8).await;
    // 4-wide rows into an 8-wide space.
    let mut feed = Rows {
        next: 0,
        to: 10,
        dim: 4,
    };
    let err = c
        .observe(SessionOptions::new("s"), &mut feed, &mut ())
        .await
        .unwrap_err();
    match err {
        mnemo_client::Error::Rejected { sequence, code, .. } => {
            assert_eq!((sequence, code), (1, "INVALID"));
        }
        other => panic!("expected a rejection, got {other}"),
    }
    assert!(stored(&c, "s").await.is_empty());
    // Unary errors keep their status code.
    let e = c.describe_space("nope").await.unwrap_err();
    assert_eq!(e.status().map(|s| s.code()), Some(tonic::Code::NotFound));
    server.stop().await;
}
