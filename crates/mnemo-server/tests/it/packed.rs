//! Observation batches and packed embeddings: a batch is acked item by item as
//! if each were sent alone; packed vectors are the same vectors; a bad packed
//! vector is refused in band with nothing written; embeddings come back packed
//! when asked.
use mnemo_server::pb;
use tonic::Code;

use crate::common::{TestServer, create_space, init, open_stream, random_vec, read_acks, rng};

const ACCEPTED: i32 = pb::AckStatus::Accepted as i32;
const REJECTED: i32 = pb::AckStatus::Rejected as i32;

fn pack(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn packed(seq: u64, v: &[f32]) -> pb::Observation {
    pb::Observation {
        content: format!("packed {seq}"),
        embedding_f32: pack(v),
        sequence: seq,
        ..Default::default()
    }
}

fn batch(observations: Vec<pb::Observation>) -> pb::ObserveRequest {
    pb::ObserveRequest {
        kind: Some(pb::observe_request::Kind::Batch(pb::ObservationBatch {
            observations,
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_packed_observations_are_acked_per_item_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "p", 8).await;
    let mut s = open_stream(&mut c, init("p", "feed")).await;
    let caps = &s.init_ack.capabilities;
    assert!(caps.iter().any(|c| c == "observation_batch"), "{caps:?}");
    assert!(caps.iter().any(|c| c == "packed_embeddings"), "{caps:?}");
    let mut r = rng(3);
    let vectors: Vec<Vec<f32>> = (0..300).map(|_| random_vec(&mut r, 8)).collect();
    // Three batches of 100; in the second, item 150 has a bad length and item
    // 151 sets both forms: refused in band, the rest accepted.
    for chunk in 0..3u64 {
        let items = (chunk * 100 + 1..=chunk * 100 + 100)
            .map(|seq| {
                let v = &vectors[(seq - 1) as usize];
                let mut o = packed(seq, v);
                if seq == 150 {
                    o.embedding_f32.pop();
                }
                if seq == 151 {
                    o.embedding = v.clone();
                }
                o
            })
            .collect();
        s.tx.send(batch(items)).await.unwrap();
    }
    let acks = read_acks(&mut s.rx, 300).await;
    let refused: Vec<&pb::Ack> = acks.iter().filter(|a| a.status == REJECTED).collect();
    assert_eq!(refused.len(), 151);
    assert_eq!(refused[0].sequence, 150);
    assert!(
        refused[0].reason.contains("multiple of 4"),
        "{:?}",
        refused[0]
    );
    assert_eq!(refused[1].sequence, 151);
    assert!(refused[1].reason.contains("both"), "{:?}", refused[1]);
    // After the refused 150, the rest are gaps (150 is expected next).
    assert!(
        refused[2..]
            .iter()
            .all(|a| a.code == pb::RejectCode::SequenceGap as i32 && a.expected_sequence == 150)
    );
    let accepted: Vec<u64> = acks
        .iter()
        .filter(|a| a.status == ACCEPTED)
        .map(|a| a.sequence)
        .collect();
    assert_eq!(accepted, (1..=149).collect::<Vec<_>>());
    // Every stored vector is the one sent, in floats and packed.
    for (form, packed_out) in [("floats", false), ("packed", true)] {
        let got = c
            .recall_once(pb::RecallRequest {
                space: "p".into(),
                cue_f32: pack(&vectors[41]),
                k: 1,
                include_embedding: true,
                packed_embeddings: packed_out,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let m = &got.memories[0];
        assert_eq!(m.content, "packed 42", "{form}");
        if packed_out {
            assert!(m.embedding.is_empty());
            assert_eq!(m.embedding_f32, pack(&vectors[41]));
        } else {
            assert!(m.embedding_f32.is_empty());
            assert_eq!(m.embedding, vectors[41]);
        }
    }
    // A cue with both forms, or a bad length, is INVALID_ARGUMENT.
    for (cue, cue_f32) in [
        (vectors[0].clone(), pack(&vectors[0])),
        (vec![], vec![0u8; 31]),
    ] {
        let err = c
            .recall_once(pb::RecallRequest {
                space: "p".into(),
                cue,
                cue_f32,
                k: 1,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    // A batch over the bound ends the stream and writes nothing.
    let before = c
        .describe_space(pb::DescribeSpaceRequest { name: "p".into() })
        .await
        .unwrap()
        .into_inner();
    let mut s2 = open_stream(&mut c, init("p", "big")).await;
    let v = pack(&vectors[0]);
    let too_many = (1..=mnemo_server::MAX_BATCH_OBSERVATIONS as u64 + 1)
        .map(|seq| pb::Observation {
            embedding_f32: v.clone(),
            sequence: seq,
            ..Default::default()
        })
        .collect();
    s2.tx.send(batch(too_many)).await.unwrap();
    let err = loop {
        match s2.rx.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(st) => break st,
        }
    };
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("4096"), "{err:?}");
    let after = c
        .describe_space(pb::DescribeSpaceRequest { name: "p".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        before.stats.unwrap().committed_lsn,
        after.stats.unwrap().committed_lsn
    );
}
