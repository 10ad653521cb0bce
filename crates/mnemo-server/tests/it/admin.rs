//! Space admin, unary calls, errors mapped to status codes, health, reflection.
use mnemo_server::pb;
use tonic::Code;

use crate::common::{TestServer, create_space, random_vec, rng, space_stats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spaces_remember_recall_once_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "notes", 8).await;
    let err = c
        .create_space(pb::CreateSpaceRequest {
            name: "notes".into(),
            dim: 8,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = c
        .create_space(pb::CreateSpaceRequest {
            name: "bad".into(),
            dim: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let mut r = rng(1);
    let v = random_vec(&mut r, 8);
    let done = c
        .remember(pb::RememberRequest {
            space: "notes".into(),
            observation: Some(pb::Observation {
                content: "tea".into(),
                embedding: v.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.lsn, 1);
    // Bad input: precise status, nothing written.
    for (emb, what) in [(vec![1.0; 7], "dimension"), (vec![f32::NAN; 8], "NaN")] {
        let err = c
            .remember(pb::RememberRequest {
                space: "notes".into(),
                observation: Some(pb::Observation {
                    embedding: emb,
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}");
    }
    let err = c
        .remember(pb::RememberRequest {
            space: "nope".into(),
            observation: Some(pb::Observation {
                embedding: v.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let hits = c
        .recall_once(pb::RecallRequest {
            space: "notes".into(),
            cue: v.clone(),
            k: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hits.snapshot_lsn, 1);
    assert_eq!(hits.memories[0].id, done.memory_id);
    assert_eq!(hits.memories[0].content, "tea");

    assert_eq!(space_stats(&mut c, "notes").await.committed_lsn, 1);
    let list = c
        .list_spaces(pb::ListSpacesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.spaces.len(), 1);
    let stats = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert!(stats.server_rss_bytes > 0);
    assert_eq!(stats.accepted, 1);
    c.drop_space(pb::DropSpaceRequest {
        name: "notes".into(),
    })
    .await
    .unwrap();
    let err = c
        .describe_space(pb::DescribeSpaceRequest {
            name: "notes".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "mnemo.v1.Mnemo"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"mnemo.v1.Mnemo".to_string()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_and_content_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "s", 4).await;
    let remember = |content: String| pb::RememberRequest {
        space: "s".into(),
        observation: Some(pb::Observation {
            content,
            embedding: vec![1.0, 0.0, 0.0, 0.0],
            ..Default::default()
        }),
    };
    let err = c.remember(remember("x".repeat(70_000))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "content over 64 KiB");
    let err = c.remember(remember("x".repeat(5 << 20))).await.unwrap_err();
    // tonic's decoder answers OUT_OF_RANGE, naming the size and the limit.
    assert_eq!(err.code(), Code::OutOfRange, "message over 4 MiB: {err}");
    assert!(err.message().contains("4194304"), "{err}");
    let stats = space_stats(&mut c, "s").await;
    assert_eq!(stats.committed_lsn, 0, "nothing written");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_the_engine_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let cfg = crate::common::config(dir.path());
    let task = tokio::spawn(mnemo_server::serve(
        listener,
        move || {
            let _ = gate_rx.recv(); // recovery takes until the test lets it finish
            mnemo_engine::Engine::open(cfg)
        },
        mnemo_server::Options::default(),
        async move {
            let _ = stopped.await;
        },
        |_| {},
    ));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = |mut h: tonic_health::pb::health_client::HealthClient<_>| async move {
        h.check(tonic_health::pb::HealthCheckRequest {
            service: "mnemo.v1.Mnemo".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
    };
    use tonic_health::pb::health_check_response::ServingStatus;
    assert_eq!(
        check(health.clone()).await,
        ServingStatus::NotServing as i32
    );
    let mut c = pb::mnemo_client::MnemoClient::new(channel);
    let err = c.list_spaces(pb::ListSpacesRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    gate_tx.send(()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while check(health.clone()).await != ServingStatus::Serving as i32 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    c.list_spaces(pb::ListSpacesRequest {}).await.unwrap();
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_walks_a_snapshot_in_lsn_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut c = server.client().await;
    create_space(&mut c, "ex", 4).await;
    let mut r = rng(7);
    let mut sent = Vec::new();
    for i in 0..25 {
        let v = random_vec(&mut r, 4);
        c.remember(pb::RememberRequest {
            space: "ex".into(),
            observation: Some(pb::Observation {
                content: format!("m{i}"),
                embedding: v.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
        sent.push(v);
    }
    let mut stream = c
        .export(pb::ExportRequest {
            space: "ex".into(),
            after_lsn: 3,
            snapshot_lsn: 20,
            batch_size: 6,
            include_embedding: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    let mut messages = 0;
    while let Some(m) = stream.message().await.unwrap() {
        messages += 1;
        assert_eq!(m.snapshot_lsn, 20);
        assert!(m.memories.len() <= 6);
        assert_eq!(m.more, got.len() + m.memories.len() < 17);
        got.extend(m.memories);
    }
    assert_eq!(messages, 3);
    let lsns: Vec<u64> = got.iter().map(|m| m.lsn).collect();
    assert_eq!(lsns, (4..=20).collect::<Vec<_>>());
    for m in &got {
        assert_eq!(m.content, format!("m{}", m.lsn - 1));
        assert_eq!(m.embedding, sent[m.lsn as usize - 1]);
    }
    // Latest snapshot, default batch: everything, one message.
    let mut stream = c
        .export(pb::ExportRequest {
            space: "ex".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let m = stream.message().await.unwrap().unwrap();
    assert_eq!((m.memories.len(), m.snapshot_lsn, m.more), (25, 25, false));
    assert!(m.memories[0].embedding.is_empty());
    assert!(stream.message().await.unwrap().is_none());
    // An uncommitted snapshot and an unknown space fail the call.
    let err = c
        .export(pb::ExportRequest {
            space: "ex".into(),
            snapshot_lsn: 26,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .export(pb::ExportRequest {
            space: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}
