//! `--compare-raw`: the same rows into a bare usearch index with the space's
//! parameters, one thread per core (as many as the server's index workers), so the
//! report can say what the server costs over the index alone.

use std::time::Instant;

use super::workload::Workload;
use mnemo_client::pb;
use mnemo_client::pb::Metric;

/// Inserts rows `0..n` and returns inserts per second (the vectors are made first,
/// outside the timing).
pub(crate) fn insert_rate(
    work: &Workload,
    n: u64,
    metric: Metric,
    info: &pb::SpaceInfo,
    threads: usize,
) -> anyhow::Result<f64> {
    let rows: Vec<Vec<f32>> = (0..n).map(|i| work.vector(i)).collect();
    let opts = usearch::IndexOptions {
        dimensions: work.dim(),
        metric: match metric {
            Metric::Cosine => usearch::MetricKind::Cos,
            Metric::L2 => usearch::MetricKind::L2sq,
            Metric::InnerProduct => usearch::MetricKind::IP,
        },
        quantization: match pb::Precision::try_from(info.precision) {
            Ok(pb::Precision::F32) => usearch::ScalarKind::F32,
            Ok(pb::Precision::I8) => usearch::ScalarKind::I8,
            _ => usearch::ScalarKind::F16,
        },
        connectivity: info.m as usize,
        expansion_add: info.ef_construction as usize,
        expansion_search: info.ef_search as usize,
        multi: false,
    };
    let index = usearch::Index::new(&opts)?;
    index.reserve_capacity_and_threads(rows.len(), threads)?;
    let started = Instant::now();
    let failed = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (index, rows) = (&index, &rows);
                s.spawn(move || {
                    rows.iter()
                        .enumerate()
                        .skip(t)
                        .step_by(threads)
                        .find_map(|(i, v)| index.add(i as u64, v).err())
                })
            })
            .collect();
        workers.into_iter().find_map(|w| w.join().ok().flatten())
    });
    let secs = started.elapsed().as_secs_f64();
    if let Some(e) = failed {
        anyhow::bail!("usearch insert failed: {e}");
    }
    Ok(n as f64 / secs.max(1e-9))
}
