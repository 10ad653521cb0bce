//! The read path cannot be stalled: parked read-your-writes recalls do not hold
//! the recall threads and are bounded per connection; waits are bounded and end
//! with the client's deadline; streams whose client does not read hold no thread
//! and are closed after the idle deadline; responses are bounded in bytes.
use mnemo_server::pb;
use mnemo_server::pb::mnemo_client::MnemoClient;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{TestServer, config, create_space, serve_options};

async fn fill(c: &mut MnemoClient<Channel>, space: &str, n: u64, content: usize) {
    for i in 0..n {
        c.remember(pb::RememberRequest {
            space: space.into(),
            observation: Some(pb::Observation {
                content: "c".repeat(content),
                embedding: vec![(i % 97) as f32, 1.0, (i % 13) as f32, 0.5],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
}

fn recall(space: &str, k: u32) -> pb::RecallRequest {
    pb::RecallRequest {
        space: space.into(),
        cue: vec![1.0, 1.0, 1.0, 0.5],
        k,
        ..Default::default()
    }
}

/// A normal recall's round trip, as a client sees it.
async fn timed_recall(c: &mut MnemoClient<Channel>) -> Duration {
    let t = Instant::now();
    let mut s = c.recall(recall("s", 10)).await.unwrap().into_inner();
    while s.message().await.unwrap().is_some() {}
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_parked_recalls_leave_other_recalls_answering() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "s", 4).await;
    fill(&mut c, "s", 200, 10).await;
    let usual = timed_recall(&mut c).await;

    // One client parks 64 recalls waiting for an LSN that will never come.
    let parker = server.client().await;
    let parked: Vec<_> = (0..64)
        .map(|_| {
            let mut p = parker.clone();
            tokio::spawn(async move {
                p.recall(pb::RecallRequest {
                    min_lsn: 1 << 63,
                    max_wait_ms: 60_000,
                    ..recall("s", 10)
                })
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Past its connection's bound, the parker is refused with a retry-after.
    let refused = parker
        .clone()
        .recall(pb::RecallRequest {
            min_lsn: 1 << 63,
            ..recall("s", 10)
        })
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.metadata().get("grpc-retry-pushback-ms").is_some());
    // Everyone else is answered as usual.
    for _ in 0..10 {
        let took = timed_recall(&mut c).await;
        assert!(
            took < usual.max(Duration::from_millis(20)) * 20,
            "a recall took {took:?} beside 64 parked ones (usually {usual:?})"
        );
    }
    let once = c.recall_once(recall("s", 10)).await.unwrap().into_inner();
    assert_eq!(once.memories.len(), 10);
    // The server stops with the recalls still parked: they end UNAVAILABLE.
    let stopped = Instant::now();
    server.stop().await;
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopped.elapsed()
    );
    for p in parked {
        let err = p.await.unwrap().err().unwrap();
        assert!(
            matches!(
                err.code(),
                Code::Unavailable | Code::Cancelled | Code::Unknown
            ),
            "{err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_are_bounded_and_end_with_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "s", 4).await;
    fill(&mut c, "s", 5, 10).await;
    // 46 days: refused, naming the field.
    let err = c
        .recall(pb::RecallRequest {
            min_lsn: 1 << 63,
            max_wait_ms: 4_000_000_000,
            ..recall("s", 10)
        })
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("max_wait_ms"), "{}", err.message());
    // A client deadline ends the wait (and frees its slot: 64 more fit afterwards,
    // once the server has seen the cancellations, which arrive as stream resets).
    for round in 0..2 {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let waits: Vec<_> = (0..64)
            .map(|_| {
                let mut c = c.clone();
                tokio::spawn(async move {
                    let mut req = tonic::Request::new(pb::RecallRequest {
                        min_lsn: 1 << 63,
                        max_wait_ms: 60_000,
                        ..recall("s", 10)
                    });
                    req.set_timeout(Duration::from_millis(300));
                    let t = Instant::now();
                    let r = c.recall(req).await;
                    (r.err().map(|e| e.code()), t.elapsed())
                })
            })
            .collect();
        for w in waits {
            let (code, took) = w.await.unwrap();
            assert!(
                matches!(code, Some(Code::Cancelled | Code::DeadlineExceeded)),
                "{code:?}"
            );
            assert!(took < Duration::from_secs(5), "{took:?}");
        }
    }
    // max_wait ends a wait too, with DEADLINE_EXCEEDED.
    let t = Instant::now();
    let err = c
        .recall_once(pb::RecallRequest {
            min_lsn: 1 << 63,
            max_wait_ms: 200,
            ..recall("s", 10)
        })
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert!(t.elapsed() < Duration::from_secs(5));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_nobody_reads_hold_no_thread_and_are_closed_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = serve_options();
    options.limits.stream_idle_timeout = Duration::from_secs(2);
    let server = TestServer::start_with_options(config(dir.path()), options).await;
    let mut c = server.client().await;
    create_space(&mut c, "s", 4).await;
    fill(&mut c, "s", 600, 2000).await;
    // 600 streams (more than tokio's 512 blocking threads), 60 per connection,
    // each with far more to send than the transport buffers; nobody reads.
    // A recall of all 600, one memory a message.
    let slow_recall = |mut conn: MnemoClient<Channel>| async move {
        conn.recall(pb::RecallRequest {
            batch_size: 1,
            ..recall("s", 600)
        })
        .await
        .unwrap()
        .into_inner()
    };
    let (mut unread, mut unread_exports) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let conn = server.client_with_small_windows().await;
        for _ in 0..60 {
            unread.push(slow_recall(conn.clone()).await);
        }
        let export = conn
            .clone()
            .export(pb::ExportRequest {
                space: "s".into(),
                batch_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        unread_exports.push(export);
    }
    // The stream read at the end has a connection to itself: on a shared one the
    // unread streams' data would take the connection's flow-control window that
    // reading it gives back, and it would starve behind them.
    let alone = slow_recall(server.client_with_small_windows().await).await;
    // Admin calls that need a blocking thread still answer at once.
    let t = Instant::now();
    create_space(&mut c, "other", 4).await;
    c.drop_space(pb::DropSpaceRequest {
        name: "other".into(),
    })
    .await
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // Past the idle deadline the streams were closed: what was buffered, then ABORTED.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut s = alone;
    let mut end = None;
    let mut read = 0;
    let reading = async {
        while let Some(m) = s.message().await.transpose() {
            match m {
                Ok(_) => read += 1,
                Err(e) => {
                    end = Some(e.code());
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the stream read at the end never ended");
    assert_eq!(end, Some(Code::Aborted), "after {read} messages");
    assert!(read < 600, "{read}");
    drop((unread, unread_exports));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = serve_options();
    options.limits.max_response_bytes = 1 << 20;
    let server = TestServer::start_with_options(config(dir.path()), options).await;
    let mut c = server.client().await;
    create_space(&mut c, "s", 4).await;
    // 400 memories of 32 KiB: 12.5 MiB in all.
    fill(&mut c, "s", 400, 32 << 10).await;
    let err = c.recall_once(recall("s", 400)).await.err().unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("response limit"),
        "{}",
        err.message()
    );
    assert_eq!(
        c.recall_once(recall("s", 20))
            .await
            .unwrap()
            .into_inner()
            .memories
            .len(),
        20
    );
    // A streaming recall of everything in one "batch" is cut at the budget instead.
    let mut s = c.recall(recall("s", 400)).await.unwrap().into_inner();
    let (mut messages, mut memories) = (0, 0);
    while let Some(m) = s.message().await.unwrap() {
        messages += 1;
        memories += m.memories.len();
        let size = prost::Message::encoded_len(&m);
        assert!(size <= (1 << 20) + (40 << 10), "{size} bytes");
    }
    assert_eq!(memories, 400);
    assert!(messages >= 12, "{messages} messages");
    // Export too.
    let mut s = c
        .export(pb::ExportRequest {
            space: "s".into(),
            batch_size: 4096,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut exported = 0;
    while let Some(m) = s.message().await.unwrap() {
        exported += m.memories.len();
        assert!(prost::Message::encoded_len(&m) <= (1 << 20) + (40 << 10));
    }
    assert_eq!(exported, 400);
    server.stop().await;
}
