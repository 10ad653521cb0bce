//! `mnemo synth`: synthetic clustered observations as JSON lines.

use rand::{Rng, SeedableRng, rngs::StdRng};
use std::io::Write;

#[derive(Debug, clap::Args)]
pub(crate) struct SynthArgs {
    /// Dimension.
    #[arg(long, default_value_t = 8)]
    dim: usize,
    /// Number of observations.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Number of clusters (topics).
    #[arg(long, default_value_t = 16)]
    clusters: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub(crate) fn synth(a: SynthArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.dim > 0 && a.clusters > 0,
        "--dim and --clusters must be positive"
    );
    let mut r = StdRng::seed_from_u64(a.seed);
    let centres: Vec<Vec<f32>> = (0..a.clusters)
        .map(|_| (0..a.dim).map(|_| r.random_range(-1.0f32..1.0)).collect())
        .collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..a.count {
        let c = i % a.clusters;
        let v: Vec<f32> = centres[c]
            .iter()
            .map(|x| x + r.random_range(-0.2f32..0.2))
            .collect();
        let line = serde_json::json!({
            "content": format!("synthetic observation {i} about topic {c}"),
            "embedding": v,
            "tags": {"topic": c.to_string()},
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
