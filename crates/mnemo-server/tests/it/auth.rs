//! API keys with per-space rights, and TLS (optionally mutual), over a real listener.
use mnemo_server::auth::{ApiKeyConfig, Auth, AuthConfig, TlsConfig, key_digest_hex};
use mnemo_server::pb;
use mnemo_server::pb::mnemo_client::MnemoClient;
use std::path::PathBuf;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::common::{TestServer, config, init, observation, read_acks};

const ADMIN: &str = "admin-key-0000000000000000";
const WRITER: &str = "writer-key-111111111111111";
const READER: &str = "reader-key-222222222222222";

fn key(name: &str, read: &[&str], write: &[&str], admin: &[&str]) -> ApiKeyConfig {
    let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    ApiKeyConfig {
        name: name.into(),
        read: list(read),
        write: list(write),
        admin: list(admin),
        ..Default::default()
    }
}

fn auth() -> Auth {
    Auth::from_config(&AuthConfig {
        keys: vec![
            ApiKeyConfig {
                key: ADMIN.into(),
                ..key("ops", &["*"], &["*"], &["*"])
            },
            // Stored as a digest: the config holds no secret.
            ApiKeyConfig {
                key_sha256: key_digest_hex(WRITER),
                ..key("ingest", &["agents-*"], &["agents-*"], &[])
            },
            ApiKeyConfig {
                key: READER.into(),
                ..key("dashboard", &["agents-a"], &[], &[])
            },
        ],
    })
    .unwrap()
}

type Client = MnemoClient<InterceptedService<Channel, Bearer>>;

#[derive(Clone)]
struct Bearer(Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(k) = &self.0 {
            req.metadata_mut()
                .insert("authorization", k.parse().unwrap());
        }
        Ok(req)
    }
}

async fn client(server: &TestServer, header: Option<String>) -> Client {
    let channel = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    MnemoClient::with_interceptor(channel, Bearer(header))
}

async fn as_key(server: &TestServer, key: &str) -> Client {
    client(server, Some(format!("Bearer {key}"))).await
}

fn recall(space: &str) -> pb::RecallRequest {
    pb::RecallRequest {
        space: space.into(),
        cue: vec![1.0, 0.0, 0.0, 0.0],
        k: 5,
        ..Default::default()
    }
}

async fn create(c: &mut Client, name: &str) -> Result<(), tonic::Status> {
    c.create_space(pb::CreateSpaceRequest {
        name: name.into(),
        dim: 4,
        ..Default::default()
    })
    .await
    .map(|_| ())
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(st) => st.code(),
    }
}

