//! `mnemo observe`: streams a JSON-lines file into a space through one Observe
//! session, line N as sequence N, with `mnemo_client`'s session driver: it honours
//! the credit window and overload refusals, and on a lost connection reconnects
//! with the session id and re-sends everything not yet acknowledged, so each line
//! is stored exactly once. Given the same `--session`, a second run skips the lines
//! the server already has.
//!
//! Line format: `{"content": "…", "embedding": [..], "tags": {"k": "v"},
//! "confidence": 0.9, "occurred_at_us": 1700000000000000, "id": "<uuid>",
//! "supersedes": "<uuid>", "expires_at": "2027-01-01T00:00:00Z"}` (only
//! `embedding` is required; `expires_at` is RFC 3339 or µs since the epoch).

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mnemo_client::{Feed, SessionEvents, SessionOptions, pb};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use tokio::time::Instant;

use super::conn::Conn;

#[derive(Debug, clap::Args)]
pub(crate) struct ObserveArgs {
    #[command(flatten)]
    conn: Conn,
    /// The space.
    space: String,
    /// JSON-lines file of observations.
    file: PathBuf,
    /// Session id (default: a new one; give the same id to resume an interrupted run).
    #[arg(long)]
    session: Option<String>,
    /// Indexing lane: high | normal | low.
    #[arg(long, default_value = "normal")]
    lane: String,
    /// Give up after this many reconnects in a row without progress.
    #[arg(long, default_value_t = 30)]
    max_reconnects: u32,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    id: String,
    #[serde(default)]
    content: String,
    embedding: Vec<f32>,
    confidence: Option<f32>,
    occurred_at_us: Option<i64>,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    supersedes: String,
    #[serde(default, alias = "expires_at_us")]
    expires_at: Option<serde_json::Value>,
}

/// An `expires_at` field: µs since the epoch, or an RFC 3339 time.
fn expires_us(v: &serde_json::Value) -> Result<i64, String> {
    if let Some(us) = v.as_i64() {
        return Ok(us);
    }
    let s = v
        .as_str()
        .ok_or_else(|| format!("expires_at must be µs or an RFC 3339 time, got {v}"))?;
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| format!("expires_at {s:?}: {e}"))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("expires_at {s:?} is before 1970"))?;
    i64::try_from(d.as_micros()).map_err(|_| format!("expires_at {s:?} is too far away"))
}

/// The file, read lazily: the N-th non-blank line is sequence N.
struct Lines(std::io::Lines<std::io::BufReader<std::fs::File>>);

impl Feed for Lines {
    fn next(&mut self, seq: u64) -> mnemo_client::Result<Option<pb::Observation>> {
        let bad = |e: String| mnemo_client::Error::Feed(e.into());
        loop {
            let Some(line) = self.0.next() else {
                return Ok(None);
            };
            let line = line.map_err(|e| bad(format!("reading the input file: {e}")))?;
            if line.trim().is_empty() {
                continue; // blank lines carry no sequence number
            }
            let l: Line = serde_json::from_str(&line)
                .map_err(|e| bad(format!("observation {seq} is not valid JSON: {e}")))?;
            let expires_at_us = l
                .expires_at
                .as_ref()
                .map(expires_us)
                .transpose()
                .map_err(|e| bad(format!("observation {seq}: {e}")))?;
            return Ok(Some(pb::Observation {
                id: l.id,
                content: l.content,
                embedding: l.embedding,
                confidence: l.confidence,
                occurred_at_us: l.occurred_at_us,
                tags: l.tags,
                supersedes: l.supersedes,
                expires_at_us,
                ..Default::default()
            }));
        }
    }
}

/// The progress bar follows the session.
struct Progress(ProgressBar);

impl SessionEvents for Progress {
    fn acked(&mut self, _: &pb::Ack, _: Instant) {
        self.0.inc(1);
    }
    fn already_durable(&mut self, _: u64) {
        self.0.inc(1);
    }
    fn status(&mut self, st: &pb::StreamStatus) {
        let state = pb::PressureState::try_from(st.state)
            .map(|s| s.as_str_name())
            .unwrap_or("?");
        self.0.set_message(format!("server {state}"));
    }
    fn reconnecting(&mut self, why: &str, _attempt: u32) {
        self.0.set_message(format!("reconnecting ({why})"));
    }
}

fn count_lines(path: &PathBuf) -> anyhow::Result<u64> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut n = 0;
    for line in std::io::BufReader::new(f).lines() {
        if !line?.trim().is_empty() {
            n += 1;
        }
    }
    Ok(n)
}

pub(crate) async fn run(args: ObserveArgs) -> anyhow::Result<()> {
    let lane = match args.lane.as_str() {
        "high" => pb::Lane::High,
        "normal" => pb::Lane::Normal,
        "low" => pb::Lane::Low,
        other => anyhow::bail!("unknown lane '{other}' (high, normal, low)"),
    };
    let total = count_lines(&args.file)?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let client = args.conn.connect().await?;
    let options = SessionOptions {
        session_id: args.session.clone(),
        lane,
        max_reconnects: args.max_reconnects,
        ..SessionOptions::new(args.space.clone())
    };
    let mut feed = Lines(std::io::BufReader::new(file).lines());
    let done = client
        .observe(options, &mut feed, &mut Progress(bar.clone()))
        .await?;
    bar.finish_and_clear();
    println!(
        "session {}: {} accepted, {} already stored (duplicates), final sequence {}, {} refusals retried, {} reconnects",
        done.session_id,
        done.accepted,
        done.duplicates,
        done.final_sequence,
        done.refused,
        done.reconnects
    );
    Ok(())
}
