//! Forget (by ids, by session, by filter), supersede and expiry, each against an
//! oracle of what was acked, at snapshots before and after, across a restart; and
//! the purge that follows (snapshot pins, snapshots too old).
use mnemo_engine::{
    Engine, EngineConfig, Error, Filter, Memory, Observation, RecallRequest, SnapshotSpec,
    SpaceConfig, TagClause, TagTest,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use uuid::Uuid;

use crate::common::{config, random_vec, rng};

const DIM: usize = 8;

fn cfg(dir: &Path) -> EngineConfig {
    let mut c = config(dir);
    c.fresh_tier_bytes = 16 << 10; // most records move into the graph
    c.retention.maintenance_interval_ms = 3_600_000; // sweeps and purges when the test says
    c
}

fn observation(i: u64) -> Observation {
    Observation {
        id: Some(Uuid::from_u128(1000 + i as u128)),
        content: format!("memory {i}"),
        embedding: random_vec(&mut rng(i), DIM),
        tags: [("user".to_string(), format!("u{}", i % 5))].into(),
        session_id: format!("s{}", i % 3),
        session_seq: i / 3 + 1,
        ..Default::default()
    }
}

/// Every memory id seen by an exact recall of everything at `snapshot`.
fn seen(e: &Engine, space: &str, snapshot: SnapshotSpec) -> BTreeSet<Uuid> {
    let mut req = RecallRequest::new(vec![0.1; DIM], 10_000);
    req.snapshot = snapshot;
    let all: Vec<Memory> = e.recall(space, req).unwrap().collect_all().unwrap();
    all.into_iter().map(|m| m.id).collect()
}

/// Every id an export of `snapshot` returns.
fn exported(e: &Engine, space: &str, snapshot: u64) -> BTreeSet<Uuid> {
    let (ms, _) = e.export(space, 0, snapshot, 100_000, None).unwrap();
    ms.into_iter().map(|m| m.id).collect()
}

fn ingest(e: &Engine, space: &str, n: u64) -> BTreeMap<Uuid, u64> {
    (0..n)
        .map(|i| (e.observe_blocking(space, observation(i)).unwrap().id, i))
        .collect()
}

fn user(u: u64) -> Filter {
    Filter {
        tags: vec![TagClause {
            key: "user".into(),
            test: TagTest::Equals(format!("u{u}")),
        }],
        ..Default::default()
    }
}

#[test]
fn forget_by_filter_ids_and_session_against_an_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    e.create_space("f", SpaceConfig::new(DIM as u32)).unwrap();
    let all = ingest(&e, "f", 300);
    let mut alive: BTreeSet<Uuid> = all.keys().copied().collect();
    let before = e.snapshot("f").unwrap();

    // By filter.
    let f = e.forget("f", &[], &user(1)).unwrap();
    let gone: BTreeSet<Uuid> = all
        .iter()
        .filter(|(_, i)| *i % 5 == 1)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(f.count, gone.len() as u64);
    assert_eq!(f.lsn, before + 1, "a forget is a record with its own LSN");
    alive.retain(|id| !gone.contains(id));
    assert_eq!(seen(&e, "f", SnapshotSpec::Latest), alive);
    assert_eq!(
        seen(&e, "f", SnapshotSpec::At(before)).len(),
        300,
        "an older snapshot still sees them"
    );
    assert_eq!(seen(&e, "f", SnapshotSpec::At(f.lsn)), alive);
    assert_eq!(exported(&e, "f", f.lsn), alive);
    assert_eq!(exported(&e, "f", before).len(), 300);
    // A filtered recall, and the forgotten user's own filter.
    let mut req = RecallRequest::new(vec![0.1; DIM], 100);
    req.filter = user(1);
    assert!(
        e.recall("f", req.clone())
            .unwrap()
            .collect_all()
            .unwrap()
            .is_empty()
    );
    req.snapshot = SnapshotSpec::At(before);
    assert_eq!(e.recall("f", req).unwrap().collect_all().unwrap().len(), 60);
    // Forgetting it again finds nothing (and writes nothing).
    let again = e.forget("f", &[], &user(1)).unwrap();
    assert_eq!((again.count, again.lsn), (0, f.lsn));

    // By ids: two alive, one forgotten already, one unknown.
    let ids = [
        Uuid::from_u128(1000),
        Uuid::from_u128(1002),
        Uuid::from_u128(1001),
        Uuid::from_u128(99),
    ];
    let f2 = e.forget("f", &ids, &Filter::default()).unwrap();
    assert_eq!(f2.count, 2);
    alive.remove(&ids[0]);
    alive.remove(&ids[1]);
    let got = e.get_memories("f", &ids, None).unwrap();
    assert!(got.found.is_empty());
    assert_eq!(got.missing.len(), 4);
    let got = e.get_memories("f", &ids, Some(before)).unwrap();
    assert_eq!(
        got.found.len(),
        3,
        "before the forgets, three of them existed"
    );

    // By session.
    let session = Filter {
        session_ids: vec!["s2".into()],
        ..Default::default()
    };
    let f3 = e.forget("f", &[], &session).unwrap();
    let s2: BTreeSet<Uuid> = all
        .iter()
        .filter(|(id, i)| *i % 3 == 2 && alive.contains(id))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(f3.count, s2.len() as u64);
    alive.retain(|id| !s2.contains(id));
    assert_eq!(seen(&e, "f", SnapshotSpec::Latest), alive);
    // Ids and a filter together: their intersection.
    let f4 = e
        .forget(
            "f",
            &[Uuid::from_u128(1003), Uuid::from_u128(1004)],
            &user(3),
        )
        .unwrap();
    assert_eq!(f4.count, 1);
    alive.remove(&Uuid::from_u128(1003));

    // Refusals change nothing.
    let lsn = e.snapshot("f").unwrap();
    assert!(
        matches!(e.forget("f", &[], &Filter::default()), Err(Error::InvalidArgument(m)) if m.contains("empty selector"))
    );
    let many: Vec<Uuid> = (0..10_001).map(|i| Uuid::from_u128(i as u128)).collect();
    assert!(
        matches!(e.forget("f", &many, &Filter::default()), Err(Error::InvalidArgument(m)) if m.contains("10000"))
    );
    assert!(matches!(
        e.forget("nope", &ids, &Filter::default()),
        Err(Error::SpaceNotFound(_))
    ));
    assert_eq!(e.snapshot("f").unwrap(), lsn);

    // A forgotten id may be used again by a new memory.
    let mut o = observation(1);
    o.content = "reborn".into();
    e.observe_blocking("f", o).unwrap();
    alive.insert(Uuid::from_u128(1001));
    let got = e.get_memories("f", &[Uuid::from_u128(1001)], None).unwrap();
    assert_eq!(got.found[0].content, "reborn");
    let got = e
        .get_memories("f", &[Uuid::from_u128(1001)], Some(before))
        .unwrap();
    assert_eq!(
        got.found[0].content, "memory 1",
        "the old memory at the old snapshot"
    );

    // Across a restart.
    e.close().unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(seen(&e, "f", SnapshotSpec::Latest), alive);
    assert_eq!(seen(&e, "f", SnapshotSpec::At(before)).len(), 300);
    let got = e.get_memories("f", &[Uuid::from_u128(1001)], None).unwrap();
    assert_eq!(got.found[0].content, "reborn");
    e.close().unwrap();
}

