//! Crash test: a child process appends with fsync and reports each acked record;
//! the parent kills it with SIGKILL at random moments, reopens the data directory
//! and checks that every acked record is present and intact.
use mnemo_engine::{Engine, EngineConfig, Observation, SpaceConfig};
use rand::Rng;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const DIR_ENV: &str = "MNEMO_CRASH_CHILD_DIR";
const WRITERS: u64 = 4;
const DIM: usize = 8;

fn vector_for(session: u64, seq: u64) -> Vec<f32> {
    (0..DIM)
        .map(|i| ((session * 7919 + seq * 31 + i as u64) % 1000) as f32 / 1000.0 + 0.001)
        .collect()
}

fn content_for(session: u64, seq: u64) -> String {
    format!("writer {session} observation {seq}")
}

fn engine_config(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.index_threads = 1;
    c.log.segment_bytes = 64 << 10; // rotate often, so kills also land near rotations
    c
}

/// The child: appends forever, printing `ACK session seq lsn` once durable.
#[test]
#[ignore = "run by crash_kill9_loses_no_acked_record as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let e = std::sync::Arc::new(Engine::open(engine_config(dir.as_ref())).unwrap());
    if e.describe_space("c").is_err() {
        e.create_space("c", SpaceConfig::new(DIM as u32)).unwrap();
    }
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (e, out) = (e.clone(), out.clone());
            std::thread::spawn(move || {
                let session = format!("w{w}");
                let mut seq = e
                    .session_high_water("c", &session)
                    .unwrap()
                    .map_or(0, |h| h.0);
                let end = seq + 200_000; // bounded: the parent kills the child long before
                while seq < end {
                    seq += 1;
                    let o = Observation {
                        content: content_for(w, seq),
                        embedding: vector_for(w, seq),
                        session_id: session.clone(),
                        session_seq: seq,
                        ..Default::default()
                    };
                    let done = e.observe_blocking("c", o).unwrap();
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ACK {w} {seq} {}", done.lsn).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn crash_kill9_loses_no_acked_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<(u64, u64), u64> = BTreeMap::new(); // (writer, seq) -> lsn
    let mut r = rand::rng();
    let rounds = 5;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "crash::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() == 4 && f[0] == "ACK" {
                    acks.push((
                        f[1].parse::<u64>().unwrap(),
                        f[2].parse::<u64>().unwrap(),
                        f[3].parse::<u64>().unwrap(),
                    ));
                }
            }
            acks
        });
        std::thread::sleep(Duration::from_millis(r.random_range(300..900)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        assert!(!acks.is_empty(), "round {round}: the child acked nothing");
        for (w, seq, lsn) in acks {
            assert!(
                acked.insert((w, seq), lsn).is_none(),
                "({w},{seq}) acked twice"
            );
        }

        // Reopen and check every record acked so far.
        let e = Engine::open(engine_config(dir.path())).unwrap();
        let committed = e.snapshot("c").unwrap();
        for (&(w, seq), &lsn) in &acked {
            assert!(
                lsn <= committed,
                "acked LSN {lsn} lost (log ends at {committed})"
            );
            let m = e.get("c", lsn).unwrap();
            assert_eq!(m.content, content_for(w, seq));
            assert_eq!(m.embedding, vector_for(w, seq));
            assert_eq!(
                (m.session_id.as_str(), m.session_seq),
                (format!("w{w}").as_str(), seq)
            );
        }
        // Sessions resume where the log says they ended: at or past every ack.
        for w in 0..WRITERS {
            let hw = e
                .session_high_water("c", &format!("w{w}"))
                .unwrap()
                .map_or(0, |h| h.0);
            let max_acked = acked
                .keys()
                .filter(|k| k.0 == w)
                .map(|k| k.1)
                .max()
                .unwrap_or(0);
            assert!(
                hw >= max_acked,
                "writer {w}: high water {hw} < acked {max_acked}"
            );
        }
        e.close().unwrap();
    }
}
