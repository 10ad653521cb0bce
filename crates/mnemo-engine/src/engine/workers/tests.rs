//! The warm tier inside the engine: rows crossing fresh → warm → graph under
//! concurrent recalls, filters and forgets on warm rows, recovery with rows in
//! every tier.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{HOLD, HOLD_MOVES};
use crate::index::score;
use crate::types::{Filter, Lsn, Metric, TagClause, TagTest};
use crate::{Engine, EngineConfig, Observation, RecallRequest, SnapshotSpec, SpaceConfig};

const DIM: usize = 64;

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir);
    cfg.index_threads = 1;
    cfg.warm_backlog = 0;
    cfg
}

fn vectors(seed: u64, n: usize) -> Vec<Vec<f32>> {
    crate::index::test_noise(seed, n, DIM)
}

/// Writes `vs` (tag `topic` = i % 10) and waits for every ack; returns the LSNs.
fn write(engine: &Engine, space: &str, vs: &[Vec<f32>]) -> Vec<Lsn> {
    let tickets: Vec<_> = vs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut obs = Observation {
                content: format!("m{i}"),
                embedding: v.clone(),
                ..Default::default()
            };
            obs.tags.insert("topic".into(), (i % 10).to_string());
            engine.observe(space, obs).unwrap()
        })
        .collect();
    tickets.into_iter().map(|t| t.wait().unwrap().lsn).collect()
}

fn topic_filter(topics: &[&str]) -> Filter {
    Filter {
        tags: vec![TagClause {
            key: "topic".into(),
            test: TagTest::AnyOf(topics.iter().map(|t| t.to_string()).collect()),
        }],
        ..Default::default()
    }
}

/// Writes `vs` while the workers are held, then lets them move the rows into the
/// warm tier (moves into the graph stay held); returns the LSNs.
fn into_warm(engine: &Engine, name: &str, vs: &[Vec<f32>]) -> Vec<Lsn> {
    let space = engine.inner.registry.by_name(name).unwrap();
    hold(name, true);
    hold_moves(name, true);
    let (fresh, warm) = (space.fresh.len(), space.warm.len());
    let lsns = write(engine, name, vs);
    assert_eq!(space.fresh.len(), fresh + vs.len());
    hold(name, false);
    wait_for("rows into the warm tier", || {
        space.warm.len() == warm + vs.len()
    });
    lsns
}

/// Holds (or lets go) the index workers' batches of space `name`.
fn hold(name: &str, on: bool) {
    set(&HOLD, name, on);
}

/// Holds (or lets go) the moves of space `name`'s warm rows into its graph.
fn hold_moves(name: &str, on: bool) {
    set(&HOLD_MOVES, name, on);
}