#[test]
fn supersede_is_atomic_and_reported_by_get() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(Engine::open(cfg(dir.path())).unwrap());
    e.create_space("s", SpaceConfig::new(DIM as u32)).unwrap();
    let topic = |i: u64| Observation {
        id: Some(Uuid::from_u128(i as u128 + 1)),
        content: format!("version {i}"),
        embedding: random_vec(&mut rng(i), DIM),
        tags: [("topic".to_string(), "x".to_string())].into(),
        supersedes: (i > 0).then(|| Uuid::from_u128(i as u128)),
        ..Default::default()
    };
    e.observe_blocking("s", topic(0)).unwrap();
    // A reader checks that every snapshot holds exactly one version of the topic.
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (e, stop, checks) = (Arc::clone(&e), Arc::clone(&stop), Arc::clone(&checks));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let mut req = RecallRequest::new(vec![0.1; DIM], 100);
                req.filter = Filter {
                    tags: vec![TagClause {
                        key: "topic".into(),
                        test: TagTest::Equals("x".into()),
                    }],
                    ..Default::default()
                };
                let got = e.recall("s", req.clone()).unwrap().collect_all().unwrap();
                assert_eq!(got.len(), 1, "one version, never both or neither: {got:?}");
                // And unfiltered.
                let all = seen(&e, "s", SnapshotSpec::Latest);
                assert_eq!(all.len(), 1, "{all:?}");
                checks.fetch_add(1, Ordering::AcqRel);
            }
        })
    };
    // Corrections go on until the reader has checked many snapshots among them.
    let mut last = 0;
    while last < 40 || (checks.load(Ordering::Acquire) < 50 && last < 5000) {
        last += 1;
        e.observe_waiting("s", topic(last), Duration::from_secs(60))
            .and_then(|t| t.wait())
            .unwrap();
    }
    stop.store(true, Ordering::Release);
    reader.join().unwrap();
    assert!(checks.load(Ordering::Acquire) >= 50, "the reader kept up");
    // Get by the old id reports who superseded it.
    let newest = Uuid::from_u128(last as u128 + 1);
    let got = e
        .get_memories("s", &[Uuid::from_u128(1), newest], None)
        .unwrap();
    assert_eq!(
        got.superseded,
        vec![(Uuid::from_u128(1), Uuid::from_u128(2))]
    );
    assert_eq!(got.found.len(), 1);
    assert_eq!(got.found[0].supersedes, Some(Uuid::from_u128(last as u128)));
    // Superseding a superseded (dead) or unknown memory is refused, nothing written.
    let lsn = e.snapshot("s").unwrap();
    let mut again = topic(last + 10);
    again.supersedes = Some(Uuid::from_u128(3));
    assert!(matches!(
        e.observe_blocking("s", again),
        Err(Error::NotLive { .. })
    ));
    let mut unknown = topic(last + 11);
    unknown.supersedes = Some(Uuid::from_u128(77_777));
    assert!(matches!(
        e.observe_blocking("s", unknown),
        Err(Error::NotLive { .. })
    ));
    assert_eq!(e.snapshot("s").unwrap(), lsn);
    // A correction may keep the id of the memory it corrects.
    let same = Observation {
        id: Some(newest),
        content: "corrected in place".into(),
        supersedes: Some(newest),
        embedding: random_vec(&mut rng(9), DIM),
        ..Default::default()
    };
    e.observe_blocking("s", same).unwrap();
    let got = e.get_memories("s", &[newest], None).unwrap();
    assert_eq!(got.found[0].content, "corrected in place");
    let got = e.get_memories("s", &[newest], Some(lsn)).unwrap();
    assert_eq!(got.found[0].content, format!("version {last}"));

    // A correction of an observation still in flight (sent without waiting, as a
    // session streams): resolved when it commits, after the one it corrects.
    let first = e
        .observe(
            "s",
            Observation {
                id: Some(Uuid::from_u128(600)),
                content: "draft".into(),
                embedding: random_vec(&mut rng(600), DIM),
                ..Default::default()
            },
        )
        .unwrap();
    let fix = e
        .observe(
            "s",
            Observation {
                id: Some(Uuid::from_u128(600)),
                content: "final".into(),
                supersedes: Some(Uuid::from_u128(600)),
                embedding: random_vec(&mut rng(601), DIM),
                ..Default::default()
            },
        )
        .unwrap();
    let (first, fix) = (first.wait().unwrap(), fix.wait().unwrap());
    assert!(first.lsn < fix.lsn);
    let got = e.get_memories("s", &[Uuid::from_u128(600)], None).unwrap();
    assert_eq!(got.found[0].content, "final");
    let got = e
        .get_memories("s", &[Uuid::from_u128(600)], Some(first.lsn))
        .unwrap();
    assert_eq!(got.found[0].content, "draft");

    // Across a restart.
    let e = Arc::into_inner(e).unwrap();
    e.close().unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(seen(&e, "s", SnapshotSpec::Latest).len(), 2);
    let got = e.get_memories("s", &[Uuid::from_u128(600)], None).unwrap();
    assert_eq!(got.found[0].content, "final");
    let got = e.get_memories("s", &[Uuid::from_u128(1)], None).unwrap();
    assert_eq!(
        got.superseded,
        vec![(Uuid::from_u128(1), Uuid::from_u128(2))]
    );
    e.close().unwrap();
}

