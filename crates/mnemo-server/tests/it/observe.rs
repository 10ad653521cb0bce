//! The Observe stream: acks, gaps, recall while ingesting, resume after restart,
//! flow control, close, overload, malformed streams.
use mnemo_server::pb;
use std::collections::HashMap;
use std::time::Duration;
use tonic::Code;

use crate::common::{
    TestServer, config, create_space, init, observation, open_stream, random_vec, read_acks, rng,
    space_stats,
};

const ACCEPTED: i32 = pb::AckStatus::Accepted as i32;
const DUPLICATE: i32 = pb::AckStatus::Duplicate as i32;
const REJECTED: i32 = pb::AckStatus::Rejected as i32;
const INDEXED: i32 = pb::AckStatus::Indexed as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_observations_acked_densely_while_recall_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "s", 16).await;
    let mut s = open_stream(&mut c, init("s", "")).await;
    assert_eq!(s.init_ack.next_sequence, 1);
    assert!(!s.init_ack.session_id.is_empty());
    assert!(s.init_ack.credit_window >= 256);
    let mut r = rng(1);
    let sender = {
        let tx = s.tx.clone();
        let vectors: Vec<Vec<f32>> = (0..1000).map(|_| random_vec(&mut r, 16)).collect();
        tokio::spawn(async move {
            for (i, v) in vectors.into_iter().enumerate() {
                tx.send(observation(i as u64 + 1, v)).await.unwrap();
                if i % 100 == 99 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    // A recall in the middle of the stream.
    let mut recalls = 0;
    while recalls < 3 {
        let out = c
            .recall(pb::RecallRequest {
                space: "s".into(),
                cue: random_vec(&mut rng(9), 16),
                k: 5,
                batch_size: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let msgs: Vec<pb::RecallResponse> = tokio_stream::StreamExt::collect::<Vec<_>>(out)
            .await
            .into_iter()
            .map(|m| m.unwrap())
            .collect();
        let snapshot = msgs[0].snapshot_lsn;
        assert!(msgs.iter().all(|m| m.snapshot_lsn == snapshot));
        assert!(msgs.last().is_some_and(|m| !m.more));
        assert!(
            msgs.iter()
                .flat_map(|m| &m.memories)
                .all(|m| m.lsn <= snapshot)
        );
        if snapshot > 0 {
            recalls += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acks = read_acks(&mut s.rx, 1000).await;
    sender.await.unwrap();
    assert!(acks.iter().all(|a| a.status == ACCEPTED), "all accepted");
    let mut seqs: Vec<u64> = acks.iter().map(|a| a.sequence).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    let mut lsns: Vec<u64> = acks.iter().map(|a| a.lsn).collect();
    lsns.sort_unstable();
    assert_eq!(lsns, (1..=1000).collect::<Vec<_>>());
    // Close with drain: everything indexed, final sequence returned.
    s.tx.send(pb::ObserveRequest {
        kind: Some(pb::observe_request::Kind::Close(pb::Close { drain: true })),
    })
    .await
    .unwrap();
    loop {
        match s.rx.message().await.unwrap().unwrap().kind {
            Some(pb::observe_response::Kind::Closed(c)) => {
                assert_eq!(c.final_sequence, 1000);
                break;
            }
            Some(_) => {}
            None => panic!("empty"),
        }
    }
    let stats = space_stats(&mut c, "s").await;
    assert_eq!(stats.indexed_lsn, 1000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_and_bad_items_are_refused_in_band_and_the_stream_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "s", 4).await;
    let mut s = open_stream(&mut c, init("s", "g")).await;
    let v = vec![1.0, 0.0, 0.0, 0.0];
    s.tx.send(observation(1, v.clone())).await.unwrap();
    s.tx.send(observation(3, v.clone())).await.unwrap(); // gap
    s.tx.send(observation(2, vec![1.0; 5])).await.unwrap(); // wrong dimension
    s.tx.send(observation(2, vec![f32::INFINITY; 4]))
        .await
        .unwrap(); // not finite
    s.tx.send(observation(0, v.clone())).await.unwrap(); // sequence 0
    s.tx.send(observation(2, v.clone())).await.unwrap(); // fine
    let acks = read_acks(&mut s.rx, 6).await;
    let by_seq = |seq: u64, status: i32| {
        acks.iter()
            .filter(move |a| a.sequence == seq && a.status == status)
            .count()
    };
    assert_eq!(by_seq(1, ACCEPTED), 1);
    let gap = acks.iter().find(|a| a.sequence == 3).unwrap();
    assert_eq!(gap.status, REJECTED);
    assert_eq!(gap.code, pb::RejectCode::SequenceGap as i32);
    assert_eq!(gap.expected_sequence, 2);
    assert_eq!(by_seq(2, REJECTED), 2);
    assert_eq!(by_seq(0, REJECTED), 1);
    assert_eq!(by_seq(2, ACCEPTED), 1);
    let stats = space_stats(&mut c, "s").await;
    assert_eq!(stats.committed_lsn, 2, "nothing written by refusals");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_restart_dedups_the_resent_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(5);
    let vectors: Vec<Vec<f32>> = (0..600).map(|_| random_vec(&mut r, 8)).collect();
    let mut first_ids = HashMap::new();
    {
        let server = TestServer::start(dir.path()).await;
        let mut c = server.client().await;
        create_space(&mut c, "s", 8).await;
        let mut s = open_stream(&mut c, init("s", "agent")).await;
        for (i, v) in vectors.iter().take(500).enumerate() {
            s.tx.send(observation(i as u64 + 1, v.clone()))
                .await
                .unwrap();
        }
        // The client only saw the first 300 acks before the server went away.
        for a in read_acks(&mut s.rx, 300).await {
            first_ids.insert(a.sequence, a.memory_id);
        }
        // Give the rest time to become durable, then stop (as if killed: the
        // client never reads those acks).
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(s);
        server.stop().await;
    }
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    let mut s = open_stream(
        &mut c,
        pb::ObserveRequest {
            kind: Some(pb::observe_request::Kind::Init(pb::Init {
                space: "s".into(),
                session_id: "agent".into(),
                resume_only: true,
                ..Default::default()
            })),
        },
    )
    .await;
    assert_eq!(s.init_ack.session_id, "agent");
    let next = s.init_ack.next_sequence;
    assert!(next > 300, "acked ones are durable");
    // Re-send everything not acked (301..) and go on to 600.
    for seq in 301..=600u64 {
        s.tx.send(observation(seq, vectors[seq as usize - 1].clone()))
            .await
            .unwrap();
    }
    let acks = read_acks(&mut s.rx, 300).await;
    for a in &acks {
        let want = if a.sequence < next {
            DUPLICATE
        } else {
            ACCEPTED
        };
        assert_eq!(a.status, want, "sequence {}", a.sequence);
    }
    let stats = space_stats(&mut c, "s").await;
    assert_eq!(stats.committed_lsn, 600, "nothing lost, nothing doubled");
    // Acked before the restart: the same memory ids now.
    let mut s2 = open_stream(&mut c, init("s", "agent")).await;
    s2.tx
        .send(observation(42, vectors[41].clone()))
        .await
        .unwrap();
    let a = read_acks(&mut s2.rx, 1).await.remove(0);
    assert_eq!((a.status, &a.memory_id), (DUPLICATE, &first_ids[&42]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_indexed_acks_until_resume() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "s", 4).await;
    let mut s = open_stream(
        &mut c,
        pb::ObserveRequest {
            kind: Some(pb::observe_request::Kind::Init(pb::Init {
                space: "s".into(),
                want_indexed: true,
                ..Default::default()
            })),
        },
    )
    .await;
    let flow = |pause| pb::ObserveRequest {
        kind: Some(pb::observe_request::Kind::FlowControl(pb::FlowControl {
            pause,
            client_buffer: 0,
        })),
    };
    s.tx.send(flow(true)).await.unwrap();
    for seq in 1..=10u64 {
        s.tx.send(observation(seq, vec![seq as f32, 1.0, 0.0, 0.0]))
            .await
            .unwrap();
    }
    let mut accepted = 0;
    let mut indexed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    while let Ok(Ok(Some(m))) = tokio::time::timeout_at(deadline, s.rx.message()).await {
        match m.kind {
            Some(pb::observe_response::Kind::Acks(b)) => {
                for a in b.acks {
                    match a.status {
                        ACCEPTED => accepted += 1,
                        INDEXED => indexed += 1,
                        _ => {}
                    }
                }
            }
            Some(pb::observe_response::Kind::Status(_)) => panic!("status while paused"),
            _ => {}
        }
    }
    assert_eq!((accepted, indexed), (10, 0), "acks flow, INDEXED waits");
    s.tx.send(flow(false)).await.unwrap();
    // INDEXED is a watermark: everything was in the graph long before the resume,
    // so one ack announces all ten.
    let mut highest = 0;
    while highest < 10 {
        if let Some(pb::observe_response::Kind::Acks(b)) =
            s.rx.message().await.unwrap().unwrap().kind
        {
            for a in b.acks.iter().filter(|a| a.status == INDEXED) {
                indexed += 1;
                assert!(a.sequence > highest, "INDEXED goes forward");
                highest = a.sequence;
                assert_eq!(a.lsn, a.sequence, "the LSN of that sequence");
            }
        }
    }
    assert_eq!(indexed, 1, "coalesced into one ack");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_escalates_status_and_rejects_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.index_threads = 1;
    cfg.ingest.queue_max_items = 400;
    cfg.ingest.pressure_sample_ms = 2;
    let server = TestServer::start_with(cfg).await;
    let mut c = server.client().await;
    create_space(&mut c, "s", 256).await;
    let mut s = open_stream(&mut c, init("s", "flood")).await;
    let mut r = rng(3);
    let mut states = vec![];
    let mut rejected_overloaded = 0;
    let mut next = 1u64;
    let mut in_flight = 0u64;
    // Keep up to 200 in flight; re-send refused ones after their retry_after.
    while rejected_overloaded < 20 {
        while in_flight < 200 {
            s.tx.send(observation(next, random_vec(&mut r, 256)))
                .await
                .unwrap();
            next += 1;
            in_flight += 1;
        }
        match s.rx.message().await.unwrap().unwrap().kind {
            Some(pb::observe_response::Kind::Status(st)) => states.push(st.state),
            Some(pb::observe_response::Kind::Acks(b)) => {
                for a in b.acks {
                    in_flight -= 1;
                    if a.status == REJECTED {
                        // Everything after a refusal is a gap: restart from it.
                        if a.code == pb::RejectCode::Overloaded as i32 {
                            assert!(a.retry_after_ms >= 10, "retry_after given");
                            rejected_overloaded += 1;
                        }
                        next = next.min(a.sequence);
                    }
                }
            }
            _ => {}
        }
        if in_flight == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(
        states.contains(&(pb::PressureState::OverloadedState as i32)),
        "{states:?}"
    );
    // Escalation is sampled (every 2 ms here): a queue that fills within one sample
    // may skip Warning, but not every state between Normal and Overloaded.
    assert!(
        states.contains(&(pb::PressureState::Warning as i32))
            || states.contains(&(pb::PressureState::Critical as i32)),
        "{states:?}"
    );
    // The stream is still open: a resume request is answered with a status.
    s.tx.send(pb::ObserveRequest {
        kind: Some(pb::observe_request::Kind::FlowControl(pb::FlowControl {
            pause: false,
            client_buffer: 0,
        })),
    })
    .await
    .unwrap();
    loop {
        match s
            .rx
            .message()
            .await
            .unwrap()
            .expect("stream still open")
            .kind
        {
            Some(pb::observe_response::Kind::Status(_)) => break,
            Some(_) => {}
            None => panic!("empty"),
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_streams_get_precise_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "s", 4).await;
    let start = |first: pb::ObserveRequest| {
        let mut c = c.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tx.send(first).await.unwrap();
            let r = c
                .observe(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await;
            drop(tx);
            r.map(|_| ()).unwrap_err().code()
        }
    };
    assert_eq!(
        start(observation(1, vec![0.0; 4])).await,
        Code::InvalidArgument
    );
    assert_eq!(start(init("missing", "")).await, Code::NotFound);
    let resume_unknown = pb::ObserveRequest {
        kind: Some(pb::observe_request::Kind::Init(pb::Init {
            space: "s".into(),
            session_id: "never".into(),
            resume_only: true,
            ..Default::default()
        })),
    };
    assert_eq!(start(resume_unknown).await, Code::NotFound);
    // A second Init ends the stream with INVALID_ARGUMENT.
    let mut s = open_stream(&mut c, init("s", "")).await;
    s.tx.send(init("s", "")).await.unwrap();
    let err = loop {
        match s.rx.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without a status"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_sessions_is_resource_exhausted_with_retry_info() {
    use tonic_types::StatusExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.ingest.max_sessions = 1;
    let server = TestServer::start_with(cfg).await;
    let mut c = server.client().await;
    create_space(&mut c, "s", 4).await;
    let _first = open_stream(&mut c, init("s", "one")).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(init("s", "two")).await.unwrap();
    let err = c
        .observe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .is_some()
    );
    assert!(err.metadata().get("grpc-retry-pushback-ms").is_some());
    server.stop().await;
}

/// A recall larger than what the server reads in its first hop (256 memories)
/// streams the rest: every batch full but the last, one snapshot, best first, no
/// memory twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_recall_streams_in_batches_from_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "big", 8).await;
    let mut s = open_stream(&mut c, init("big", "")).await;
    let mut r = rng(3);
    for i in 1..=400u64 {
        s.tx.send(observation(i, random_vec(&mut r, 8)))
            .await
            .unwrap();
    }
    let acks = read_acks(&mut s.rx, 400).await;
    assert!(acks.iter().all(|a| a.status == ACCEPTED));
    let out = c
        .recall(pb::RecallRequest {
            space: "big".into(),
            cue: random_vec(&mut rng(4), 8),
            k: 350,
            batch_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let msgs: Vec<pb::RecallResponse> = tokio_stream::StreamExt::collect::<Vec<_>>(out)
        .await
        .into_iter()
        .map(|m| m.unwrap())
        .collect();
    let sizes: Vec<usize> = msgs.iter().map(|m| m.memories.len()).collect();
    assert_eq!(sizes, vec![100, 100, 100, 50]);
    let more: Vec<bool> = msgs.iter().map(|m| m.more).collect();
    assert_eq!(more, vec![true, true, true, false]);
    assert!(msgs.iter().all(|m| m.snapshot_lsn == 400));
    let all: Vec<&pb::Memory> = msgs.iter().flat_map(|m| &m.memories).collect();
    assert!(
        all.windows(2).all(|w| w[0].score >= w[1].score),
        "best first"
    );
    let mut lsns: Vec<u64> = all.iter().map(|m| m.lsn).collect();
    lsns.sort_unstable();
    lsns.dedup();
    assert_eq!(lsns.len(), 350, "no memory twice");
}