fn set(hook: &parking_lot::Mutex<Vec<String>>, name: &str, on: bool) {
    let mut names = hook.lock();
    names.retain(|n| n != name);
    if on {
        names.push(name.to_owned());
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(60), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// LSNs of a k-nearest recall at `snapshot` (k large enough to hold everything),
/// optionally with a filter every memory matches (then every match is scored:
/// exhaustive, whatever the graph's approximation).
fn recall_all(engine: &Engine, space: &str, cue: &[f32], snapshot: Lsn, every: bool) -> Vec<Lsn> {
    let mut req = RecallRequest::new(cue.to_vec(), 5000);
    req.snapshot = SnapshotSpec::At(snapshot);
    if every {
        req.filter = Filter {
            tags: vec![TagClause {
                key: "topic".into(),
                test: TagTest::Present,
            }],
            ..Default::default()
        };
    }
    let got = engine.recall(space, req).unwrap().collect_all().unwrap();
    got.iter().map(|m| m.lsn).collect()
}

/// Rows held back, then let through the warm tier into the graph while a thread
/// recalls everything at the latest snapshot, again and again: each recall
/// returns every LSN up to its snapshot, once.
#[test]
fn rows_cross_every_tier_and_each_is_found_once_at_every_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(config(dir.path())).unwrap());
    let name = "tiers-cross";
    engine
        .create_space(name, SpaceConfig::new(DIM as u32))
        .unwrap();
    let lsns = into_warm(&engine, name, &vectors(1, 3000));
    let space = engine.inner.registry.by_name(name).unwrap();
    assert_eq!(space.fresh.len(), 0);
    assert_eq!(
        engine.indexed_lsn(name).unwrap(),
        0,
        "nothing in the graph yet"
    );
    let done = Arc::new(AtomicBool::new(false));
    let checker = {
        let (engine, done, space) = (engine.clone(), done.clone(), space.clone());
        std::thread::spawn(move || {
            let cue = vectors(9, 1).remove(0);
            let mut checks = 0;
            loop {
                let finished = done.load(Ordering::Acquire);
                let snapshot = engine.snapshot(name).unwrap();
                let all: BTreeSet<Lsn> = (1..=snapshot).collect();
                // Every match scored (fresh codes, graph vectors, the log for warm rows).
                let got = recall_all(&engine, name, &cue, snapshot, true);
                let unique: BTreeSet<Lsn> = got.iter().copied().collect();
                assert_eq!(unique.len(), got.len(), "a row returned twice");
                assert_eq!(unique, all, "a row missing at {snapshot}");
                // The three searches: each row once; the only misses are the
                // graph's own (approximate search), never a row between tiers.
                let got = recall_all(&engine, name, &cue, snapshot, false);
                let unique: BTreeSet<Lsn> = got.iter().copied().collect();
                assert_eq!(unique.len(), got.len(), "a row returned twice");
                let missed: Vec<Lsn> = all.difference(&unique).copied().collect();
                assert!(missed.len() * 5 <= all.len(), "{} missed", missed.len());
                let where_: Vec<_> = missed
                    .iter()
                    .filter(|&&l| !space.hnsw.contains(l))
                    .map(|&l| (l, space.warm.holds(l), space.fresh.rows(&[l]).len()))
                    .collect();
                assert!(where_.is_empty(), "{where_:?}");
                checks += 1;
                if finished {
                    return checks;
                }
            }
        })
    };
    // More rows while the first ones move: through fresh, warm and graph at once.
    hold_moves(name, false);
    let more = write(&engine, name, &vectors(2, 1500));
    let last = *more.last().unwrap();
    wait_for("everything in the graph", || {
        engine.indexed_lsn(name).unwrap() == last && space.warm.len() == 0
    });
    done.store(true, Ordering::Release);
    let checks = checker.join().unwrap();
    assert!(checks >= 2, "{checks}");
    let (entered, moved) = space.warm.flow();
    assert!(entered >= 3000 && entered == moved, "{entered} {moved}");
    assert_eq!(space.hnsw.len(), lsns.len() + more.len());
    drop(space);
    Arc::into_inner(engine).unwrap().close().unwrap();
}

/// Filters and forgets on rows that are in the warm tier: a selective filter gets
/// its exact top k; a forgotten row is never returned, before and after it moves.
#[test]
fn filters_and_forgets_reach_warm_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.recall_exact_limit = 100;
    let engine = Engine::open(cfg).unwrap();
    let name = "tiers-filters";
    engine
        .create_space(name, SpaceConfig::new(DIM as u32))
        .unwrap();
    let vs = vectors(3, 2000);
    into_warm(&engine, name, &vs);
    let space = engine.inner.registry.by_name(name).unwrap();
    let cue = vectors(8, 1).remove(0);
    let prepared = score::prepare(Metric::Cosine, &cue);
    let oracle = |topic: Option<&str>, k: usize| -> Vec<Lsn> {
        let mut all: Vec<(Lsn, f32)> = vs
            .iter()
            .enumerate()
            .filter(|(i, _)| topic.is_none_or(|t| (i % 10).to_string() == t))
            .map(|(i, v)| {
                let s = score::score(
                    Metric::Cosine,
                    &prepared,
                    &score::prepare(Metric::Cosine, v),
                );
                (i as Lsn + 1, s)
            })
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all.iter().take(k).map(|a| a.0).collect()
    };
    let filtered = |topics: &[&str], k: usize| -> Vec<Lsn> {
        let mut req = RecallRequest::new(cue.clone(), k);
        req.filter = topic_filter(topics);
        let got = engine.recall(name, req).unwrap().collect_all().unwrap();
        got.iter().map(|m| m.lsn).collect()
    };
    // 200 matches: above the exact limit, searched with the filter as predicate;
    // every row is in the warm tier, and its candidates are scored exactly.
    assert_eq!(filtered(&["3"], 10), oracle(Some("3"), 10));
    // Forget topic 3: gone from every recall while in the warm tier…
    let forgotten: BTreeSet<Lsn> = (1..=2000).filter(|l| (l - 1) % 10 == 3).collect();
    let forget = engine.forget(name, &[], &topic_filter(&["3"])).unwrap();
    assert_eq!(forget.count, 200);
    assert!(filtered(&["3"], 10).is_empty());
    let all = recall_all(&engine, name, &cue, engine.snapshot(name).unwrap(), true);
    assert_eq!(all.len(), 1800);
    assert!(all.iter().all(|l| !forgotten.contains(l)));
    // …and after the rows moved into the graph (and the dead were purged).
    hold_moves(name, false);
    wait_for("everything in the graph", || space.warm.len() == 0);
    // (Searched in the graph with the filter as predicate: approximate.)
    let all = recall_all(&engine, name, &cue, engine.snapshot(name).unwrap(), true);
    assert!(all.len() >= 1700, "{}", all.len());
    assert!(all.iter().all(|l| !forgotten.contains(l)));
    assert_eq!(filtered(&["4"], 10), oracle(Some("4"), 10));
    engine.close().unwrap();
}