#[test]
fn expiry_is_decided_by_the_snapshot_commit_time() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    let mut sc = SpaceConfig::new(DIM as u32);
    sc.default_ttl_ms = Some(400);
    e.create_space("t", sc).unwrap();
    let mut keep = observation(0);
    keep.expires_at_us = Some(mnemo_engine::now_us() + 3_600_000_000);
    let kept = e.observe_blocking("t", keep).unwrap();
    let short = e.observe_blocking("t", observation(1)).unwrap(); // the space's 400 ms
    let at_short = e.snapshot("t").unwrap();
    let got = e.get_memories("t", &[short.id], None).unwrap();
    assert!(got.found[0].expires_at_us.is_some());
    std::thread::sleep(Duration::from_millis(600));
    // Nothing committed since: the latest snapshot's commit time is before the expiry.
    assert_eq!(seen(&e, "t", SnapshotSpec::Latest).len(), 2);
    // A later commit dates the next snapshot past it.
    e.observe_blocking("t", observation(2)).unwrap();
    let later = seen(&e, "t", SnapshotSpec::Latest);
    assert!(
        !later.contains(&short.id) && later.contains(&kept.id),
        "{later:?}"
    );
    assert!(seen(&e, "t", SnapshotSpec::At(at_short)).contains(&short.id));
    // The sweep forgets it with a record of its own (so an idle space's expiries
    // are dated too).
    std::thread::sleep(Duration::from_millis(500));
    let (expired, _) = e.maintain().unwrap();
    assert_eq!(expired, 2, "observation 1, then 2 after its own 400 ms");
    let latest = seen(&e, "t", SnapshotSpec::Latest);
    assert_eq!(latest, [kept.id].into());
    // An expiry in the past is refused.
    let mut past = observation(3);
    past.expires_at_us = Some(1);
    assert!(
        matches!(e.observe_blocking("t", past), Err(Error::InvalidArgument(m)) if m.contains("expires_at"))
    );
    // A bad TTL is refused.
    let mut bad = SpaceConfig::new(4);
    bad.default_ttl_ms = Some(0);
    assert!(e.create_space("bad", bad).is_err());
    e.close().unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    assert_eq!(seen(&e, "t", SnapshotSpec::Latest), [kept.id].into());
    e.close().unwrap();
}

