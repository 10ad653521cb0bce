use crate::common::*;
use mnemo_engine::{Error, Metric, Observation, RecallRequest, SnapshotSpec, SpaceConfig};
use std::time::Duration;

#[test]
fn spaces_create_list_describe_drop() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    let a = e.create_space("alpha", SpaceConfig::new(4)).unwrap();
    e.create_space(
        "beta",
        SpaceConfig {
            metric: Metric::L2,
            ..SpaceConfig::new(8)
        },
    )
    .unwrap();
    assert!(matches!(
        e.create_space("alpha", SpaceConfig::new(4)),
        Err(Error::SpaceExists(_))
    ));
    assert!(matches!(
        e.create_space("bad name!", SpaceConfig::new(4)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        e.create_space("zero", SpaceConfig::new(0)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        e.create_space("huge", SpaceConfig::new(4097)),
        Err(Error::InvalidArgument(_))
    ));
    let mut i8_l2 = SpaceConfig {
        metric: Metric::L2,
        ..SpaceConfig::new(4)
    };
    i8_l2.index.precision = mnemo_engine::Precision::I8;
    assert!(matches!(
        e.create_space("i8l2", i8_l2),
        Err(Error::InvalidArgument(_))
    ));
    let names: Vec<_> = e.list_spaces().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["alpha", "beta"]);
    let (info, stats) = e.describe_space("alpha").unwrap();
    assert_eq!(info, a);
    assert_eq!(stats.committed_lsn, 0);
    e.drop_space("alpha").unwrap();
    assert!(matches!(
        e.describe_space("alpha"),
        Err(Error::SpaceNotFound(_))
    ));
    assert!(matches!(
        e.drop_space("alpha"),
        Err(Error::SpaceNotFound(_))
    ));
    // A new space with the old name starts from scratch.
    e.create_space("alpha", SpaceConfig::new(4)).unwrap();
    assert_eq!(e.snapshot("alpha").unwrap(), 0);
    e.close().unwrap();
    let e = open(dir.path());
    let names: Vec<_> = e.list_spaces().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["beta", "alpha"]);
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_space("s", SpaceConfig::new(4)).unwrap();
    e.observe_blocking("s", obs("ok", vec![1.0, 0.0, 0.0, 0.0]))
        .unwrap();
    let bad = [
        obs("wrong dim", vec![1.0, 0.0]),
        obs("nan", vec![f32::NAN, 0.0, 0.0, 0.0]),
        obs("inf", vec![f32::INFINITY, 0.0, 0.0, 0.0]),
        obs("x".repeat(64 * 1024 + 1), vec![1.0; 4]),
        Observation {
            confidence: Some(-0.1),
            ..obs("conf", vec![1.0; 4])
        },
    ];
    for o in bad {
        let err = e.observe("s", o).map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    assert!(matches!(
        e.observe("nope", obs("x", vec![1.0; 4])),
        Err(Error::SpaceNotFound(_))
    ));
    assert_eq!(e.snapshot("s").unwrap(), 1);
    assert_eq!(e.log_stats().records_committed, 1);
    // Recall input is checked too.
    assert!(matches!(
        e.recall("s", RecallRequest::new(vec![1.0; 3], 1)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        e.recall("s", RecallRequest::new(vec![f32::NAN; 4], 1)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        e.recall("s", RecallRequest::new(vec![1.0; 4], 0)),
        Err(Error::InvalidArgument(_))
    ));
    let future = RecallRequest {
        snapshot: SnapshotSpec::At(9),
        ..RecallRequest::new(vec![1.0; 4], 1)
    };
    assert!(matches!(
        e.recall("s", future),
        Err(Error::SnapshotInFuture { .. })
    ));
}

#[test]
fn observation_is_visible_as_soon_as_it_is_acked() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_space("s", SpaceConfig::new(16)).unwrap();
    let mut r = rng(1);
    for i in 0..300 {
        let v = random_vec(&mut r, 16);
        let done = e
            .observe_blocking("s", obs(format!("m{i}"), v.clone()))
            .unwrap();
        let hits = e
            .recall("s", RecallRequest::new(v, 1))
            .unwrap()
            .collect_all()
            .unwrap();
        assert_eq!(
            hits[0].lsn, done.lsn,
            "record {i} not visible right after its ack"
        );
        assert_eq!(hits[0].id, done.id);
        assert_eq!(hits[0].content, format!("m{i}"));
        assert!((hits[0].score - 1.0).abs() < 1e-4);
    }
    assert_eq!(e.snapshot("s").unwrap(), 300);
}

#[test]
fn results_carry_everything_and_cursor_batches_never_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_space("s", SpaceConfig::new(8)).unwrap();
    let mut r = rng(2);
    for i in 0..500 {
        let o = Observation {
            confidence: Some(0.5),
            occurred_at_us: Some(1_000 + i),
            tags: [("kind".to_string(), "note".to_string())].into(),
            session_id: "sess".into(),
            session_seq: i as u64 + 1,
            ..obs(format!("m{i}"), random_vec(&mut r, 8))
        };
        e.observe_blocking("s", o).unwrap();
    }
    let m = e.get("s", 10).unwrap();
    assert_eq!(
        (m.content.as_str(), m.confidence, m.occurred_at_us),
        ("m9", 0.5, 1_009)
    );
    assert_eq!(m.tags.get("kind").map(String::as_str), Some("note"));
    assert_eq!((m.session_id.as_str(), m.session_seq), ("sess", 10));
    assert_eq!(e.session_high_water("s", "sess").unwrap(), Some((500, 500)));

    let cue = random_vec(&mut r, 8);
    let mut cursor = e.recall("s", RecallRequest::new(cue.clone(), 100)).unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    loop {
        let batch = cursor.next_batch(7).unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 7);
        assert!(
            batch.windows(2).all(|w| w[0].score >= w[1].score),
            "a batch is ordered best first"
        );
        for m in batch {
            assert!(seen.insert(m.lsn), "LSN {} returned twice", m.lsn);
            total += 1;
        }
    }
    assert_eq!(total, 100);
    assert!(cursor.is_done());
}

