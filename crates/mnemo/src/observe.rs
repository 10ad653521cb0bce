//! `mnemo observe`: streams a JSON-lines file into a space through one Observe
//! session, line N as sequence N. Honours the credit window and overload
//! refusals, and on a lost connection reconnects with the session id and re-sends
//! everything not yet acknowledged: each line is stored exactly once.
//!
//! Line format: `{"content": "…", "embedding": [..], "tags": {"k": "v"},
//! "confidence": 0.9, "occurred_at_us": 1700000000000000, "id": "<uuid>"}`
//! (only `embedding` is required).

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mnemo_server::pb;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::Conn;

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
    /// Give up after this many reconnects without progress.
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
}

/// The file, read lazily: line N is sequence N.
struct Source {
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    /// Sequence of the next line to read.
    next: u64,
    lane: i32,
    done: bool,
}

impl Source {
    fn read(&mut self) -> anyhow::Result<Option<(u64, pb::Observation)>> {
        loop {
            let Some(line) = self.lines.next() else {
                self.done = true;
                return Ok(None);
            };
            let line = line.context("reading the input file")?;
            if line.trim().is_empty() {
                continue; // blank lines carry no sequence number
            }
            let seq = self.next;
            self.next += 1;
            let l: Line = serde_json::from_str(&line)
                .with_context(|| format!("observation {seq} is not valid JSON"))?;
            let obs = pb::Observation {
                id: l.id,
                content: l.content,
                embedding: l.embedding,
                confidence: l.confidence,
                occurred_at_us: l.occurred_at_us,
                tags: l.tags,
                sequence: seq,
                lane: self.lane,
            };
            return Ok(Some((seq, obs)));
        }
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

/// Counters of the whole run.
#[derive(Default)]
struct Totals {
    accepted: u64,
    duplicates: u64,
    refused: u64,
    reconnects: u32,
}

/// How one connection ended.
enum Ended {
    Done(u64),
    Reconnect(String),
}

pub(crate) async fn run(args: ObserveArgs) -> anyhow::Result<()> {
    let lane = match args.lane.as_str() {
        "high" => pb::Lane::High,
        "normal" => pb::Lane::Normal,
        "low" => pb::Lane::Low,
        other => anyhow::bail!("unknown lane '{other}' (high, normal, low)"),
    } as i32;
    let total = count_lines(&args.file)?;
    let file = std::fs::File::open(&args.file)?;
    let mut source = Source {
        lines: std::io::BufReader::new(file).lines(),
        next: 1,
        lane,
        done: false,
    };
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut session = args.session.clone();
    let mut unacked: BTreeMap<u64, pb::Observation> = BTreeMap::new();
    let mut totals = Totals::default();
    let mut failures = 0;
    loop {
        match connection(
            &args,
            &mut session,
            &mut source,
            &mut unacked,
            &mut totals,
            &bar,
        )
        .await
        {
            Ok(Ended::Done(final_sequence)) => {
                bar.finish_and_clear();
                println!(
                    "session {}: {} accepted, {} already stored (duplicates), final sequence {final_sequence}, {} refusals retried, {} reconnects",
                    session.unwrap_or_default(),
                    totals.accepted,
                    totals.duplicates,
                    totals.refused,
                    totals.reconnects
                );
                return Ok(());
            }
            Ok(Ended::Reconnect(why)) | Err(Retryable(why)) => {
                failures += 1;
                totals.reconnects += 1;
                anyhow::ensure!(
                    failures <= args.max_reconnects,
                    "giving up after {} reconnects: {why}",
                    args.max_reconnects
                );
                bar.set_message(format!("reconnecting ({why})"));
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))).await;
            }
            Err(Fatal(e)) => return Err(e),
        }
    }
}

/// A failure of one connection: worth a reconnect, or not.
enum Failure {
    Retryable(String),
    Fatal(anyhow::Error),
}
use Failure::{Fatal, Retryable};

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Fatal(e)
    }
}

