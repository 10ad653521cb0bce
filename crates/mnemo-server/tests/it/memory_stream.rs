//! MemoryStream: observations and recalls interleaved on one stream; recall results
//! carry the request id; pausing holds recall results while ingestion goes on.
use mnemo_server::pb;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;

use crate::common::{TestServer, create_space};

fn obs(seq: u64) -> pb::MemoryRequest {
    pb::MemoryRequest {
        kind: Some(pb::memory_request::Kind::Observation(pb::Observation {
            content: format!("m{seq}"),
            embedding: vec![seq as f32, 1.0, 0.0, 0.0],
            sequence: seq,
            ..Default::default()
        })),
    }
}

fn recall(id: &str, min_lsn: u64) -> pb::MemoryRequest {
    pb::MemoryRequest {
        kind: Some(pb::memory_request::Kind::Recall(pb::RecallQuery {
            request_id: id.into(),
            request: Some(pb::RecallRequest {
                cue: vec![3.0, 1.0, 0.0, 0.0],
                k: 4,
                batch_size: 2,
                min_lsn,
                ..Default::default()
            }),
        })),
    }
}

fn flow(pause: bool) -> pb::MemoryRequest {
    pb::MemoryRequest {
        kind: Some(pb::memory_request::Kind::FlowControl(pb::FlowControl {
            pause,
            client_buffer: 0,
        })),
    }
}

/// A MemoryStream on `space`, past its InitAck: the request sender and the responses.
async fn open(
    c: &mut mnemo_server::pb::mnemo_client::MnemoClient<tonic::transport::Channel>,
    space: &str,
) -> (
    tokio::sync::mpsc::Sender<pb::MemoryRequest>,
    tonic::Streaming<pb::MemoryResponse>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tx.send(pb::MemoryRequest {
        kind: Some(pb::memory_request::Kind::Init(pb::Init {
            space: space.into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut out = c
        .memory_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let Some(pb::memory_response::Kind::InitAck(_)) = out.message().await.unwrap().unwrap().kind
    else {
        panic!("expected InitAck");
    };
    (tx, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_and_tagged_recalls_interleave_and_pause_holds_recalls_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "m", 4).await;
    let (tx, mut out) = open(&mut c, "m").await;
    for seq in 1..=5 {
        tx.send(obs(seq)).await.unwrap();
    }
    // Read-your-writes on the same stream: a recall that waits for LSN 5.
    tx.send(recall("q1", 5)).await.unwrap();
    let (mut acked, mut q1) = (0, Vec::new());
    while acked < 5 || q1.last().is_none_or(|r: &pb::RecallResult| r.more) {
        match out.message().await.unwrap().unwrap().kind {
            Some(pb::memory_response::Kind::Acks(b)) => acked += b.acks.len(),
            Some(pb::memory_response::Kind::Recall(r)) => {
                assert_eq!(r.request_id, "q1");
                assert!(r.error.is_empty(), "{}", r.error);
                q1.push(r);
            }
            _ => {}
        }
    }
    assert_eq!(q1.len(), 2, "k=4 in batches of 2");
    assert!(q1.iter().all(|r| r.snapshot_lsn >= 5));
    assert_eq!(q1[0].memories[0].content, "m3");

    // Paused: acks keep coming, recall results wait.
    tx.send(flow(true)).await.unwrap();
    tx.send(recall("q2", 0)).await.unwrap();
    for seq in 6..=8 {
        tx.send(obs(seq)).await.unwrap();
    }
    let mut acked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Ok(Some(m))) = tokio::time::timeout_at(deadline, out.message()).await {
        match m.kind {
            Some(pb::memory_response::Kind::Acks(b)) => acked += b.acks.len(),
            Some(pb::memory_response::Kind::Recall(_)) => panic!("recall result while paused"),
            _ => {}
        }
    }
    assert_eq!(acked, 3, "ingestion goes on while paused");
    tx.send(flow(false)).await.unwrap();
    loop {
        if let Some(pb::memory_response::Kind::Recall(r)) =
            out.message().await.unwrap().unwrap().kind
        {
            assert_eq!(r.request_id, "q2");
            if !r.more {
                break;
            }
        }
    }
    // A failing recall is reported in band, tagged, and the stream goes on.
    let mut bad = recall("bad", 0);
    if let Some(pb::memory_request::Kind::Recall(q)) = &mut bad.kind {
        q.request.as_mut().unwrap().cue = vec![1.0; 3];
    }
    tx.send(bad).await.unwrap();
    tx.send(obs(9)).await.unwrap();
    let (mut got_error, mut got_ack) = (false, false);
    while !(got_error && got_ack) {
        match out.message().await.unwrap().unwrap().kind {
            Some(pb::memory_response::Kind::Recall(r)) => {
                assert_eq!(
                    (r.request_id.as_str(), r.error_code.as_str()),
                    ("bad", "INVALID_ARGUMENT")
                );
                got_error = true;
            }
            Some(pb::memory_response::Kind::Acks(b)) => {
                got_ack |= b.acks.iter().any(|a| a.sequence == 9)
            }
            _ => {}
        }
    }
    server.stop().await;
}

/// An `ObservationBatch` on a MemoryStream is acked per item, and a packed
/// recall cue on the same stream finds what it wrote, with packed embeddings back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_packed_observations_and_a_packed_recall_on_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "b", 4).await;
    let (tx, mut out) = open(&mut c, "b").await;
    let vector = |seq: u64| vec![seq as f32, 1.0, 0.0, 0.0];
    let observations = (1..=50)
        .map(|seq| pb::Observation {
            content: format!("b{seq}"),
            embedding_f32: mnemo_proto::pack_f32(&vector(seq)),
            sequence: seq,
            ..Default::default()
        })
        .collect();
    tx.send(pb::MemoryRequest {
        kind: Some(pb::memory_request::Kind::Batch(pb::ObservationBatch {
            observations,
        })),
    })
    .await
    .unwrap();
    tx.send(pb::MemoryRequest {
        kind: Some(pb::memory_request::Kind::Recall(pb::RecallQuery {
            request_id: "p".into(),
            request: Some(pb::RecallRequest {
                cue_f32: mnemo_proto::pack_f32(&vector(7)),
                k: 1,
                min_lsn: 50,
                include_embedding: true,
                packed_embeddings: true,
                ..Default::default()
            }),
        })),
    })
    .await
    .unwrap();
    let (mut accepted, mut hit) = (Vec::new(), None);
    while accepted.len() < 50 || hit.is_none() {
        match out.message().await.unwrap().unwrap().kind {
            Some(pb::memory_response::Kind::Acks(b)) => {
                for a in b.acks {
                    assert_eq!(a.status, pb::AckStatus::Accepted as i32, "{a:?}");
                    accepted.push(a.sequence);
                }
            }
            Some(pb::memory_response::Kind::Recall(r)) => {
                assert!(r.error.is_empty(), "{}", r.error);
                hit = r.memories.into_iter().next();
            }
            _ => {}
        }
    }
    assert_eq!(accepted, (1..=50).collect::<Vec<_>>());
    let hit = hit.unwrap();
    assert_eq!(hit.content, "b7");
    assert_eq!(hit.embedding_f32, mnemo_proto::pack_f32(&vector(7)));
}