#[test]
fn read_your_writes_waits_then_times_out_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let e = std::sync::Arc::new(open(dir.path()));
    e.create_space("s", SpaceConfig::new(4)).unwrap();
    let req = |lsn, wait| RecallRequest {
        snapshot: SnapshotSpec::AtLeast(lsn),
        max_wait: wait,
        ..RecallRequest::new(vec![1.0; 4], 1)
    };
    let err = e
        .recall("s", req(1, Duration::from_millis(50)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                wanted: 1,
                committed: 0,
                ..
            }
        ),
        "{err}"
    );
    let writer = {
        let e = e.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            e.observe_blocking("s", obs("late", vec![1.0; 4])).unwrap()
        })
    };
    let cursor = e.recall("s", req(1, Duration::from_secs(10))).unwrap();
    assert!(cursor.snapshot() >= 1);
    assert_eq!(cursor.collect_all().unwrap()[0].content, "late");
    writer.join().unwrap();
}

#[test]
fn full_fresh_tier_refuses_with_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.fresh_tier_bytes = 4096; // 20 rows of 64-d f16
    c.index_threads = 1;
    let e = mnemo_engine::Engine::open(c).unwrap();
    e.create_space("s", SpaceConfig::new(64)).unwrap();
    let mut r = rng(3);
    let mut tickets = Vec::new();
    let mut refused = None;
    for i in 0..10_000 {
        match e.observe("s", obs(format!("{i}"), random_vec(&mut r, 64))) {
            Ok(t) => tickets.push(t),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    let err = refused.expect("a 16-row fresh tier must refuse at some point");
    assert!(
        matches!(err, Error::Overloaded { retry_after, .. } if !retry_after.is_zero()),
        "{err}"
    );
    let n = tickets.len() as u64;
    for t in tickets {
        t.wait().unwrap();
    }
    e.wait_indexed("s", n, Duration::from_secs(30)).unwrap();
    // Once drained, it accepts again.
    e.observe_blocking("s", obs("again", random_vec(&mut r, 64)))
        .unwrap();
}

#[test]
fn export_past_the_end_or_from_the_last_lsn_returns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_space("s", SpaceConfig::new(2)).unwrap();
    for i in 0..3 {
        e.observe_blocking("s", obs(format!("o{i}"), vec![i as f32, 1.0]))
            .unwrap();
    }
    assert!(e.export("s", u64::MAX, 3, 10, None).unwrap().0.is_empty());
    assert!(e.export("s", 3, 3, 10, None).unwrap().0.is_empty());
    assert_eq!(e.export("s", 1, 3, usize::MAX, None).unwrap().0.len(), 2);
    e.close().unwrap();
}
