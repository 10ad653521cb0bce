//! Filtered recall, get by id, id uniqueness and memory-aware ranking, each
//! against a brute-force oracle over what was acked, at a snapshot taken mid-ingest
//! (some records still in the fresh tier), and after a restart.
use mnemo_engine::{
    Engine, EngineConfig, Error, Filter, Memory, Observation, Ranking, RecallRequest, SnapshotSpec,
    SpaceConfig, TagClause, TagTest, TimeRange,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::{config, random_vec, rng};

const DIM: usize = 16;
const N: u64 = 4000;

fn tags(i: u64) -> BTreeMap<String, String> {
    let mut t: BTreeMap<String, String> = [
        ("user".to_string(), format!("u{}", i % 20)),
        (
            "kind".to_string(),
            if i.is_multiple_of(3) { "fact" } else { "note" }.to_string(),
        ),
    ]
    .into();
    if i % 1000 == 7 {
        t.insert("vip".into(), "yes".into());
    }
    if i.is_multiple_of(7) {
        t.insert("draft".into(), String::new());
    }
    t
}

fn observation(i: u64) -> Observation {
    Observation {
        content: format!("memory {i}"),
        embedding: random_vec(&mut rng(i), DIM),
        confidence: Some(((i * 37) % 100) as f32 / 100.0),
        occurred_at_us: Some(1_000_000 * i as i64),
        tags: tags(i),
        session_id: format!("s{}", i % 4),
        session_seq: i / 4 + 1,
        ..Default::default()
    }
}

fn engine_config(dir: &Path, exact_limit: u64) -> EngineConfig {
    let mut c = config(dir);
    // A small fresh tier: most records move into the graph as ingestion goes on.
    c.fresh_tier_bytes = 64 << 10;
    c.recall_exact_limit = exact_limit;
    c
}

/// Observes `0..N`; returns the engine and every stored memory by LSN.
fn ingest(dir: &Path, exact_limit: u64) -> (Engine, BTreeMap<u64, Memory>) {
    let e = Engine::open(engine_config(dir, exact_limit)).unwrap();
    e.create_space("s", SpaceConfig::new(DIM as u32)).unwrap();
    for chunk in (0..N).collect::<Vec<_>>().chunks(200) {
        let tickets: Vec<_> = chunk
            .iter()
            .map(|&i| {
                e.observe_waiting("s", observation(i), Duration::from_secs(30))
                    .unwrap()
            })
            .collect();
        for t in tickets {
            t.wait().unwrap();
        }
    }
    let stored = e
        .export("s", 0, N, N as usize, None)
        .unwrap()
        .0
        .into_iter()
        .map(|m| (m.lsn, m))
        .collect();
    (e, stored)
}

fn clause(key: &str, test: TagTest) -> TagClause {
    TagClause {
        key: key.into(),
        test,
    }
}

fn matches(f: &Filter, m: &Memory) -> bool {
    f.matches(mnemo_engine::Attributes {
        tags: &m.tags,
        session_id: &m.session_id,
        occurred_at_us: m.occurred_at_us,
        recorded_at_us: m.recorded_at_us,
        confidence: m.confidence,
    })
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

/// The exact top `k` (LSN, score) of the stored memories matching `f` at `snapshot`.
fn oracle(
    stored: &BTreeMap<u64, Memory>,
    f: &Filter,
    snapshot: u64,
    cue: &[f32],
    k: usize,
    weigh: &dyn Fn(&Memory, f32) -> f32,
) -> Vec<(u64, f32)> {
    let mut all: Vec<(u64, f32)> = stored
        .range(..=snapshot)
        .filter(|(_, m)| matches(f, m))
        .map(|(&lsn, m)| (lsn, weigh(m, cosine(cue, &m.embedding))))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn recall(e: &Engine, cue: &[f32], k: usize, f: &Filter, snapshot: u64, r: Ranking) -> Vec<Memory> {
    let req = RecallRequest {
        snapshot: SnapshotSpec::At(snapshot),
        filter: f.clone(),
        ranking: r,
        ..RecallRequest::new(cue.to_vec(), k)
    };
    e.recall("s", req).unwrap().collect_all().unwrap()
}

fn filters() -> Vec<(&'static str, Filter)> {
    let f = |tags| Filter {
        tags,
        ..Default::default()
    };
    vec![
        ("none", Filter::default()),
        (
            "user = u3 (5 %)",
            f(vec![clause("user", TagTest::Equals("u3".into()))]),
        ),
        (
            "user in {u1, u2} and kind = fact",
            f(vec![
                clause("user", TagTest::AnyOf(vec!["u1".into(), "u2".into()])),
                clause("kind", TagTest::Equals("fact".into())),
            ]),
        ),
        (
            "vip (0.1 %)",
            f(vec![clause("vip", TagTest::Equals("yes".into()))]),
        ),
        (
            "draft present, session s1",
            Filter {
                session_ids: vec!["s1".into()],
                ..f(vec![clause("draft", TagTest::Present)])
            },
        ),
        (
            "draft absent, occurred in [1000 s, 2000 s), confidence >= 0.5",
            Filter {
                occurred_at: TimeRange {
                    from_us: Some(1_000_000_000),
                    until_us: Some(2_000_000_000),
                },
                min_confidence: Some(0.5),
                ..f(vec![clause("draft", TagTest::Absent)])
            },
        ),
        (
            "nobody",
            f(vec![clause("user", TagTest::Equals("u99".into()))]),
        ),
    ]
}

/// Exact where it matters: below the exact limit, every filter returns the true
/// top k of its matches, at a mid-ingest snapshot and at the end, and after a
/// restart.
#[test]
fn filtered_recall_returns_the_exact_top_k_of_the_matches() {
    let dir = tempfile::tempdir().unwrap();
    let (e, stored) = ingest(dir.path(), 8192);
    let check = |e: &Engine| {
        for (name, f) in filters() {
            for snapshot in [N / 2, N] {
                for q in 0..5u64 {
                    let cue = random_vec(&mut rng(10_000 + q), DIM);
                    let want = oracle(&stored, &f, snapshot, &cue, 10, &|_, s| s);
                    let got = recall(e, &cue, 10, &f, snapshot, Ranking::default());
                    let got: Vec<u64> = got.iter().map(|m| m.lsn).collect();
                    let want: Vec<u64> = want.iter().map(|w| w.0).collect();
                    assert_eq!(got, want, "{name}, snapshot {snapshot}, cue {q}");
                }
            }
        }
    };
    check(&e);
    e.close().unwrap();
    let e = Engine::open(engine_config(dir.path(), 8192)).unwrap();
    check(&e);
    e.close().unwrap();
}

/// Above the exact limit, both tiers are searched with the filter as their
/// predicate: results still match, in score order, never above the snapshot, and
/// they are nearly all of the true top 10.
#[test]
fn searched_filters_match_and_keep_recall() {
    let dir = tempfile::tempdir().unwrap();
    let (e, stored) = ingest(dir.path(), 50);
    let (mut found, mut wanted) = (0, 0);
    for (name, f) in filters() {
        for q in 0..10u64 {
            let cue = random_vec(&mut rng(20_000 + q), DIM);
            let snapshot = N - 500 + q;
            let want = oracle(&stored, &f, snapshot, &cue, 10, &|_, s| s);
            let got = recall(&e, &cue, 10, &f, snapshot, Ranking::default());
            assert_eq!(got.len(), want.len(), "{name}: as many as match, up to k");
            for w in got.windows(2) {
                assert!(w[0].score >= w[1].score, "{name}: score order");
            }
            for m in &got {
                assert!(m.lsn <= snapshot && matches(&f, m), "{name}: {m:?}");
            }
            found += got
                .iter()
                .filter(|m| want.iter().any(|w| w.0 == m.lsn))
                .count();
            wanted += want.len();
        }
    }
    let recall_at_10 = found as f64 / wanted as f64;
    assert!(recall_at_10 >= 0.95, "{recall_at_10}");
    e.close().unwrap();
}

/// Recency and confidence: with a selective filter the order is exactly the
/// oracle's combined score; unfiltered, nearly so.
#[test]
fn ranking_weighs_recency_and_confidence() {
    let dir = tempfile::tempdir().unwrap();
    let (e, stored) = ingest(dir.path(), 8192);
    let ranking = Ranking {
        half_life: Some(Duration::from_secs(500)),
        confidence_weight: 1.0,
    };
    let snapshot = N - 100;
    let now = stored[&snapshot].recorded_at_us;
    let weigh = |m: &Memory, cos: f32| {
        let age = (now - m.occurred_at_us).max(0) as f64 / 500e6;
        (1.0 + cos) / 2.0 * 0.5f64.powf(age) as f32 * m.confidence
    };
    let selective = Filter {
        tags: vec![clause("user", TagTest::Equals("u7".into()))],
        ..Default::default()
    };
    let (mut found, mut wanted) = (0, 0);
    for q in 0..10u64 {
        let cue = random_vec(&mut rng(30_000 + q), DIM);
        let want = oracle(&stored, &selective, snapshot, &cue, 10, &weigh);
        let got = recall(&e, &cue, 10, &selective, snapshot, ranking);
        assert_eq!(
            got.iter().map(|m| m.lsn).collect::<Vec<_>>(),
            want.iter().map(|w| w.0).collect::<Vec<_>>()
        );
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.score - w.1).abs() < 1e-4,
                "the score is the combined one"
            );
        }
        let want = oracle(&stored, &Filter::default(), snapshot, &cue, 10, &weigh);
        let got = recall(&e, &cue, 10, &Filter::default(), snapshot, ranking);
        found += got
            .iter()
            .filter(|m| want.iter().any(|w| w.0 == m.lsn))
            .count();
        wanted += want.len();
    }
    // The recent memories dominate: far from the plain similarity order.
    let plain = recall(
        &e,
        &[1.0; DIM],
        10,
        &Filter::default(),
        snapshot,
        Ranking::default(),
    );
    let ranked = recall(&e, &[1.0; DIM], 10, &Filter::default(), snapshot, ranking);
    assert_ne!(plain, ranked);
    assert!(found as f64 / wanted as f64 >= 0.95, "{found}/{wanted}");
    e.close().unwrap();
}