/// Opens an Observe stream; Err if the call itself is refused.
async fn observe_into(
    c: &mut Client,
    space: &str,
    seqs: u64,
) -> Result<Vec<pb::Ack>, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tx.send(init(space, "")).await.unwrap();
    for seq in 1..=seqs {
        tx.send(observation(seq, vec![1.0, seq as f32, 0.0, 0.0]))
            .await
            .unwrap();
    }
    let mut inbound = c.observe(ReceiverStream::new(rx)).await?.into_inner();
    let _init_ack = inbound.message().await?;
    Ok(read_acks(&mut inbound, seqs as usize).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_authenticate_and_rights_are_checked_per_space() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_options(
        config(dir.path()),
        mnemo_server::Options {
            auth: auth(),
            ..Default::default()
        },
    )
    .await;

    // No key, a wrong key, a malformed header: UNAUTHENTICATED, for every kind of call.
    let mut anon = client(&server, None).await;
    assert_eq!(
        code(anon.list_spaces(pb::ListSpacesRequest {}).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(anon.recall_once(recall("agents-a")).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(observe_into(&mut anon, "agents-a", 1).await),
        Code::Unauthenticated
    );
    let mut wrong = as_key(&server, "not-a-key-at-all-0000000").await;
    assert_eq!(
        code(wrong.stats(pb::StatsRequest {}).await),
        Code::Unauthenticated
    );
    let mut basic = client(&server, Some(format!("Basic {ADMIN}"))).await;
    assert_eq!(code(create(&mut basic, "x").await), Code::Unauthenticated);
    // Health stays open for load balancers.
    let channel = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING without a key");

    let mut ops = as_key(&server, ADMIN).await;
    let mut ingest = as_key(&server, WRITER).await;
    let mut dash = as_key(&server, READER).await;

    // admin: create and drop.
    for name in ["agents-a", "agents-b", "private"] {
        create(&mut ops, name).await.unwrap();
    }
    assert_eq!(
        code(create(&mut ingest, "agents-c").await),
        Code::PermissionDenied
    );
    let denied = ingest
        .drop_space(pb::DropSpaceRequest {
            name: "agents-a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("'ingest'"), "{denied:?}");

    // write: Observe, Remember.
    let acks = observe_into(&mut ingest, "agents-a", 3).await.unwrap();
    assert!(
        acks.iter()
            .all(|a| a.status == pb::AckStatus::Accepted as i32)
    );
    assert_eq!(
        code(observe_into(&mut ingest, "private", 1).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(observe_into(&mut dash, "agents-a", 1).await),
        Code::PermissionDenied
    );
    let remember = |space: &str| pb::RememberRequest {
        space: space.into(),
        observation: Some(pb::Observation {
            content: "one".into(),
            embedding: vec![0.0, 1.0, 0.0, 0.0],
            ..Default::default()
        }),
    };
    ingest.remember(remember("agents-b")).await.unwrap();
    assert_eq!(
        code(dash.remember(remember("agents-a")).await),
        Code::PermissionDenied
    );

    // read: Recall, RecallOnce, Export, DescribeSpace.
    let found = dash
        .recall_once(recall("agents-a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.memories.len(), 3);
    let mut stream = dash.recall(recall("agents-a")).await.unwrap().into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().memories.len(), 3);
    assert_eq!(
        code(dash.recall_once(recall("agents-b")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(dash.recall(recall("agents-b")).await),
        Code::PermissionDenied
    );
    // A space that does not exist: denied, not NOT_FOUND (no probing for names).
    assert_eq!(
        code(dash.recall_once(recall("nope")).await),
        Code::PermissionDenied
    );
    let export = |space: &str| pb::ExportRequest {
        space: space.into(),
        ..Default::default()
    };
    assert!(dash.export(export("agents-a")).await.is_ok());
    assert_eq!(
        code(dash.export(export("private")).await),
        Code::PermissionDenied
    );
    let describe = |name: &str| pb::DescribeSpaceRequest { name: name.into() };
    assert!(dash.describe_space(describe("agents-a")).await.is_ok());
    assert_eq!(
        code(dash.describe_space(describe("private")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(ingest.recall_once(recall("private")).await),
        Code::PermissionDenied
    );

    // ListSpaces and Stats show only the spaces a key has a right on.
    let names = |spaces: Vec<pb::SpaceInfo>| {
        let mut n: Vec<String> = spaces.into_iter().map(|s| s.name).collect();
        n.sort();
        n
    };
    let listed = |r: pb::ListSpacesResponse| names(r.spaces);
    assert_eq!(
        listed(
            dash.list_spaces(pb::ListSpacesRequest {})
                .await
                .unwrap()
                .into_inner()
        ),
        ["agents-a"]
    );
    assert_eq!(
        listed(
            ingest
                .list_spaces(pb::ListSpacesRequest {})
                .await
                .unwrap()
                .into_inner()
        ),
        ["agents-a", "agents-b"]
    );
    assert_eq!(
        listed(
            ops.list_spaces(pb::ListSpacesRequest {})
                .await
                .unwrap()
                .into_inner()
        ),
        ["agents-a", "agents-b", "private"]
    );
    let stats = dash.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(
        names(stats.spaces.into_iter().filter_map(|s| s.info).collect()),
        ["agents-a"]
    );

    // MemoryStream: Init needs write; each recall inside needs read on its space.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(pb::MemoryRequest {
        kind: Some(pb::memory_request::Kind::Init(pb::Init {
            space: "agents-a".into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    for (id, space) in [("mine", "agents-a"), ("theirs", "private")] {
        tx.send(pb::MemoryRequest {
            kind: Some(pb::memory_request::Kind::Recall(pb::RecallQuery {
                request_id: id.into(),
                request: Some(recall(space)),
            })),
        })
        .await
        .unwrap();
    }
    let mut inbound = ingest
        .memory_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut results = std::collections::HashMap::new();
    while results.len() < 2 {
        if let Some(pb::memory_response::Kind::Recall(r)) =
            inbound.message().await.unwrap().unwrap().kind
        {
            results.insert(r.request_id.clone(), r);
        }
    }
    assert_eq!(results["mine"].memories.len(), 3);
    assert_eq!(results["mine"].error_code, "");
    assert_eq!(results["theirs"].error_code, "PERMISSION_DENIED");
    assert!(results["theirs"].memories.is_empty());
    drop(tx);

    ops.drop_space(pb::DropSpaceRequest {
        name: "private".into(),
    })
    .await
    .unwrap();
    server.stop().await;
}

fn tls_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tls")
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(tls_dir().join(name)).unwrap()
}

async fn tls_client(
    server: &TestServer,
    tls: Option<ClientTlsConfig>,
) -> Result<MnemoClient<Channel>, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{}", server.addr)).unwrap();
    if let Some(tls) = tls {
        ep = ep.tls_config(tls)?;
    }
    Ok(MnemoClient::new(ep.connect().await?))
}

fn server_tls(client_ca: bool) -> mnemo_server::Options {
    let cfg = TlsConfig {
        cert: tls_dir().join("server.pem"),
        key: tls_dir().join("server.key"),
        client_ca: client_ca.then(|| tls_dir().join("ca.pem")),
    };
    mnemo_server::Options {
        tls: Some(cfg.load().unwrap()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_trusting_clients_and_refuses_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_options(config(dir.path()), server_tls(false)).await;
    let trusted = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem("ca.pem")));
    let mut c = tls_client(&server, Some(trusted.clone())).await.unwrap();
    c.list_spaces(pb::ListSpacesRequest {}).await.unwrap();

    // Plain HTTP/2 against the TLS listener fails.
    let plain = match tls_client(&server, None).await {
        Err(_) => true,
        Ok(mut c) => c.list_spaces(pb::ListSpacesRequest {}).await.is_err(),
    };
    assert!(plain, "plain text must not be served");
    // A client that does not trust the CA refuses the server.
    let untrusting = ClientTlsConfig::new(); // trusts no root at all
    let refused = match tls_client(&server, Some(untrusting)).await {
        Err(_) => true,
        Ok(mut c) => c.list_spaces(pb::ListSpacesRequest {}).await.is_err(),
    };
    assert!(refused, "an unknown CA must fail the handshake");
    // The name is checked: the certificate is not for this one.
    let wrong_name = trusted.clone().domain_name("elsewhere.example");
    let refused = match tls_client(&server, Some(wrong_name)).await {
        Err(_) => true,
        Ok(mut c) => c.list_spaces(pb::ListSpacesRequest {}).await.is_err(),
    };
    assert!(refused, "a certificate for another name must fail");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_options(config(dir.path()), server_tls(true)).await;
    let trusted = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem("ca.pem")));
    let anonymous = match tls_client(&server, Some(trusted.clone())).await {
        Err(_) => true,
        Ok(mut c) => c.list_spaces(pb::ListSpacesRequest {}).await.is_err(),
    };
    assert!(anonymous, "no client certificate: refused");
    let with_cert = trusted.identity(Identity::from_pem(pem("client.pem"), pem("client.key")));
    let mut c = tls_client(&server, Some(with_cert)).await.unwrap();
    c.list_spaces(pb::ListSpacesRequest {}).await.unwrap();
    server.stop().await;

    // A missing file is named in the error.
    let missing = TlsConfig {
        cert: tls_dir().join("nope.pem"),
        key: tls_dir().join("server.key"),
        client_ca: None,
    };
    let err = missing.load().unwrap_err();
    assert!(err.contains("nope.pem"), "{err}");
}
