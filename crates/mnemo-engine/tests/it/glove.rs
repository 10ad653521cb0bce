//! Recall quality on real data: GloVe-50 (399K words, 1K queries, exact cosine
//! ground truth), built by `../shared/data/get.sh glove DIR`. Needs MNEMO_GLOVE_DIR;
//! with MNEMO_REQUIRE_DATASETS=1 (as in CI) a missing dataset fails the test.
use crate::common::*;
use mnemo_engine::{Observation, RecallRequest, SpaceConfig};
use std::path::Path;
use std::time::Duration;

fn read_vecs<T: Copy>(path: &Path, conv: fn([u8; 4]) -> T) -> Vec<Vec<T>> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let d = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 4;
        out.push(
            (0..d)
                .map(|i| conv(bytes[pos + 4 * i..pos + 4 * i + 4].try_into().unwrap()))
                .collect(),
        );
        pos += 4 * d;
    }
    out
}

#[test]
fn glove50_recall_at_10_with_default_parameters() {
    let Some(data) = std::env::var_os("MNEMO_GLOVE_DIR") else {
        assert!(
            std::env::var_os("MNEMO_REQUIRE_DATASETS").is_none(),
            "MNEMO_GLOVE_DIR is required"
        );
        eprintln!("skipping: MNEMO_GLOVE_DIR not set (see ../shared/data/README.md)");
        return;
    };
    let data = Path::new(&data);
    let base = read_vecs(&data.join("base.fvecs"), f32::from_le_bytes);
    let queries = read_vecs(&data.join("query.fvecs"), f32::from_le_bytes);
    let gt = read_vecs(&data.join("gt_cosine_top100.ivecs"), i32::from_le_bytes);
    assert_eq!((base.len(), queries.len()), (399_000, 1_000));

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.index_batch = 256;
    let e = mnemo_engine::Engine::open(c).unwrap();
    e.create_space("glove", SpaceConfig::new(50)).unwrap(); // default parameters
    let mut last = 0;
    for chunk in base.chunks(4096) {
        let tickets: Vec<_> = chunk
            .iter()
            .map(|v| {
                loop {
                    match e.observe(
                        "glove",
                        Observation {
                            embedding: v.clone(),
                            ..Default::default()
                        },
                    ) {
                        Ok(t) => break t,
                        Err(mnemo_engine::Error::Overloaded { retry_after, .. }) => {
                            std::thread::sleep(retry_after)
                        }
                        Err(err) => panic!("{err}"),
                    }
                }
            })
            .collect();
        for t in tickets {
            last = t.wait().unwrap().lsn;
        }
    }
    assert_eq!(last, 399_000);
    e.wait_indexed("glove", last, Duration::from_secs(600))
        .unwrap();

    let mut hits = 0usize;
    for (q, truth) in queries.iter().zip(&gt) {
        let res = e
            .recall("glove", RecallRequest::new(q.clone(), 10))
            .unwrap()
            .collect_all()
            .unwrap();
        let truth: std::collections::HashSet<u64> =
            truth[..10].iter().map(|&i| i as u64 + 1).collect();
        hits += res.iter().filter(|m| truth.contains(&m.lsn)).count();
    }
    let recall = hits as f64 / (10.0 * queries.len() as f64);
    eprintln!("GloVe-50 recall@10 = {recall:.4}");
    assert!(recall >= 0.95, "recall@10 {recall:.4} < 0.95");
}