/// A restart with rows in every tier (graph, warm, fresh): each is found once
/// after the reopen, which replays what the graph's checkpoint lacks.
#[test]
fn a_reopen_with_rows_in_every_tier_finds_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let name = "tiers-reopen";
    let mut cfg = config(dir.path());
    let total = {
        let engine = Engine::open(cfg.clone()).unwrap();
        engine
            .create_space(name, SpaceConfig::new(DIM as u32))
            .unwrap();
        let space = engine.inner.registry.by_name(name).unwrap();
        into_warm(&engine, name, &vectors(4, 1200));
        hold_moves(name, false);
        wait_for("into the graph", || space.warm.len() == 0);
        engine.checkpoint(name).unwrap();
        into_warm(&engine, name, &vectors(5, 1500));
        hold(name, true);
        write(&engine, name, &vectors(6, 300));
        assert_eq!(space.fresh.len(), 300);
        assert_eq!(space.hnsw.len(), 1200);
        // A crash: no close, so nothing more is saved; the files as they are now
        // are opened in a copy (the abandoned engine still holds the directory).
        let total = engine.snapshot(name).unwrap();
        std::mem::forget(engine);
        total
    };
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    std::fs::remove_file(copy.path().join("LOCK")).ok();
    hold(name, false);
    hold_moves(name, false);
    cfg.data_dir = copy.path().to_owned();
    // A small fresh tier (~1,300 rows at 64-d): the replay overflows it into the
    // warm tier (whose codebook trains on the 1,024 or more rows it holds).
    cfg.fresh_tier_bytes = 256 * 1024;
    let engine = Engine::open(cfg).unwrap();
    let space = engine.inner.registry.by_name(name).unwrap();
    assert!(
        space.warm.len() > 0 && space.fresh.len() > 0,
        "the replay filled both"
    );
    let cue = vectors(7, 1).remove(0);
    let got = recall_all(&engine, name, &cue, total, true);
    let unique: BTreeSet<Lsn> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len());
    assert_eq!(unique, (1..=total).collect());
    engine
        .wait_indexed(name, total, Duration::from_secs(60))
        .unwrap();
    let got = recall_all(&engine, name, &cue, total, true);
    assert_eq!(got.len(), total as usize);
    engine.close().unwrap();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Property: with every row in the warm tier, a recall filtered on any set of
/// topics returns the exact top k of its matches, both when every match is scored
/// (below the exact limit) and when the tiers are searched with the filter as
/// predicate (above it).
#[test]
fn filtered_recalls_over_warm_rows_match_an_exact_oracle() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.recall_exact_limit = 300;
    let engine = Engine::open(cfg).unwrap();
    let name = "tiers-oracle";
    engine
        .create_space(name, SpaceConfig::new(DIM as u32))
        .unwrap();
    let vs = vectors(11, 3000);
    into_warm(&engine, name, &vs);
    let prepared: Vec<Vec<f32>> = vs
        .iter()
        .map(|v| score::prepare(Metric::Cosine, v))
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::btree_set(0u8..10, 1..6),
        1usize..30,
        0u64..1000,
    );
    runner
        .run(&strategy, |(topics, k, seed)| {
            let cue = vectors(1000 + seed, 1).remove(0);
            let q = score::prepare(Metric::Cosine, &cue);
            let names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut want: Vec<(Lsn, f32)> = prepared
                .iter()
                .enumerate()
                .filter(|(i, _)| topics.contains(&((i % 10) as u8)))
                .map(|(i, v)| (i as Lsn + 1, score::score(Metric::Cosine, &q, v)))
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let want: Vec<Lsn> = want.iter().take(k).map(|w| w.0).collect();
            let mut req = RecallRequest::new(cue, k);
            req.filter = topic_filter(&refs);
            let got: Vec<Lsn> = engine
                .recall(name, req)
                .unwrap()
                .collect_all()
                .unwrap()
                .iter()
                .map(|m| m.lsn)
                .collect();
            prop_assert_eq!(got, want, "topics {:?}", topics);
            Ok(())
        })
        .unwrap();
    hold_moves(name, false);
    engine.close().unwrap();
}
