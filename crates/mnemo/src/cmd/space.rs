//! `mnemo space`: create, list, describe and drop spaces; the metric and precision
//! flags shared with `mnemo bench`.

use mnemo_client::pb;

use super::conn::Conn;

/// HNSW parameters of a new space (`space create`, `bench`).
#[derive(Debug, Clone, Copy, clap::Args, serde::Serialize)]
pub(crate) struct IndexFlags {
    /// HNSW M (0 = default 16).
    #[arg(long, default_value_t = 0)]
    pub(crate) m: u32,
    /// HNSW ef_construction (0 = default 128).
    #[arg(long, default_value_t = 0)]
    pub(crate) ef_construction: u32,
    /// HNSW ef_search (0 = default 160).
    #[arg(long, default_value_t = 0)]
    pub(crate) ef_search: u32,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SpaceCommand {
    /// Create a space.
    Create {
        name: String,
        /// Vector dimension.
        #[arg(long)]
        dim: u32,
        /// cosine | l2 | ip
        #[arg(long, default_value = "cosine")]
        metric: String,
        /// f16 | f32 | i8 (i8 only with cosine)
        #[arg(long, default_value = "f16")]
        precision: String,
        /// Time-to-live of observations that give no expires_at, e.g. `30days`,
        /// `12h` (default: they never expire).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
        #[command(flatten)]
        index: IndexFlags,
    },
    /// List spaces.
    List,
    /// Describe a space with its counters.
    Describe { name: String },
    /// Drop a space and its data.
    Drop { name: String },
}

/// A metric flag: cosine | l2 | ip.
pub(crate) fn parse_metric(s: &str) -> anyhow::Result<pb::Metric> {
    Ok(match s {
        "cosine" => pb::Metric::Cosine,
        "l2" => pb::Metric::L2,
        "ip" | "inner_product" => pb::Metric::InnerProduct,
        other => anyhow::bail!("unknown metric '{other}' (cosine, l2, ip)"),
    })
}

/// A precision flag: f16 | f32 | i8.
pub(crate) fn parse_precision(s: &str) -> anyhow::Result<pb::Precision> {
    Ok(match s {
        "f16" => pb::Precision::F16,
        "f32" => pb::Precision::F32,
        "i8" => pb::Precision::I8,
        other => anyhow::bail!("unknown precision '{other}' (f16, f32, i8)"),
    })
}

fn metric_name(m: i32) -> &'static str {
    match pb::Metric::try_from(m) {
        Ok(pb::Metric::L2) => "l2",
        Ok(pb::Metric::InnerProduct) => "ip",
        _ => "cosine",
    }
}

fn precision_name(p: i32) -> &'static str {
    match pb::Precision::try_from(p) {
        Ok(pb::Precision::F32) => "f32",
        Ok(pb::Precision::I8) => "i8",
        _ => "f16",
    }
}

fn print_space(i: &pb::SpaceInfo) {
    let ttl = if i.default_ttl_ms > 0 {
        format!(
            " ttl={}",
            humantime::format_duration(std::time::Duration::from_millis(i.default_ttl_ms))
        )
    } else {
        String::new()
    };
    println!(
        "{:<24} dim {:<5} {:<7} {:<4} M={} ef_construction={} ef_search={}{ttl}",
        i.name,
        i.dim,
        metric_name(i.metric),
        precision_name(i.precision),
        i.m,
        i.ef_construction,
        i.ef_search
    );
}

pub(crate) async fn space(conn: Conn, cmd: SpaceCommand) -> anyhow::Result<()> {
    let c = conn.connect().await?;
    match cmd {
        SpaceCommand::Create {
            name,
            dim,
            metric,
            precision,
            ttl,
            index,
        } => {
            let metric = parse_metric(&metric)?;
            let precision = parse_precision(&precision)?;
            let info = c
                .create_space(pb::CreateSpaceRequest {
                    name,
                    dim,
                    metric: metric as i32,
                    precision: precision as i32,
                    m: index.m,
                    ef_construction: index.ef_construction,
                    ef_search: index.ef_search,
                    default_ttl_ms: ttl.map_or(0, |t| t.as_millis().max(1) as u64),
                })
                .await?;
            print!("created ");
            print_space(&info);
        }
        SpaceCommand::List => {
            for s in c.list_spaces().await? {
                print_space(&s);
            }
        }
        SpaceCommand::Describe { name } => {
            let d = c.describe_space(&name).await?;
            if let Some(i) = &d.info {
                print_space(i);
            }
            if let Some(s) = d.stats {
                println!(
                    "committed LSN {}  indexed LSN {}  in graph {}  in fresh tier {}  in warm tier {}  checkpoint LSN {}",
                    s.committed_lsn,
                    s.indexed_lsn,
                    s.indexed_count,
                    s.fresh_count,
                    s.warm_count,
                    s.checkpoint_lsn
                );
                println!(
                    "log: live {} MiB  dead {} MiB (compaction removes it)  unpurged {}  oldest snapshot {}",
                    s.live_bytes >> 20,
                    s.dead_bytes >> 20,
                    s.unpurged,
                    s.oldest_snapshot_lsn
                );
            }
        }
        SpaceCommand::Drop { name } => {
            c.drop_space(&name).await?;
            println!("dropped {name}");
        }
    }
    Ok(())
}
