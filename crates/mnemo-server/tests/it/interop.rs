//! Interop with an independent gRPC implementation: a Python grpcio client
//! (tests/interop/client.py, stubs generated from the same .proto) against this server.
//! Needs `MNEMO_PYTHON` = a Python with grpcio, grpcio-tools and grpcio-health-checking
//! (`.ci/run` makes one); skipped without it unless `MNEMO_REQUIRE_INTEROP=1`.
use std::process::Command;

use crate::common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_observes_and_recalls() {
    let Ok(python) = std::env::var("MNEMO_PYTHON") else {
        assert!(
            std::env::var("MNEMO_REQUIRE_INTEROP").is_err(),
            "MNEMO_REQUIRE_INTEROP is set but MNEMO_PYTHON is not"
        );
        eprintln!("skipping: MNEMO_PYTHON not set (see .ci/run)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let addr = server.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(root.join("tests/interop/client.py"))
            .arg(addr)
            .arg(root.join("../mnemo-proto/proto"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    server.stop().await;
}
