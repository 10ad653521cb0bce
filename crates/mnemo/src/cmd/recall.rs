//! `mnemo recall`: the memories nearest a cue, optionally filtered and weighed by
//! recency and confidence; `mnemo get`: memories by id.

use anyhow::Context;
use mnemo_client::pb;
use std::io::Write;

use super::conn::Conn;

#[derive(Debug, clap::Args)]
pub(crate) struct RecallArgs {
    #[command(flatten)]
    conn: Conn,
    /// The space.
    space: String,
    /// The cue embedding as a JSON array, e.g. '[0.1, 0.2, …]'.
    #[arg(long, conflicts_with = "cue_file")]
    cue: Option<String>,
    /// Take the cue from the `embedding` of the first line of this JSON-lines file.
    #[arg(long)]
    cue_file: Option<std::path::PathBuf>,
    /// Line of --cue-file to use (1-based).
    #[arg(long, default_value_t = 1)]
    line: usize,
    /// Number of results.
    #[arg(short, long, default_value_t = 10)]
    k: u32,
    /// Read-your-writes: wait until this LSN is committed.
    #[arg(long, default_value_t = 0)]
    min_lsn: u64,
    #[command(flatten)]
    filter: FilterArgs,
    /// Recency: weigh each memory by 0.5^(age / half-life), e.g. `1h`, `7days`.
    #[arg(long, value_parser = humantime::parse_duration)]
    half_life: Option<std::time::Duration>,
    /// Confidence: weigh each memory by confidence^weight (0..=16).
    #[arg(long, default_value_t = 0.0)]
    confidence_weight: f32,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// The filter flags of `mnemo recall` (every flag given must hold).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct FilterArgs {
    /// Tag `key=value`, or `key=v1|v2|…` for any of several values (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// The tag is present, whatever its value (repeatable).
    #[arg(long = "has", value_name = "KEY")]
    has: Vec<String>,
    /// The tag is absent (repeatable).
    #[arg(long = "without", value_name = "KEY")]
    without: Vec<String>,
    /// From this session (repeatable: any of them).
    #[arg(long = "session", value_name = "ID")]
    sessions: Vec<String>,
    /// Happened at or after T: RFC 3339 (`2026-11-30T10:00:00Z`), µs since the
    /// epoch, or an age (`2h`: two hours ago).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Happened before T (same forms as --since).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Confidence at least this.
    #[arg(long)]
    min_confidence: Option<f32>,
}

/// A time flag: RFC 3339, µs since the epoch, or an age before now.
fn time_us(s: &str) -> anyhow::Result<i64> {
    if let Ok(us) = s.parse::<i64>() {
        return Ok(us);
    }
    let since_epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    };
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(since_epoch(t));
    }
    if let Ok(age) = humantime::parse_duration(s) {
        return Ok(since_epoch(std::time::SystemTime::now()) - age.as_micros() as i64);
    }
    anyhow::bail!("'{s}' is not a time: give RFC 3339, µs since the epoch, or an age like 2h")
}

impl FilterArgs {
    /// The protocol filter, or none when no flag was given.
    pub(crate) fn filter(&self) -> anyhow::Result<Option<pb::Filter>> {
        use pb::tag_clause::Test;
        let mut tags = Vec::new();
        for t in &self.tags {
            let (key, value) = t
                .split_once('=')
                .with_context(|| format!("--tag {t}: expected KEY=VALUE"))?;
            let values: Vec<String> = value.split('|').map(str::to_string).collect();
            let test = if values.len() == 1 {
                Test::Equals(value.to_string())
            } else {
                Test::AnyOf(pb::StringSet { values })
            };
            tags.push(pb::TagClause {
                key: key.to_string(),
                test: Some(test),
            });
        }
        for (keys, test) in [
            (&self.has, Test::Present(true)),
            (&self.without, Test::Absent(true)),
        ] {
            tags.extend(keys.iter().map(|k| pb::TagClause {
                key: k.clone(),
                test: Some(test.clone()),
            }));
        }
        let occurred_at = if self.since.is_some() || self.until.is_some() {
            Some(pb::TimeRange {
                from_us: self.since.as_deref().map(time_us).transpose()?,
                until_us: self.until.as_deref().map(time_us).transpose()?,
            })
        } else {
            None
        };
        let f = pb::Filter {
            tags,
            session_ids: self.sessions.clone(),
            occurred_at,
            recorded_at: None,
            min_confidence: self.min_confidence,
        };
        Ok((f != pb::Filter::default()).then_some(f))
    }
}

