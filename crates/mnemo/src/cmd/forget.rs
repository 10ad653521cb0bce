//! `mnemo forget`: forget memories by ids, session or filter; `mnemo compact`:
//! purge and compact a space now (the forgotten memories' contents leave every file).

use mnemo_client::pb;

use super::conn::Conn;
use super::recall::FilterArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct ForgetArgs {
    #[command(flatten)]
    conn: Conn,
    /// The space.
    space: String,
    /// A memory id (repeatable).
    #[arg(long = "id", value_name = "ID")]
    ids: Vec<String>,
    /// Only memories matching these (--session, --tag …); with --id, the ids that
    /// match. At least one of --id and a filter flag is needed.
    #[command(flatten)]
    filter: FilterArgs,
    /// Print JSON instead of a line of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn forget(args: ForgetArgs) -> anyhow::Result<()> {
    let filter = args.filter.filter()?;
    if args.ids.is_empty() && filter.is_none() {
        anyhow::bail!(
            "say what to forget: --id, --session, --tag … (to erase a whole space: mnemo space drop)"
        );
    }
    let c = args.conn.connect().await?;
    let r = c
        .forget(pb::ForgetRequest {
            space: args.space.clone(),
            ids: args.ids,
            session_id: String::new(),
            filter,
        })
        .await?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"space": args.space, "forgotten": r.forgotten, "lsn": r.lsn})
        );
    } else {
        println!(
            "forgot {} memories of {} at LSN {}",
            r.forgotten, args.space, r.lsn
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct CompactArgs {
    #[command(flatten)]
    conn: Conn,
    /// The space.
    space: String,
    /// Print JSON instead of a line of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn compact(args: CompactArgs) -> anyhow::Result<()> {
    let c = args.conn.connect().await?;
    let r = c.compact(&args.space).await?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"space": args.space, "purged": r.purged,
                "segments_compacted": r.segments_compacted, "log_bytes_before": r.log_bytes_before,
                "log_bytes_after": r.log_bytes_after, "checkpoint_lsn": r.checkpoint_lsn})
        );
    } else {
        println!(
            "compacted {}: purged {} memories, {} log segments rewritten or deleted, log {} → {} MiB",
            args.space,
            r.purged,
            r.segments_compacted,
            r.log_bytes_before >> 20,
            r.log_bytes_after >> 20
        );
    }
    Ok(())
}