#[test]
fn get_by_id_and_ids_are_unique_per_space() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    e.create_space("s", SpaceConfig::new(4)).unwrap();
    e.create_space("t", SpaceConfig::new(4)).unwrap();
    let id = uuid::Uuid::now_v7();
    let with_id = |content: &str| Observation {
        id: Some(id),
        content: content.into(),
        embedding: vec![1.0, 0.0, 0.0, 0.0],
        ..Default::default()
    };
    let first = e.observe_blocking("s", with_id("first")).unwrap();
    // The same id again: refused, nothing written; in another space it is fine.
    let again = e.observe("s", with_id("second"));
    assert!(
        matches!(again, Err(Error::MemoryExists { lsn: Some(1), .. })),
        "{again:?}"
    );
    assert_eq!(e.snapshot("s").unwrap(), 1);
    e.observe_blocking("t", with_id("elsewhere")).unwrap();
    // Two in flight at once: the second is refused while the first is pending.
    let other = uuid::Uuid::now_v7();
    let obs = Observation {
        id: Some(other),
        embedding: vec![0.0, 1.0, 0.0, 0.0],
        ..Default::default()
    };
    let t1 = e.observe("s", obs.clone()).unwrap();
    let t2 = e.observe("s", obs);
    assert!(matches!(t2, Err(Error::MemoryExists { .. })), "{t2:?}");
    let second = t1.wait().unwrap();
    let unknown = uuid::Uuid::now_v7();
    let got = e.get_memories("s", &[other, unknown, id], None).unwrap();
    let (snap, found, missing) = (got.snapshot, got.found, got.missing);
    assert_eq!(snap, 2);
    assert_eq!(
        found.iter().map(|m| (m.id, m.lsn)).collect::<Vec<_>>(),
        vec![(other, second.lsn), (id, first.lsn)]
    );
    assert_eq!(found[1].content, "first");
    assert_eq!(missing, vec![unknown]);
    // As of snapshot 1, the second memory did not exist yet.
    let got = e.get_memories("s", &[other, id], Some(1)).unwrap();
    let (found, missing) = (got.found, got.missing);
    assert_eq!(found.len(), 1);
    assert_eq!(missing, vec![other]);
    assert!(e.get_memories("s", &[id], Some(9)).is_err());
    assert!(e.get_memories("s", &vec![id; 1001], None).is_err());
    // Ids survive a restart.
    e.close().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    assert!(matches!(
        e.observe("s", with_id("after restart")),
        Err(Error::MemoryExists { .. })
    ));
    assert_eq!(
        e.get_memories("s", &[id], None).unwrap().found[0].content,
        "first"
    );
    e.close().unwrap();
}