#[test]
fn purge_waits_for_pinned_snapshots_then_refuses_older_ones() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    e.create_space("p", SpaceConfig::new(DIM as u32)).unwrap();
    ingest(&e, "p", 200);
    let before = e.snapshot("p").unwrap();
    e.wait_indexed("p", before, Duration::from_secs(30))
        .unwrap();
    let mut old = RecallRequest::new(vec![0.1; DIM], 1000);
    old.snapshot = SnapshotSpec::At(before);
    let cursor = e.recall("p", old.clone()).unwrap();
    let f = e.forget("p", &[], &user(2)).unwrap();
    assert_eq!(f.count, 40);
    let (_, purged) = e.maintain().unwrap();
    assert_eq!(purged, 0, "a cursor reads the snapshot before the forget");
    assert_eq!(cursor.collect_all().unwrap().len(), 200);
    let (_, purged) = e.maintain().unwrap();
    assert_eq!(purged, 40);
    assert!(
        matches!(e.recall("p", old), Err(Error::SnapshotTooOld { oldest, .. }) if oldest == f.lsn)
    );
    assert!(matches!(
        e.get_memories("p", &[], Some(before)),
        Err(Error::SnapshotTooOld { .. })
    ));
    let (_, s) = e.describe_space("p").unwrap();
    assert_eq!(s.indexed_count, 160, "purged memories left the graph");
    assert_eq!(seen(&e, "p", SnapshotSpec::Latest).len(), 160);
    assert_eq!(seen(&e, "p", SnapshotSpec::At(f.lsn)).len(), 160);
    e.close().unwrap();
}

#[test]
fn a_duplicate_of_a_memory_forgotten_and_compacted_is_still_acked() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(cfg(dir.path())).unwrap();
    e.create_space("d", SpaceConfig::new(DIM as u32)).unwrap();
    let session = e.open_session("d", Some("agent")).unwrap();
    let mut lsns = Vec::new();
    for seq in 1..=10 {
        let mut o = observation(seq);
        o.session_id = String::new();
        o.session_seq = 0;
        let ack = session
            .observe(seq, o, mnemo_engine::Lane::Normal)
            .unwrap()
            .wait()
            .unwrap();
        lsns.push(ack.lsn);
    }
    let _ = e
        .forget("d", &[observation(3).id.unwrap()], &Filter::default())
        .unwrap();
    let done = e.compact("d").unwrap();
    assert_eq!(done.purged, 1);
    let mut o = observation(3);
    o.session_id = String::new();
    o.session_seq = 0;
    let dup = session
        .observe(3, o, mnemo_engine::Lane::Normal)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(dup.kind, mnemo_engine::AckKind::Duplicate);
    assert_eq!((dup.lsn, dup.id), (lsns[2], Uuid::nil()));
    let mut o = observation(4);
    o.session_id = String::new();
    o.session_seq = 0;
    let dup = session
        .observe(4, o, mnemo_engine::Lane::Normal)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(dup.id, observation(4).id.unwrap());
    drop(session);
    e.close().unwrap();
}
