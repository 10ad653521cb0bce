//! Filters, get by id, id uniqueness and ranking over the wire: each filter kind
//! against a brute-force oracle over what was acked (memories still in the fresh
//! tier included), refusals naming the clause, and ALREADY_EXISTS in band.
use mnemo_server::pb;
use mnemo_server::pb::mnemo_client::MnemoClient;
use std::collections::HashMap;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{TestServer, create_space, init, open_stream, random_vec, read_acks, rng};

const N: u64 = 600;

fn tags(i: u64) -> HashMap<String, String> {
    let mut t: HashMap<String, String> = [("user".to_string(), format!("u{}", i % 10))].into();
    if i % 100 == 3 {
        t.insert("rare".into(), "yes".into());
    }
    t
}

/// When memory 0 happened: memory i happened i seconds later, the last just now.
fn base() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    now - N as i64 * 1_000_000
}

/// Stores `0..N` through a session; returns every memory as exported.
async fn fill(c: &mut MnemoClient<Channel>, base: i64) -> Vec<pb::Memory> {
    let mut s = open_stream(c, init("f", "filler")).await;
    for i in 0..N {
        s.tx.send(pb::ObserveRequest {
            kind: Some(pb::observe_request::Kind::Observation(pb::Observation {
                content: format!("m{i}"),
                embedding: random_vec(&mut rng(i), 8),
                confidence: Some((i % 10) as f32 / 10.0),
                occurred_at_us: Some(base + i as i64 * 1_000_000),
                tags: tags(i),
                sequence: i + 1,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    }
    read_acks(&mut s.rx, N as usize).await;
    let mut out = Vec::new();
    let mut e = c
        .export(pb::ExportRequest {
            space: "f".into(),
            include_embedding: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(m) = e.message().await.unwrap() {
        out.extend(m.memories);
    }
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

fn equals(key: &str, value: &str) -> pb::TagClause {
    pb::TagClause {
        key: key.into(),
        test: Some(pb::tag_clause::Test::Equals(value.into())),
    }
}

async fn recall_ids(c: &mut MnemoClient<Channel>, cue: &[f32], f: pb::Filter) -> Vec<u64> {
    c.recall_once(pb::RecallRequest {
        space: "f".into(),
        cue: cue.to_vec(),
        k: 10,
        filter: Some(f),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .memories
    .iter()
    .map(|m| m.lsn)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_filter_kind_returns_the_exact_top_k_of_its_matches() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "f", 8).await;
    let base = base();
    let all = fill(&mut c, base).await;
    type Oracle = Box<dyn Fn(&pb::Memory) -> bool>;
    let cases: Vec<(&str, pb::Filter, Oracle)> = vec![
        (
            "equals",
            pb::Filter {
                tags: vec![equals("user", "u4")],
                ..Default::default()
            },
            Box::new(|m| m.tags["user"] == "u4"),
        ),
        (
            "any_of",
            pb::Filter {
                tags: vec![pb::TagClause {
                    key: "user".into(),
                    test: Some(pb::tag_clause::Test::AnyOf(pb::StringSet {
                        values: vec!["u1".into(), "u2".into()],
                    })),
                }],
                ..Default::default()
            },
            Box::new(|m| ["u1", "u2"].contains(&m.tags["user"].as_str())),
        ),
        (
            "present (1 %)",
            pb::Filter {
                tags: vec![pb::TagClause {
                    key: "rare".into(),
                    test: Some(pb::tag_clause::Test::Present(true)),
                }],
                ..Default::default()
            },
            Box::new(|m| m.tags.contains_key("rare")),
        ),
        (
            "absent",
            pb::Filter {
                tags: vec![pb::TagClause {
                    key: "rare".into(),
                    test: Some(pb::tag_clause::Test::Absent(true)),
                }],
                ..Default::default()
            },
            Box::new(|m| !m.tags.contains_key("rare")),
        ),
        (
            "session",
            pb::Filter {
                session_ids: vec!["filler".into()],
                ..Default::default()
            },
            Box::new(|_| true),
        ),
        (
            "occurred_at range and min_confidence",
            pb::Filter {
                occurred_at: Some(pb::TimeRange {
                    from_us: Some(base + 100_000_000),
                    until_us: Some(base + 300_000_000),
                }),
                min_confidence: Some(0.7),
                ..Default::default()
            },
            Box::new(move |m| {
                (base + 100_000_000..base + 300_000_000).contains(&m.occurred_at_us)
                    && m.confidence >= 0.7
            }),
        ),
    ];
    for (name, f, oracle) in cases {
        for q in 0..5 {
            let cue = random_vec(&mut rng(1000 + q), 8);
            let mut want: Vec<(u64, f32)> = all
                .iter()
                .filter(|m| oracle(m))
                .map(|m| (m.lsn, cosine(&cue, &m.embedding)))
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1));
            let want: Vec<u64> = want.iter().take(10).map(|w| w.0).collect();
            assert_eq!(recall_ids(&mut c, &cue, f.clone()).await, want, "{name}");
        }
        // Export walks exactly the matching memories.
        let mut e = c
            .export(pb::ExportRequest {
                space: "f".into(),
                filter: Some(f.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut exported = Vec::new();
        while let Some(m) = e.message().await.unwrap() {
            exported.extend(m.memories.iter().map(|m| m.lsn));
        }
        let want: Vec<u64> = all.iter().filter(|m| oracle(m)).map(|m| m.lsn).collect();
        assert_eq!(exported, want, "export {name}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_by_id_unique_ids_ranking_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "f", 8).await;
    let all = fill(&mut c, base()).await;
    // Get by id: found ones in order, the unknown reported.
    let unknown = uuid::Uuid::now_v7().to_string();
    let got = c
        .get_memories(pb::GetMemoriesRequest {
            space: "f".into(),
            ids: vec![all[5].id.clone(), unknown.clone(), all[2].id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.memories.iter().map(|m| m.lsn).collect::<Vec<_>>(),
        vec![all[5].lsn, all[2].lsn]
    );
    assert_eq!(got.missing, vec![unknown]);
    let bad = c
        .get_memories(pb::GetMemoriesRequest {
            space: "f".into(),
            ids: vec!["not-a-uuid".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("ids[0]"), "{}", bad.message());
    // An id already in the space: ALREADY_EXISTS in band, unary too; nothing written.
    let mut s = open_stream(&mut c, init("f", "dup-ids")).await;
    s.tx.send(pb::ObserveRequest {
        kind: Some(pb::observe_request::Kind::Observation(pb::Observation {
            id: all[0].id.clone(),
            embedding: vec![1.0; 8],
            sequence: 1,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let ack = &read_acks(&mut s.rx, 1).await[0];
    assert_eq!(ack.code, pb::RejectCode::AlreadyExists as i32, "{ack:?}");
    let unary = c
        .remember(pb::RememberRequest {
            space: "f".into(),
            observation: Some(pb::Observation {
                id: all[1].id.clone(),
                embedding: vec![1.0; 8],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(unary.code(), Code::AlreadyExists);
    // A bad filter names its clause.
    for (f, words) in [
        (
            pb::Filter {
                tags: vec![pb::TagClause {
                    key: "user".into(),
                    test: None,
                }],
                ..Default::default()
            },
            "filter.tags[0]",
        ),
        (
            pb::Filter {
                occurred_at: Some(pb::TimeRange {
                    from_us: Some(9),
                    until_us: Some(1),
                }),
                ..Default::default()
            },
            "filter.occurred_at",
        ),
        (
            pb::Filter {
                session_ids: vec!["s".into(); 65],
                ..Default::default()
            },
            "filter.session_ids",
        ),
    ] {
        let err = c
            .recall_once(pb::RecallRequest {
                space: "f".into(),
                cue: vec![1.0; 8],
                k: 5,
                filter: Some(f),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(words), "{}", err.message());
    }
    // Ranking: the recent ones win with a short half-life; the score is combined.
    let ranked = c
        .recall_once(pb::RecallRequest {
            space: "f".into(),
            cue: vec![1.0; 8],
            k: 5,
            ranking: Some(pb::Ranking {
                half_life_ms: 20_000,
                confidence_weight: 0.0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        ranked.memories.iter().all(|m| m.lsn > N - 100),
        "{:?}",
        ranked.memories.iter().map(|m| m.lsn).collect::<Vec<_>>()
    );
    assert!(
        ranked
            .memories
            .iter()
            .all(|m| (0.0..=1.0).contains(&m.score))
    );
    server.stop().await;
}
