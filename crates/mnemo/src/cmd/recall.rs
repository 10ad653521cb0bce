//! `mnemo recall`: the memories nearest a cue.

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
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
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
            ..Default::default()
        })
        .await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for m in &r.memories {
            let line = serde_json::json!({
                "id": m.id, "lsn": m.lsn, "score": m.score, "confidence": m.confidence,
                "content": m.content, "tags": m.tags, "occurred_at_us": m.occurred_at_us,
                "session_id": m.session_id, "session_sequence": m.session_sequence,
                "snapshot_lsn": r.snapshot_lsn,
            });
            writeln!(out, "{line}")?;
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