fn cue(args: &RecallArgs) -> anyhow::Result<Vec<f32>> {
    if let Some(c) = &args.cue {
        return serde_json::from_str(c).context("--cue must be a JSON array of numbers");
    }
    let Some(path) = &args.cue_file else {
        anyhow::bail!("give --cue or --cue-file");
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text
        .lines()
        .nth(args.line.saturating_sub(1))
        .with_context(|| format!("{} has no line {}", path.display(), args.line))?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    serde_json::from_value(v["embedding"].clone()).context("the line has no \"embedding\" array")
}

pub(crate) async fn recall(args: RecallArgs) -> anyhow::Result<()> {
    let cue = cue(&args)?;
    let c = args.conn.connect().await?;
    let r = c
        .recall_once(pb::RecallRequest {
            space: args.space.clone(),
            cue,
            k: args.k,
            min_lsn: args.min_lsn,
            filter: args.filter.filter()?,
            ranking: (args.half_life.is_some() || args.confidence_weight != 0.0).then(|| {
                pb::Ranking {
                    half_life_ms: args.half_life.map_or(0, |h| h.as_millis() as u64),
                    confidence_weight: args.confidence_weight,
                }
            }),
            ..Default::default()
        })
        .await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for m in &r.memories {
            writeln!(out, "{}", json_line(m, r.snapshot_lsn))?;
        }
        return Ok(());
    }
    writeln!(out, "snapshot LSN {}", r.snapshot_lsn)?;
    writeln!(out, "{:>4}  {:>7}  {:>8}  content", "rank", "score", "lsn")?;
    for (i, m) in r.memories.iter().enumerate() {
        let content: String = m.content.chars().take(70).collect();
        writeln!(
            out,
            "{:>4}  {:>7.4}  {:>8}  {}",
            i + 1,
            m.score,
            m.lsn,
            content
        )?;
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    conn: Conn,
    /// The space.
    space: String,
    /// Memory ids.
    #[arg(required = true)]
    ids: Vec<String>,
    /// As of this snapshot LSN (0: the latest).
    #[arg(long, default_value_t = 0)]
    snapshot: u64,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// One memory as a JSON line.
fn json_line(m: &pb::Memory, snapshot: u64) -> serde_json::Value {
    serde_json::json!({
        "id": m.id, "lsn": m.lsn, "score": m.score, "confidence": m.confidence,
        "content": m.content, "tags": m.tags, "occurred_at_us": m.occurred_at_us,
        "session_id": m.session_id, "session_sequence": m.session_sequence,
        "expires_at_us": m.expires_at_us,
        "supersedes": (!m.supersedes.is_empty()).then_some(&m.supersedes),
        "snapshot_lsn": snapshot,
    })
}

pub(crate) async fn get(args: GetArgs) -> anyhow::Result<()> {
    let c = args.conn.connect().await?;
    let r = c.get_memories(&args.space, args.ids, args.snapshot).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for m in &r.memories {
            writeln!(out, "{}", json_line(m, r.snapshot_lsn))?;
        }
        for id in &r.missing {
            writeln!(out, "{}", serde_json::json!({"id": id, "missing": true}))?;
        }
        for s in &r.superseded {
            writeln!(
                out,
                "{}",
                serde_json::json!({"id": s.id, "superseded_by": s.superseded_by})
            )?;
        }
        return Ok(());
    }
    writeln!(out, "snapshot LSN {}", r.snapshot_lsn)?;
    for m in &r.memories {
        let content: String = m.content.chars().take(70).collect();
        writeln!(out, "{}  {:>8}  {}", m.id, m.lsn, content)?;
    }
    for id in &r.missing {
        writeln!(out, "{id}  missing")?;
    }
    for s in &r.superseded {
        writeln!(out, "{}  superseded by {}", s.id, s.superseded_by)?;
    }
    Ok(())
}
