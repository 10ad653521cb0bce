//! The checks after a run: recall@10 against the ground truth, and the audit of
//! every stored record against the acks (nothing lost, nothing twice, nothing unacked).

use mnemo_client::{Stub, pb};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

use super::workload::Workload;

/// Recall@10 of the server against `truth` (memory ids of the exact 10 nearest
/// among everything stored, probes included), with k = 10 requests as a client
/// would make them, 4 queries at a time.
pub(super) async fn recall_at_10(
    admin: &mut Stub,
    space: &str,
    queries: &[Vec<f32>],
    truth: &[Vec<String>],
    filter: Option<pb::Filter>,
) -> anyhow::Result<f64> {
    use futures::StreamExt;
    let asks = truth.iter().zip(queries).map(|(t, q)| {
        let mut c = admin.clone();
        let req = pb::RecallRequest {
            space: space.to_string(),
            cue: q.clone(),
            k: 10,
            filter: filter.clone(),
            ..Default::default()
        };
        async move {
            let got = c.recall_once(req).await?.into_inner();
            let found = got.memories.iter().filter(|m| t.contains(&m.id)).count();
            Ok::<_, tonic::Status>((found, t.len().min(10)))
        }
    });
    let results: Vec<_> = futures::stream::iter(asks)
        .buffer_unordered(4)
        .collect()
        .await;
    let (mut found, mut wanted) = (0usize, 0usize);
    for r in results {
        let (f, w) = r?;
        found += f;
        wanted += w;
    }
    Ok(if wanted == 0 {
        0.0
    } else {
        found as f64 / wanted as f64
    })
}

/// The exact 10 nearest ids of `query` among the workload rows `nearest` (the 10
/// nearest rows, from a ground-truth file or a brute-force scan) and the probes:
/// the true top 10 of rows ∪ probes lies within those.
pub(super) fn with_probes(
    work: &Workload,
    metric: pb::Metric,
    query: &[f32],
    nearest: &[u64],
    probes: &[(String, Vec<f32>)],
) -> Vec<String> {
    let mut scored: Vec<(f32, String)> = nearest
        .iter()
        .map(|&row| (work.score(metric, query, &work.vector(row)), work.id(row)))
        .chain(
            probes
                .iter()
                .map(|(id, v)| (work.score(metric, query, v), id.clone())),
        )
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.truncate(10);
    scored.into_iter().map(|(_, id)| id).collect()
}

/// What the export found against what was acked.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Audit {
    /// Acked ids missing, or stored at another LSN than acked.
    pub(crate) lost: u64,
    /// Ids stored more than once.
    pub(crate) stored_twice: u64,
    /// Records stored that no ack named.
    pub(crate) unacked_stored: u64,
    /// Forgotten ids still stored (must be 0).
    pub(crate) forgotten_stored: u64,
    pub(crate) stored: u64,
}

/// The ids a run acked, by what the export must show of them.
pub(super) struct Expected {
    /// Must be stored, at this LSN.
    pub(super) present: HashMap<String, u64>,
    /// Acked, and may be gone (expired).
    pub(super) may_be_gone: HashSet<String>,
    /// Acked and forgotten: must be gone.
    pub(super) forgotten: HashSet<String>,
}

pub(super) async fn audit(
    admin: &mut Stub,
    space: &str,
    expected: &Expected,
) -> anyhow::Result<Audit> {
    let mut stream = admin
        .export(pb::ExportRequest {
            space: space.to_string(),
            batch_size: 4096,
            ..Default::default()
        })
        .await?
        .into_inner();
    // Id → LSNs it is stored at.
    let mut stored: HashMap<String, Vec<u64>> = HashMap::new();
    let mut a = Audit::default();
    while let Some(m) = stream.message().await? {
        for mem in m.memories {
            a.stored += 1;
            stored.entry(mem.id).or_default().push(mem.lsn);
        }
    }
    a.stored_twice = stored.values().filter(|l| l.len() > 1).count() as u64;
    a.forgotten_stored = stored
        .keys()
        .filter(|id| expected.forgotten.contains(*id))
        .count() as u64;
    a.unacked_stored = stored
        .keys()
        .filter(|id| {
            !expected.present.contains_key(*id)
                && !expected.may_be_gone.contains(*id)
                && !expected.forgotten.contains(*id)
        })
        .count() as u64;
    a.lost = expected
        .present
        .iter()
        .filter(|(id, lsn)| !stored.get(*id).is_some_and(|l| l.contains(lsn)))
        .count() as u64;
    Ok(a)
}