async fn connection(
    args: &ObserveArgs,
    session: &mut Option<String>,
    source: &mut Source,
    unacked: &mut BTreeMap<u64, pb::Observation>,
    totals: &mut Totals,
    bar: &ProgressBar,
) -> Result<Ended, Failure> {
    let mut client = args
        .conn
        .connect()
        .await
        .map_err(|e| Retryable(format!("{e:#}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ObserveRequest>(1024);
    let init = pb::ObserveRequest {
        kind: Some(pb::observe_request::Kind::Init(pb::Init {
            space: args.space.clone(),
            session_id: session.clone().unwrap_or_default(),
            ..Default::default()
        })),
    };
    tx.send(init)
        .await
        .map_err(|_| Retryable("stream closed".into()))?;
    let mut inbound = match client.observe(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(st) if st.code() == tonic::Code::Unavailable => {
            return Err(Retryable(st.message().to_string()));
        }
        Err(st) => return Err(Fatal(anyhow::anyhow!("{}: {}", st.code(), st.message()))),
    };
    let ack = match inbound.message().await {
        Ok(Some(pb::ObserveResponse {
            kind: Some(pb::observe_response::Kind::InitAck(a)),
        })) => a,
        Ok(_) => return Err(Retryable("no InitAck".into())),
        Err(st) => return Err(Retryable(st.message().to_string())),
    };
    *session = Some(ack.session_id.clone());
    // Everything below next_sequence is durable on the server.
    let next = ack.next_sequence;
    let durable: Vec<u64> = unacked.range(..next).map(|(s, _)| *s).collect();
    for s in durable {
        unacked.remove(&s);
        totals.duplicates += 1;
        bar.inc(1);
    }
    while source.next < next && !source.done {
        if source.read()?.is_some() {
            bar.inc(1);
        }
    }
    let mut window = u64::from(ack.credit_window.max(1));
    let mut to_send: BTreeSet<u64> = unacked.keys().copied().collect();
    let mut in_flight = 0u64;
    let mut retry_at: Option<Instant> = None;
    let mut closing = false;
    loop {
        let may_send = retry_at.is_none_or(|t| Instant::now() >= t);
        while may_send && !closing && in_flight < window {
            let item = if let Some(seq) = to_send.pop_first() {
                unacked.get(&seq).cloned()
            } else if let Some((seq, obs)) = source.read()? {
                unacked.insert(seq, obs.clone());
                Some(obs)
            } else {
                None
            };
            let Some(obs) = item else { break };
            let req = pb::ObserveRequest {
                kind: Some(pb::observe_request::Kind::Observation(obs)),
            };
            tx.send(req)
                .await
                .map_err(|_| Retryable("stream closed".into()))?;
            in_flight += 1;
        }
        if !closing && source.done && unacked.is_empty() {
            closing = true;
            let close = pb::ObserveRequest {
                kind: Some(pb::observe_request::Kind::Close(pb::Close { drain: false })),
            };
            tx.send(close)
                .await
                .map_err(|_| Retryable("stream closed".into()))?;
        }
        let wake = retry_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let msg = tokio::select! {
            m = inbound.message() => m,
            _ = tokio::time::sleep_until(wake) => { retry_at = None; continue; }
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(Ended::Reconnect("the server ended the stream".into())),
            Err(st) => return Ok(Ended::Reconnect(format!("{}: {}", st.code(), st.message()))),
        };
        match msg.kind {
            Some(pb::observe_response::Kind::Acks(batch)) => {
                for a in batch.acks {
                    handle_ack(
                        a,
                        unacked,
                        &mut to_send,
                        &mut in_flight,
                        &mut retry_at,
                        totals,
                        bar,
                    )?;
                }
            }
            Some(pb::observe_response::Kind::Status(st)) => {
                window = u64::from(st.credit_window.max(1));
                let state = pb::PressureState::try_from(st.state)
                    .map(|s| s.as_str_name())
                    .unwrap_or("?");
                bar.set_message(format!("server {state}"));
            }
            Some(pb::observe_response::Kind::Closed(c)) => {
                return Ok(Ended::Done(c.final_sequence));
            }
            Some(pb::observe_response::Kind::InitAck(_)) | None => {}
        }
    }
}

fn handle_ack(
    a: pb::Ack,
    unacked: &mut BTreeMap<u64, pb::Observation>,
    to_send: &mut BTreeSet<u64>,
    in_flight: &mut u64,
    retry_at: &mut Option<Instant>,
    totals: &mut Totals,
    bar: &ProgressBar,
) -> Result<(), Failure> {
    let status = pb::AckStatus::try_from(a.status).unwrap_or(pb::AckStatus::Unspecified);
    if status == pb::AckStatus::Indexed {
        return Ok(());
    }
    *in_flight = in_flight.saturating_sub(1);
    match status {
        pb::AckStatus::Accepted | pb::AckStatus::Duplicate => {
            if unacked.remove(&a.sequence).is_some() {
                bar.inc(1);
                if status == pb::AckStatus::Accepted {
                    totals.accepted += 1;
                } else {
                    totals.duplicates += 1;
                }
            }
            Ok(())
        }
        pb::AckStatus::Rejected => {
            let code = pb::RejectCode::try_from(a.code).unwrap_or(pb::RejectCode::Unspecified);
            match code {
                pb::RejectCode::Overloaded
                | pb::RejectCode::WindowExceeded
                | pb::RejectCode::StorageFull => {
                    if code == pb::RejectCode::StorageFull && retry_at.is_none() {
                        tracing::warn!(reason = a.reason, "the server's disk is full; retrying");
                    }
                    totals.refused += 1;
                    let at = Instant::now() + Duration::from_millis(a.retry_after_ms.max(10));
                    *retry_at = Some(retry_at.map_or(at, |t| t.max(at)));
                    to_send.insert(a.sequence);
                    Ok(())
                }
                // Follows an earlier refusal: re-sent in order after it.
                pb::RejectCode::SequenceGap => {
                    to_send.insert(a.sequence);
                    Ok(())
                }
                pb::RejectCode::SessionClosed | pb::RejectCode::Unavailable => {
                    Err(Retryable(a.reason))
                }
                _ => Err(Fatal(anyhow::anyhow!(
                    "observation {} refused: {}",
                    a.sequence,
                    a.reason
                ))),
            }
        }
        _ => Ok(()),
    }
}
