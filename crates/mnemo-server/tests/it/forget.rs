//! Forget, supersede and expiry over the wire: each forget selector against a
//! client-side oracle at snapshots before and after, supersede in band and its
//! NOT_FOUND refusal, get by id reporting the successor, a TTL space, compaction
//! and the snapshot it makes too old, and every refusal.
use mnemo_server::pb;
use mnemo_server::pb::mnemo_client::MnemoClient;
use std::collections::BTreeSet;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{
    TestServer, create_space, init, open_stream, random_vec, read_acks, rng, space_stats,
};

const N: u64 = 200;

fn id(i: u64) -> String {
    uuid::Uuid::from_u128(5000 + i as u128).to_string()
}

/// Stores `0..N` in space `f` through session `s` (memory i: user u{i % 4}).
async fn fill(c: &mut MnemoClient<Channel>) {
    let mut s = open_stream(c, init("f", "s")).await;
    for i in 0..N {
        s.tx.send(pb::ObserveRequest {
            kind: Some(pb::observe_request::Kind::Observation(pb::Observation {
                id: id(i),
                content: format!("m{i}"),
                embedding: random_vec(&mut rng(i), 8),
                tags: [("user".to_string(), format!("u{}", i % 4))].into(),
                sequence: i + 1,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    }
    let acks = read_acks(&mut s.rx, N as usize).await;
    assert!(
        acks.iter()
            .all(|a| a.status == pb::AckStatus::Accepted as i32)
    );
}

/// The ids an export of `snapshot` (0: latest) returns.
async fn exported(c: &mut MnemoClient<Channel>, space: &str, snapshot: u64) -> BTreeSet<String> {
    let mut e = c
        .export(pb::ExportRequest {
            space: space.into(),
            snapshot_lsn: snapshot,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = BTreeSet::new();
    while let Some(m) = e.message().await.unwrap() {
        out.extend(m.memories.into_iter().map(|m| m.id));
    }
    out
}

/// The ids a recall of everything at `snapshot` (0: latest) returns.
async fn recalled(c: &mut MnemoClient<Channel>, space: &str, snapshot: u64) -> BTreeSet<String> {
    let r = c
        .recall_once(pb::RecallRequest {
            space: space.into(),
            cue: vec![0.1; 8],
            k: 1000,
            snapshot_lsn: snapshot,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    r.memories.into_iter().map(|m| m.id).collect()
}

fn user(u: u64) -> pb::Filter {
    pb::Filter {
        tags: vec![pb::TagClause {
            key: "user".into(),
            test: Some(pb::tag_clause::Test::Equals(format!("u{u}"))),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn forget_each_selector_against_an_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "f", 8).await;
    fill(&mut c).await;
    let mut alive: BTreeSet<String> = (0..N).map(id).collect();
    let before = space_stats(&mut c, "f").await.committed_lsn;

    let r = c
        .forget(pb::ForgetRequest {
            space: "f".into(),
            filter: Some(user(2)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.forgotten, r.lsn), (N / 4, before + 1));
    alive.retain(|x| !(0..N).filter(|i| i % 4 == 2).any(|i| id(i) == *x));
    assert_eq!(recalled(&mut c, "f", 0).await, alive);
    assert_eq!(exported(&mut c, "f", 0).await, alive);
    assert_eq!(recalled(&mut c, "f", before).await.len(), N as usize);
    assert_eq!(exported(&mut c, "f", before).await.len(), N as usize);

    let r = c
        .forget(pb::ForgetRequest {
            space: "f".into(),
            ids: vec![id(0), id(1), id(2), uuid::Uuid::nil().to_string()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.forgotten, 2,
        "id 2 was forgotten already, nil never existed"
    );
    alive.remove(&id(0));
    alive.remove(&id(1));
    let got = c
        .get_memories(pb::GetMemoriesRequest {
            space: "f".into(),
            ids: vec![id(0), id(3)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.missing, vec![id(0)]);
    assert_eq!(got.memories.len(), 1);

    // By session, narrowed by a filter: the intersection.
    let r = c
        .forget(pb::ForgetRequest {
            space: "f".into(),
            session_id: "s".into(),
            filter: Some(user(3)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.forgotten, N / 4);
    alive.retain(|x| !(0..N).filter(|i| i % 4 == 3).any(|i| id(i) == *x));
    assert_eq!(recalled(&mut c, "f", 0).await, alive);

    // Refusals, each changing nothing.
    let lsn = space_stats(&mut c, "f").await.committed_lsn;
    let refused =
        |r: Result<tonic::Response<pb::ForgetResponse>, tonic::Status>| r.expect_err("refused");
    let e = refused(
        c.forget(pb::ForgetRequest {
            space: "f".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("empty selector"), "{}", e.message());
    let e = refused(
        c.forget(pb::ForgetRequest {
            space: "f".into(),
            ids: vec!["not-a-uuid".into()],
            ..Default::default()
        })
        .await,
    );
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("ids[0]"), "{}", e.message());
    let e = refused(
        c.forget(pb::ForgetRequest {
            space: "f".into(),
            ids: (0..10_001).map(id).collect(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = refused(
        c.forget(pb::ForgetRequest {
            space: "nope".into(),
            ids: vec![id(5)],
            ..Default::default()
        })
        .await,
    );
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(space_stats(&mut c, "f").await.committed_lsn, lsn);

    // Compaction purges: the snapshot before the first forget is too old now.
    let done = c
        .compact(pb::CompactRequest { space: "f".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.purged, N - alive.len() as u64);
    let e = c
        .recall_once(pb::RecallRequest {
            space: "f".into(),
            cue: vec![0.1; 8],
            snapshot_lsn: before,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert!(e.message().contains("too old"), "{}", e.message());
    assert_eq!(recalled(&mut c, "f", 0).await, alive);
    let st = space_stats(&mut c, "f").await;
    assert_eq!(st.indexed_count, alive.len() as u64);
    assert_eq!(st.unpurged, 0);
    server.stop().await;
}

#[tokio::test]
async fn supersede_in_band_and_by_remember() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "f", 8).await;
    fill(&mut c).await;
    // In a session: one correction, then one naming an unknown memory, one naming a
    // superseded memory, and a bad UUID.
    let mut s = open_stream(&mut c, init("f", "fixes")).await;
    let fix = |seq: u64, supersedes: String| pb::ObserveRequest {
        kind: Some(pb::observe_request::Kind::Observation(pb::Observation {
            content: format!("fix {seq}"),
            embedding: random_vec(&mut rng(900 + seq), 8),
            sequence: seq,
            supersedes,
            ..Default::default()
        })),
    };
    s.tx.send(fix(1, id(7))).await.unwrap();
    let a = read_acks(&mut s.rx, 1).await;
    assert_eq!(a[0].status, pb::AckStatus::Accepted as i32);
    let new_id = a[0].memory_id.clone();
    for (seq, target) in [
        (2, uuid::Uuid::nil().to_string()),
        (2, id(7)),
        (2, "zzz".to_string()),
    ] {
        s.tx.send(fix(seq, target)).await.unwrap();
        let a = read_acks(&mut s.rx, 1).await;
        assert_eq!(a[0].status, pb::AckStatus::Rejected as i32, "{a:?}");
        let want = if seq == 2 && a[0].reason.contains("UUID") {
            pb::RejectCode::Invalid
        } else {
            pb::RejectCode::NotFound
        };
        assert_eq!(a[0].code, want as i32, "{a:?}");
    }
    let got = c
        .get_memories(pb::GetMemoriesRequest {
            space: "f".into(),
            ids: vec![id(7), new_id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.superseded,
        vec![pb::Superseded {
            id: id(7),
            superseded_by: new_id.clone()
        }]
    );
    assert_eq!(got.memories[0].supersedes, id(7));
    let all = recalled(&mut c, "f", 0).await;
    assert!(all.contains(&new_id) && !all.contains(&id(7)));
    // Remember can correct too, keeping the id; a second correction of the same
    // memory in flight or after is NOT_FOUND.
    let r = c
        .remember(pb::RememberRequest {
            space: "f".into(),
            observation: Some(pb::Observation {
                id: id(8),
                supersedes: id(8),
                content: "m8, corrected".into(),
                embedding: random_vec(&mut rng(8), 8),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.memory_id, id(8));
    let e = c
        .remember(pb::RememberRequest {
            space: "f".into(),
            observation: Some(pb::Observation {
                supersedes: id(7),
                embedding: vec![0.5; 8],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn a_ttl_space_forgets_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::common::config(dir.path());
    cfg.retention.maintenance_interval_ms = 50;
    let server = TestServer::start_with(cfg).await;
    let mut c = server.client().await;
    let info = c
        .create_space(pb::CreateSpaceRequest {
            name: "t".into(),
            dim: 8,
            default_ttl_ms: 300,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.default_ttl_ms, 300);
    let far = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
        + 3_600_000_000;
    let mut kept = String::new();
    for (i, expires) in [(0, None), (1, Some(far))] {
        let r = c
            .remember(pb::RememberRequest {
                space: "t".into(),
                observation: Some(pb::Observation {
                    content: format!("t{i}"),
                    embedding: random_vec(&mut rng(i), 8),
                    expires_at_us: expires,
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        if expires.is_some() {
            kept = r.memory_id;
        }
    }
    assert_eq!(recalled(&mut c, "t", 0).await.len(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(recalled(&mut c, "t", 0).await, [kept.clone()].into());
    let got = c
        .get_memories(pb::GetMemoriesRequest {
            space: "t".into(),
            ids: vec![kept.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.memories[0].expires_at_us, Some(far));
    // An expiry in the past, a negative TTL: INVALID_ARGUMENT.
    let e = c
        .remember(pb::RememberRequest {
            space: "t".into(),
            observation: Some(pb::Observation {
                embedding: vec![0.5; 8],
                expires_at_us: Some(1),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("expires_at"), "{}", e.message());
    server.stop().await;
}
