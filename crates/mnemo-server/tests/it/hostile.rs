//! Hostile and malformed input, table-driven: each gets a precise in-band refusal
//! or status, and nothing is written. Plus clients that never read their acks and
//! thousands of sessions opened and abandoned.
use mnemo_server::pb;
use std::time::Duration;
use tonic::Code;

use crate::common::{
    TestServer, create_space, init, observation, open_stream, read_acks, space_stats,
};

const REJECTED: i32 = pb::AckStatus::Rejected as i32;
const ACCEPTED: i32 = pb::AckStatus::Accepted as i32;

fn with_content(seq: u64, content: String) -> pb::ObserveRequest {
    pb::ObserveRequest {
        kind: Some(pb::observe_request::Kind::Observation(pb::Observation {
            content,
            embedding: vec![0.5; 4],
            sequence: seq,
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_observations_are_refused_in_band_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "h", 4).await;
    let mut s = open_stream(&mut c, init("h", "hostile")).await;
    let ok = vec![0.1, 0.2, 0.3, 0.4];
    // (request, expected code, words the reason must contain)
    let table: Vec<(&str, pb::ObserveRequest, pb::RejectCode, &str)> = vec![
        (
            "wrong dimension",
            observation(1, vec![1.0; 5]),
            pb::RejectCode::Invalid,
            "dimension",
        ),
        (
            "empty embedding",
            observation(1, vec![]),
            pb::RejectCode::Invalid,
            "dimension",
        ),
        (
            "NaN",
            observation(1, vec![0.0, f32::NAN, 0.0, 0.0]),
            pb::RejectCode::Invalid,
            "finite",
        ),
        (
            "+inf",
            observation(1, vec![f32::INFINITY, 0.0, 0.0, 0.0]),
            pb::RejectCode::Invalid,
            "finite",
        ),
        (
            "-inf",
            observation(1, vec![0.0, 0.0, 0.0, f32::NEG_INFINITY]),
            pb::RejectCode::Invalid,
            "finite",
        ),
        (
            "content over 64 KiB",
            with_content(1, "x".repeat(64 * 1024 + 1)),
            pb::RejectCode::Invalid,
            "content",
        ),
        (
            "sequence 0",
            observation(0, ok.clone()),
            pb::RejectCode::Invalid,
            "sequence",
        ),
        (
            "gap",
            observation(2, ok.clone()),
            pb::RejectCode::SequenceGap,
            "expected",
        ),
        (
            "huge jump",
            observation(u64::MAX, ok.clone()),
            pb::RejectCode::SequenceGap,
            "expected",
        ),
    ];
    for (what, req, code, says) in table {
        s.tx.send(req).await.unwrap();
        let a = read_acks(&mut s.rx, 1).await.remove(0);
        assert_eq!(a.status, REJECTED, "{what}: {a:?}");
        assert_eq!(a.code, code as i32, "{what}: {a:?}");
        assert!(
            a.reason.to_lowercase().contains(says),
            "{what}: reason '{}'",
            a.reason
        );
        assert_eq!(
            space_stats(&mut c, "h").await.committed_lsn,
            0,
            "{what} wrote something"
        );
    }
    // The stream survived all of it, and sequence 1 is still the next one.
    s.tx.send(observation(1, ok.clone())).await.unwrap();
    assert_eq!(read_acks(&mut s.rx, 1).await[0].status, ACCEPTED);
    // Close, then Close again: one Closed, then the stream ends cleanly.
    for _ in 0..2 {
        s.tx.send(pb::ObserveRequest {
            kind: Some(pb::observe_request::Kind::Close(pb::Close { drain: false })),
        })
        .await
        .unwrap();
    }
    let mut closed = 0;
    while let Some(m) = s.rx.message().await.unwrap() {
        if let Some(pb::observe_response::Kind::Closed(c)) = m.kind {
            assert_eq!(c.final_sequence, 1);
            closed += 1;
        }
    }
    assert_eq!(closed, 1);
    assert_eq!(space_stats(&mut c, "h").await.committed_lsn, 1);

    // Calls that fail whole: precise status codes.
    let err = c
        .recall_once(pb::RecallRequest {
            space: "nope".into(),
            cue: ok.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    for (what, cue, k) in [
        ("cue dimension", vec![1.0; 3], 10),
        ("cue NaN", vec![f32::NAN; 4], 10),
        ("k too large", ok.clone(), 1_000_000),
    ] {
        let err = c
            .recall_once(pb::RecallRequest {
                space: "h".into(),
                cue,
                k,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err}");
    }
    server.stop().await;
}

/// A client that sends and never reads: the server stops reading once its
/// replies back up (bounded buffers, HTTP/2 flow control), instead of buffering
/// without bound; other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_pushed_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "r", 4).await;
    let s = open_stream(&mut c, init("r", "deaf")).await;
    let total = 200_000u64;
    let tx = s.tx.clone();
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        for seq in 1..=total {
            // Each message carries 16 KiB of content so the buffers fill quickly.
            if tx
                .send(with_content(seq, "y".repeat(16 << 10)))
                .await
                .is_err()
            {
                break;
            }
            sent = seq;
        }
        sent
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !sender.is_finished(),
        "all {total} messages went out without anyone reading"
    );
    // Another client (its own connection: the deaf one's connection-level HTTP/2
    // window is full) is still served, and the server has stopped admitting: what it took in is
    // bounded by the credit window plus the transport's buffers of unread acks.
    let mut c = server.client().await;
    let before = space_stats(&mut c, "r").await.committed_lsn;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = space_stats(&mut c, "r").await.committed_lsn;
    assert_eq!(
        before, after,
        "still admitting from a client that reads nothing"
    );
    assert!(after < total / 4, "{after} admitted");
    let stats = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert!(
        stats.server_rss_bytes < 1 << 30,
        "RSS {}",
        stats.server_rss_bytes
    );
    // A graceful stop is not held up by the stream nobody reads (bounded grace).
    let stopping = std::time::Instant::now();
    server.stop().await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(30), "stop took {took:?}");
    sender.abort();
    drop(s);
}

/// Thousands of sessions opened and dropped without a Close: the server keeps
/// serving, and the open-session count stays within its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_abandoned_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "a", 4).await;
    for i in 0..2000u64 {
        let mut s = open_stream(&mut c, init("a", "")).await;
        if i % 100 == 0 {
            s.tx.send(observation(1, vec![0.5; 4])).await.unwrap();
            assert_eq!(read_acks(&mut s.rx, 1).await[0].status, ACCEPTED);
        }
        drop(s);
    }
    let stats = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert!(stats.sessions_open <= 2000, "{}", stats.sessions_open);
    assert_eq!(space_stats(&mut c, "a").await.committed_lsn, 20);
    // A new session still opens and writes.
    let mut s = open_stream(&mut c, init("a", "after")).await;
    s.tx.send(observation(1, vec![0.5; 4])).await.unwrap();
    assert_eq!(read_acks(&mut s.rx, 1).await[0].status, ACCEPTED);
    server.stop().await;
}

/// A disk below the free-space reserve: observations are refused in band with
/// STORAGE_FULL and a retry hint (nothing written, the sequence does not move), the
/// unary path answers RESOURCE_EXHAUSTED, and recalls and Stats go on. The reserve is
/// set above any real disk here; `mnemo-engine`'s `full_disk` tests fill a real tmpfs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_observations_and_keeps_serving_recalls() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "d", 4).await;
    let mut s = open_stream(&mut c, init("d", "disk")).await;
    for seq in 1..=5 {
        s.tx.send(observation(seq, vec![seq as f32, 1.0, 0.0, 0.0]))
            .await
            .unwrap();
    }
    assert!(
        read_acks(&mut s.rx, 5)
            .await
            .iter()
            .all(|a| a.status == ACCEPTED)
    );
    drop(s);
    server.stop().await;

    let mut cfg = crate::common::config(dir.path());
    cfg.log.min_free_bytes = u64::MAX;
    let server = TestServer::start_with(cfg).await;
    let mut c = server.client().await;
    let mut s = open_stream(&mut c, init("d", "disk")).await;
    assert_eq!(s.init_ack.next_sequence, 6);
    s.tx.send(observation(6, vec![6.0, 1.0, 0.0, 0.0]))
        .await
        .unwrap();
    let ack = &read_acks(&mut s.rx, 1).await[0];
    assert_eq!(ack.status, REJECTED);
    assert_eq!(ack.code, pb::RejectCode::StorageFull as i32);
    assert_eq!(ack.retry_after_ms, 1000);
    assert!(ack.reason.contains("free"), "{}", ack.reason);
    // Still 6 next: the refusal moved nothing.
    s.tx.send(observation(6, vec![6.0, 1.0, 0.0, 0.0]))
        .await
        .unwrap();
    let ack = &read_acks(&mut s.rx, 1).await[0];
    assert_eq!(ack.code, pb::RejectCode::StorageFull as i32);

    let err = c
        .remember(pb::RememberRequest {
            space: "d".into(),
            observation: Some(pb::Observation {
                content: "one-shot".into(),
                embedding: vec![0.0, 0.0, 1.0, 0.0],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert_eq!(
        err.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "1000"
    );

    let found = c
        .recall_once(pb::RecallRequest {
            space: "d".into(),
            cue: vec![5.0, 1.0, 0.0, 0.0],
            k: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.memories.len(), 5);
    assert_eq!(found.snapshot_lsn, 5, "nothing was written");
    let stats = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.disk_reserve_bytes, u64::MAX);
    assert!(stats.disk_free_bytes < u64::MAX && stats.disk_free_bytes > 0);
    drop(s);
    server.stop().await;
}
