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
    /// Tag each observation `user=u<n>` over this many users (each a 1/N share); 0 = no user tag.
    #[arg(long, default_value_t = 0)]
    users: u64,
    /// Selectivities, e.g. `0.5,0.05,0.001`: for each p, a share p of the
    /// observations gets the tag `sel<p>=yes` (`--tag sel0.05=yes` then matches 5 %).
    #[arg(long, value_delimiter = ',')]
    selectivity: Vec<f64>,
}

/// The tag key that marks the share `p` of the rows (see [`selected`]).
pub(crate) fn selectivity_key(p: f64) -> String {
    format!("sel{p}")
}

/// Whether row `i` is in the share `p` of the rows: a fixed pseudo-random draw per
/// row, so the same rows are chosen whoever asks.
pub(crate) fn selected(i: u64, p: f64) -> bool {
    let x = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    (x as f64 / (1u64 << 53) as f64) < p
}

pub(crate) fn synth(a: SynthArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.dim > 0 && a.clusters > 0,
        "--dim and --clusters must be positive"
    );
    anyhow::ensure!(
        a.selectivity.iter().all(|p| (0.0..=1.0).contains(p)),
        "--selectivity values must be in [0, 1]"
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
        let mut tags = serde_json::Map::new();
        tags.insert("topic".into(), c.to_string().into());
        if a.users > 0 {
            tags.insert("user".into(), format!("u{}", i as u64 % a.users).into());
        }
        for &p in &a.selectivity {
            if selected(i as u64, p) {
                tags.insert(selectivity_key(p), "yes".into());
            }
        }
        let line = serde_json::json!({
            "content": format!("synthetic observation {i} about topic {c}"),
            "embedding": v,
            "tags": tags,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_rows_come_to_their_share() {
        for p in [0.5, 0.05, 0.001] {
            let n = (0..200_000u64).filter(|&i| selected(i, p)).count() as f64 / 200_000.0;
            assert!((n - p).abs() < p * 0.1 + 0.0005, "{p}: {n}");
        }
        assert!(!(0..1000).any(|i| selected(i, 0.0)));
        assert!((0..1000).all(|i| selected(i, 1.0)));
    }
}