#[test]
fn bad_filters_are_refused_naming_the_clause() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).unwrap();
    e.create_space("s", SpaceConfig::new(4)).unwrap();
    let bad = Filter {
        occurred_at: TimeRange {
            from_us: Some(10),
            until_us: Some(5),
        },
        ..Default::default()
    };
    let req = RecallRequest {
        filter: bad.clone(),
        ..RecallRequest::new(vec![1.0; 4], 5)
    };
    let err = e.recall("s", req).unwrap_err();
    assert!(err.to_string().contains("filter.occurred_at"), "{err}");
    assert!(e.select("s", &bad, 0).is_err());
    e.close().unwrap();
}

/// Shared by the property test: one engine with every memory stored.
fn shared() -> &'static (Engine, BTreeMap<u64, Memory>, tempfile::TempDir) {
    static SHARED: OnceLock<(Engine, BTreeMap<u64, Memory>, tempfile::TempDir)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (e, stored) = ingest(dir.path(), 200);
        (e, stored, dir)
    })
}

fn any_filter() -> impl Strategy<Value = Filter> {
    let tag = prop_oneof![
        (0u8..25).prop_map(|u| clause("user", TagTest::Equals(format!("u{u}")))),
        prop::collection::vec(0u8..25, 1..4).prop_map(|us| clause(
            "user",
            TagTest::AnyOf(us.iter().map(|u| format!("u{u}")).collect())
        )),
        Just(clause("kind", TagTest::Equals("fact".into()))),
        Just(clause("draft", TagTest::Present)),
        Just(clause("draft", TagTest::Absent)),
        Just(clause("vip", TagTest::Present)),
    ];
    (
        prop::collection::vec(tag, 0..3),
        prop::collection::vec(0u8..5, 0..2),
        prop::option::of((0i64..4000, 1i64..4000)),
        prop::option::of(0u8..100),
    )
        .prop_map(|(tags, sessions, time, conf)| Filter {
            tags,
            session_ids: sessions.iter().map(|s| format!("s{s}")).collect(),
            occurred_at: time.map_or_else(TimeRange::default, |(a, len)| TimeRange {
                from_us: Some(a * 1_000_000),
                until_us: Some((a + len) * 1_000_000),
            }),
            min_confidence: conf.map(|c| f32::from(c) / 100.0),
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// For any filter and snapshot: results are matching memories at or below the
    /// snapshot, in score order, as many as match up to k; the selection an export
    /// walks is exactly the matching set.
    #[test]
    fn results_are_matching_memories_in_order_below_the_snapshot(
        f in any_filter(), snapshot in 1u64..=N, q in 0u64..1000, k in 1usize..30,
    ) {
        let (e, stored, _) = shared();
        let cue = random_vec(&mut rng(40_000 + q), DIM);
        let got = recall(e, &cue, k, &f, snapshot, Ranking::default());
        let matching: Vec<u64> = stored.range(..=snapshot).filter(|(_, m)| matches(&f, m)).map(|(l, _)| *l).collect();
        prop_assert_eq!(got.len(), matching.len().min(k));
        for m in &got {
            prop_assert!(m.lsn <= snapshot && matching.contains(&m.lsn));
        }
        for w in got.windows(2) {
            prop_assert!(w[0].score >= w[1].score);
        }
        let sel = e.select("s", &f, snapshot).unwrap();
        let (exported, _) = e.export("s", 0, snapshot, usize::MAX, Some(&sel)).unwrap();
        prop_assert_eq!(exported.iter().map(|m| m.lsn).collect::<Vec<_>>(), matching);
    }
}
