//! The `mnemo` binary end to end: `mnemo serve` as a child process, the client
//! commands against it, /metrics, a server killed and restarted under a running
//! `mnemo observe` (which resumes), and SIGTERM → clean exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mnemo");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(dir: &Path, port: u16, metrics_port: u16) -> Server {
        let child = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics", &format!("127.0.0.1:{metrics_port}")])
            .env("RUST_LOG", "warn")
            .env("MNEMO_ENGINE__LOG__DURABILITY", "buffered")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            addr: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.cli(&["space", "list"]).status.success() {
            assert!(Instant::now() < deadline, "server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("MNEMO_ADDR", &self.addr)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "mnemo {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn sigterm(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }

    fn sigkill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn metrics_text(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn serve_space_observe_recall_stats_metrics_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    let server = Server::start(&dir.path().join("data"), port, mport);
    server.ok(&["space", "create", "notes", "--dim", "8"]);
    let err = server.cli(&["space", "create", "notes", "--dim", "8"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("already exists"));
    assert!(server.ok(&["space", "list"]).contains("notes"));

    let file = dir.path().join("obs.jsonl");
    let lines = server.ok(&["synth", "--dim", "8", "--count", "3000"]);
    std::fs::write(&file, lines).unwrap();
    let out = server.ok(&["observe", "notes", file.to_str().unwrap(), "--quiet"]);
    assert!(out.contains("3000 accepted"), "{out}");

    let out = server.ok(&[
        "recall",
        "notes",
        "--cue-file",
        file.to_str().unwrap(),
        "--line",
        "5",
        "-k",
        "3",
        "--json",
    ]);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["lsn"], 5, "a vector finds itself first");
    let stats: serde_json::Value = serde_json::from_str(&server.ok(&["stats", "--json"])).unwrap();
    assert_eq!(stats["accepted"], 3000);
    assert!(stats["server_rss_bytes"].as_u64().unwrap() > 0);

    let metrics = metrics_text(mport);
    for name in [
        "mnemo_observations_accepted_total 3000",
        "mnemo_queue_depth{lane=\"normal\"}",
        "mnemo_pressure_state",
        "mnemo_observe_durable_seconds",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    let status = server.sigterm();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

#[test]
fn observe_resumes_across_a_server_kill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (port, mport) = (free_port(), free_port());
    let server = Server::start(&data, port, mport);
    server.ok(&["space", "create", "s", "--dim", "16"]);
    let file = dir.path().join("obs.jsonl");
    std::fs::write(
        &file,
        server.ok(&["synth", "--dim", "16", "--count", "40000"]),
    )
    .unwrap();
    let addr = server.addr.clone();
    let observer = Command::new(BIN)
        .args([
            "observe",
            "s",
            file.to_str().unwrap(),
            "--quiet",
            "--session",
            "importer",
        ])
        .env("MNEMO_ADDR", &addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.sigkill(); // mid-stream, without warning
    std::thread::sleep(Duration::from_millis(300));
    let server = Server::start(&data, port, mport);
    let out = observer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "observe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_str(&server.ok(&["stats", "--json"])).unwrap();
    assert_eq!(
        stats["spaces"][0]["committed_lsn"],
        40000,
        "every line stored exactly once: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !summary.contains(" 0 reconnects"),
        "the kill did not interrupt the stream: {summary}"
    );
    assert!(server.sigterm().success());
}
