//! The `mnemo` binary end to end: `mnemo serve` as a child process, the client
//! commands against it, /metrics, a server killed and restarted under a running
//! `mnemo observe` (which resumes), and SIGTERM → clean exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mnemo");

mod common;
use common::free_port;

struct Server {
    child: Child,
    addr: String,
    /// Environment for client commands (address, key, CA).
    env: Vec<(&'static str, String)>,
}

/// A failing test must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &Path, port: u16, metrics_port: u16) -> Server {
        Self::start_with(
            dir,
            port,
            &["--metrics", &format!("127.0.0.1:{metrics_port}")],
            format!("http://127.0.0.1:{port}"),
            Vec::new(),
        )
    }

    fn start_with(
        dir: &Path,
        port: u16,
        extra: &[&str],
        addr: String,
        env: Vec<(&'static str, String)>,
    ) -> Server {
        let child = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", "warn")
            .env("MNEMO_ENGINE__LOG__DURABILITY", "buffered")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut env = env;
        env.push(("MNEMO_ADDR", addr.clone()));
        let server = Server { child, addr, env };
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
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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
    let lines = server.ok(&[
        "synth",
        "--dim",
        "8",
        "--count",
        "3000",
        "--users",
        "10",
        "--selectivity",
        "0.01",
    ]);
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
    // Filtered: every result has the tags asked for, as many as k.
    let out = server.ok(&[
        "recall",
        "notes",
        "--cue-file",
        file.to_str().unwrap(),
        "-k",
        "5",
        "--tag",
        "user=u3|u4",
        "--has",
        "sel0.01",
        "--since",
        "1h",
        "--json",
    ]);
    let hits: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!hits.is_empty());
    for h in &hits {
        assert!(
            ["u3", "u4"].contains(&h["tags"]["user"].as_str().unwrap()),
            "{h}"
        );
        assert_eq!(h["tags"]["sel0.01"], "yes");
    }
    let bad = server.cli(&[
        "recall",
        "notes",
        "--cue",
        "[1,2,3,4,5,6,7,8]",
        "--tag",
        "user",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("KEY=VALUE"));
    // Get by id, the missing one reported.
    let id = first["id"].as_str().unwrap();
    let out = server.ok(&[
        "get",
        "notes",
        id,
        "0190f0f0-0000-7000-8000-000000000000",
        "--json",
    ]);
    let got: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got[0]["lsn"], 5);
    assert_eq!(got[1]["missing"], true);
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
fn forget_correct_expire_and_compact_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    let server = Server::start(&dir.path().join("data"), port, mport);
    server.ok(&["space", "create", "m", "--dim", "4"]);
    let out = server.ok(&["space", "create", "brief", "--dim", "4", "--ttl", "1s"]);
    assert!(out.contains("ttl=1s"), "{out}");
    let a = "00000000-0000-7000-8000-00000000000a";
    let b = "00000000-0000-7000-8000-00000000000b";
    let lines = [
        format!(r#"{{"id":"{a}","content":"alpha","embedding":[1,0,0,0],"tags":{{"user":"ann"}}}}"#),
        r#"{"content":"beta","embedding":[0,1,0,0],"tags":{"user":"bob"}}"#.to_string(),
        r#"{"content":"gamma","embedding":[0,0,1,0],"tags":{"user":"bob"},"expires_at":"2100-01-01T00:00:00Z"}"#.to_string(),
        format!(r#"{{"id":"{b}","content":"alpha, corrected","embedding":[1,0.1,0,0],"supersedes":"{a}"}}"#),
    ];
    let file = dir.path().join("m.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = server.ok(&["observe", "m", file.to_str().unwrap(), "--quiet"]);
    assert!(out.contains("4 accepted"), "{out}");
    let out = server.ok(&["get", "m", a, b, "--json"]);
    assert!(out.contains(&format!(r#""superseded_by":"{b}""#)), "{out}");
    assert!(out.contains(&format!(r#""supersedes":"{a}""#)), "{out}");
    // Forget by tag, then by id; an empty selector is refused before connecting.
    let out = server.ok(&["forget", "m", "--tag", "user=bob", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["forgotten"], 2);
    let out = server.ok(&["forget", "m", "--id", b]);
    assert!(out.contains("forgot 1 memories"), "{out}");
    let bad = server.cli(&["forget", "m"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("say what to forget"));
    let out = server.ok(&["recall", "m", "--cue", "[1,1,1,1]", "-k", "10", "--json"]);
    assert_eq!(out.lines().count(), 0, "everything forgotten: {out}");
    // Compact: purged from the graph, then no file holds a forgotten content.
    let out = server.ok(&["compact", "m", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["purged"], 4, "{out}");
    let out = server.ok(&["space", "describe", "m"]);
    assert!(out.contains("unpurged 0"), "{out}");
    // The TTL space forgets on its own.
    std::fs::write(&file, r#"{"content":"soon gone","embedding":[1,0,0,0]}"#).unwrap();
    server.ok(&["observe", "brief", file.to_str().unwrap(), "--quiet"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server
        .ok(&["recall", "brief", "--cue", "[1,0,0,0]", "--json"])
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the memory did not expire");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.sigterm().success());
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
        server.ok(&["synth", "--dim", "16", "--count", "200000"]),
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
    // Kill once the stream is under way (not after a fixed time: a fast machine
    // stores the whole file in a fraction of a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats: serde_json::Value =
            serde_json::from_str(&server.ok(&["stats", "--json"])).unwrap();
        if stats["accepted"].as_u64().unwrap_or(0) >= 2000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "observe made no progress"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
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
        200000,
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

fn write_vecs(path: &Path, rows: &[Vec<u8>], dim: usize) {
    let mut b = Vec::new();
    for r in rows {
        b.extend_from_slice(&(dim as i32).to_le_bytes());
        b.extend_from_slice(r);
    }
    std::fs::write(path, b).unwrap();
}

fn bench(args: &[&str], addr: Option<&str>) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut cmd = Command::new(BIN);
    cmd.arg("bench")
        .args(args)
        .arg("--quiet")
        .arg("--json")
        .arg(&json);
    if let Some(a) = addr {
        cmd.args(["--addr", a]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "bench failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("recall@10") && text.contains("lost"),
        "{text}"
    );
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

/// A small exact case: a data set with its true neighbours, every row observed by 3
/// sessions with probes and recalls alongside; the report must add up.
#[test]
fn bench_reports_exact_recall_and_nothing_lost_on_a_dataset() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let (n, dim, nq) = (600usize, 12usize, 20usize);
    let mut r = rand::rngs::StdRng::seed_from_u64(3);
    let mut rand_rows = |count: usize| -> Vec<Vec<f32>> {
        (0..count)
            .map(|_| (0..dim).map(|_| r.random_range(-1.0f32..1.0)).collect())
            .collect()
    };
    let base = rand_rows(n);
    let queries = rand_rows(nq);
    let truth: Vec<Vec<i32>> = queries
        .iter()
        .map(|q| {
            let mut d: Vec<(f32, i32)> = base
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    (
                        v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(),
                        i as i32,
                    )
                })
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0));
            d.iter().take(10).map(|x| x.1).collect()
        })
        .collect();
    let bytes = |rows: &[Vec<f32>]| -> Vec<Vec<u8>> {
        rows.iter()
            .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect()
    };
    let (b, q, g) = (
        dir.path().join("b.fvecs"),
        dir.path().join("q.fvecs"),
        dir.path().join("g.ivecs"),
    );
    write_vecs(&b, &bytes(&base), dim);
    write_vecs(&q, &bytes(&queries), dim);
    let gt: Vec<Vec<u8>> = truth
        .iter()
        .map(|t| t.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    write_vecs(&g, &gt, 10);
    let report = bench(
        &[
            "--dataset",
            b.to_str().unwrap(),
            "--queries",
            q.to_str().unwrap(),
            "--groundtruth",
            g.to_str().unwrap(),
            "--metric",
            "l2",
            "--index-precision",
            "f32",
            "--sessions",
            "3",
            "--probes",
            "10",
            "--probe-gap-ms",
            "5",
            "--recall-qps",
            "50",
            "--compare-raw",
        ],
        None,
    );
    let num = |k: &str| {
        report[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} in {report}"))
    };
    assert_eq!(num("lost"), 0.0);
    assert_eq!(num("observations"), n as f64);
    assert_eq!(num("probes"), 10.0);
    assert_eq!(num("stored"), n as f64 + 10.0);
    assert_eq!(
        (
            num("stored_twice"),
            num("unacked_stored"),
            num("duplicates")
        ),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(num("snapshot_violations"), 0.0);
    assert_eq!(report["recall_truth"], "file");
    assert_eq!(num("recall_at_10"), 1.0);
    assert_eq!(num("probes_not_found"), 0.0);
    for k in [
        "accepted_per_s",
        "indexed_per_s",
        "ack_p50_ms",
        "ack_p99_ms",
        "visibility_p50_ms",
        "visibility_p99_ms",
        "server_rss_bytes",
        "duration_s",
        "raw_index_insert_per_s",
        "indexed_vs_raw",
    ] {
        assert!(num(k) > 0.0, "{k} in {report}");
    }
    assert!(num("ack_p99_ms") >= num("ack_p50_ms"));
    assert!(report["rejected"].is_u64() && report["pressure_max_state"].is_string());
    assert_eq!(report["config"]["sessions"], 3);
    assert_eq!(report["server"], "in-process");
}

/// A paced, timed run of synthetic vectors against a `mnemo serve` child: the space
/// is made and dropped, exact truth is computed from the rows actually stored.
#[test]
fn bench_drives_a_remote_server_for_a_duration_at_a_rate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), free_port(), free_port());
    let report = bench(
        &[
            "--dim",
            "16",
            "--duration",
            "1.5",
            "--rate",
            "1000",
            "--sessions",
            "2",
            "--probes",
            "5",
            "--recall-qps",
            "10",
            "--exact-queries",
            "20",
            "--space",
            "load",
        ],
        Some(&server.addr),
    );
    let num = |k: &str| {
        report[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} in {report}"))
    };
    let n = num("observations");
    assert!(
        (700.0..=1700.0).contains(&n),
        "paced at 1000/s for 1.5 s: {n}"
    );
    assert_eq!(num("lost"), 0.0);
    assert_eq!(num("stored"), n + num("probes"));
    assert_eq!(report["recall_truth"], "exact");
    assert!(num("recall_at_10") >= 0.9, "{report}");
    assert!(num("recalls_during_ingest") >= 5.0, "{report}");
    // Dropped afterwards (no --keep).
    assert!(!server.ok(&["space", "list"]).contains("load"));
    assert!(server.sigterm().success());
}

#[test]
fn bench_refuses_bad_flags_before_starting() {
    for (args, says) in [
        (vec!["--rate", "0"], "--rate"),
        (vec!["--rate", "fast"], "--rate"),
        (vec!["--metric", "hamming"], "metric"),
        (vec!["--index-precision", "f8"], "precision"),
        (vec!["--sessions", "0"], "--sessions"),
    ] {
        let out = Command::new(BIN).arg("bench").args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

const OPS_KEY: &str = "ops-key-0123456789abcdef";
const READER_KEY: &str = "reader-key-0123456789abcdef";

fn fails_with(out: &Output, words: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should have failed");
    assert!(err.contains(words), "stderr lacks '{words}': {err}");
}

/// TLS and API keys configured in the file, used by the client commands.
#[test]
fn tls_and_api_keys_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mnemo-server/tests/tls");
    let reader_digest = mnemo_server::auth::key_digest_hex(READER_KEY);
    let config = dir.path().join("mnemo.toml");
    std::fs::write(
        &config,
        format!(
            r#"metrics = ""
[tls]
cert = "{cert}"
key = "{key}"

[[auth.keys]]
name = "ops"
key = "{OPS_KEY}"
read = ["*"]
write = ["*"]
admin = ["*"]

[[auth.keys]]
name = "reader"
key_sha256 = "{reader_digest}"
read = ["notes"]
"#,
            cert = tls.join("server.pem").display(),
            key = tls.join("server.key").display(),
        ),
    )
    .unwrap();
    // `mnemo config` never prints a plaintext key.
    let printed = Command::new(BIN)
        .args(["config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert!(!printed.contains(OPS_KEY), "{printed}");
    assert!(printed.contains(&mnemo_server::auth::key_digest_hex(OPS_KEY)));

    let port = free_port();
    let https = format!("https://127.0.0.1:{port}");
    let ca = tls.join("ca.pem").display().to_string();
    let server = Server::start_with(
        &dir.path().join("data"),
        port,
        &["--config", config.to_str().unwrap()],
        https.clone(),
        vec![
            ("MNEMO_TLS_CA", ca.clone()),
            ("MNEMO_API_KEY", OPS_KEY.into()),
        ],
    );
    server.ok(&["space", "create", "notes", "--dim", "8"]);
    server.ok(&["space", "create", "other", "--dim", "8"]);
    let file = dir.path().join("obs.jsonl");
    std::fs::write(&file, server.ok(&["synth", "--dim", "8", "--count", "200"])).unwrap();
    let out = server.ok(&["observe", "notes", file.to_str().unwrap(), "--quiet"]);
    assert!(out.contains("200 accepted"), "{out}");

    let as_reader = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(["--addr", &https, "--tls-ca", &ca, "--api-key", READER_KEY])
            .output()
            .unwrap()
    };
    let out = as_reader(&[
        "recall",
        "notes",
        "--cue-file",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fails_with(
        &as_reader(&["recall", "other", "--cue-file", file.to_str().unwrap()]),
        "may not read space 'other'",
    );
    fails_with(
        &as_reader(&["space", "create", "mine", "--dim", "8"]),
        "may not administer",
    );
    // A refused write ends `mnemo observe` at once instead of retrying.
    fails_with(
        &as_reader(&["observe", "notes", file.to_str().unwrap(), "--quiet"]),
        "may not write",
    );
    let listed = String::from_utf8(as_reader(&["space", "list"]).stdout).unwrap();
    assert!(
        listed.contains("notes") && !listed.contains("other"),
        "{listed}"
    );

    // No key, a wrong key, no TLS.
    let bare = |args: &[&str], extra: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(extra)
            .env_remove("MNEMO_API_KEY")
            .output()
            .unwrap()
    };
    fails_with(
        &bare(&["stats"], &["--addr", &https, "--tls-ca", &ca]),
        "API key",
    );
    fails_with(
        &bare(
            &["stats"],
            &[
                "--addr",
                &https,
                "--tls-ca",
                &ca,
                "--api-key",
                "wrong-key-0123456789",
            ],
        ),
        "not valid",
    );
    let plain = format!("http://127.0.0.1:{port}");
    assert!(
        !bare(&["stats"], &["--addr", &plain, "--api-key", OPS_KEY])
            .status
            .success()
    );
    fails_with(
        &bare(&["stats"], &["--addr", &plain, "--tls-ca", &ca]),
        "https://",
    );
    assert!(server.sigterm().success());

    // A bad key in the config: the server refuses to start and names it.
    std::fs::write(
        &config,
        "[[auth.keys]]\nname = \"short\"\nkey = \"abc\"\nread = [\"*\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    fails_with(&out, "auth key 'short'");
}

/// 64 recalls parked on an LSN that never comes (each allowed to wait 60 s) and
/// streams nobody reads do not keep `mnemo serve` from exiting on SIGTERM.
#[test]
fn sigterm_exits_promptly_with_parked_recalls_and_unread_streams() {
    use mnemo_client::pb;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(dir.path(), port, 0);
    server.ok(&["space", "create", "s", "--dim", "4"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let parked = rt.block_on(async {
        let c =
            mnemo_client::Client::connect(mnemo_client::ConnectOptions::new(server.addr.clone()))
                .await
                .unwrap();
        for i in 0..300 {
            let o = pb::Observation {
                content: "x".repeat(4000),
                embedding: vec![i as f32, 1.0, 0.0, 0.5],
                ..Default::default()
            };
            c.remember("s", o).await.unwrap();
        }
        let mut held = Vec::new();
        for _ in 0..64 {
            let mut stub = c.stub();
            held.push(tokio::spawn(async move {
                stub.recall(pb::RecallRequest {
                    space: "s".into(),
                    cue: vec![1.0, 1.0, 0.0, 0.5],
                    k: 10,
                    min_lsn: 1 << 63,
                    max_wait_ms: 60_000,
                    ..Default::default()
                })
                .await
                .map(|_| ())
            }));
        }
        let other = c.reconnect().await.unwrap();
        let mut unread = Vec::new();
        for _ in 0..20 {
            let s = other
                .stub()
                .recall(pb::RecallRequest {
                    space: "s".into(),
                    cue: vec![1.0, 1.0, 0.0, 0.5],
                    k: 300,
                    batch_size: 1,
                    ..Default::default()
                })
                .await
                .unwrap();
            unread.push(s);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        (held, unread, c, other)
    });
    let t = Instant::now();
    let status = server.sigterm();
    assert!(status.success(), "{status:?}");
    // The grace for connections is 5 s; the engine's close follows.
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    drop(parked);
}
