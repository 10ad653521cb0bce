//! Session sequence rules: accept, duplicate re-ack, gap, window, resume (also after
//! a restart), supersede, idle expiry, draining close, FIFO per session.
use mnemo_engine::{AckKind, Error, Lane, SpaceConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{config, obs, open, random_vec, rng};

#[test]
fn accept_duplicate_gap_and_nothing_written_on_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_space("s", SpaceConfig::new(8)).unwrap();
    let mut r = rng(1);
    let session = e.open_session("s", Some("client-a")).unwrap();
    assert_eq!(session.next_expected(), 1);
    let mut acks = Vec::new();
    for seq in 1..=3 {
        let t = session
            .observe(
                seq,
                obs(format!("o{seq}"), random_vec(&mut r, 8)),
                Lane::Normal,
            )
            .unwrap();
        acks.push(t.wait().unwrap());
    }
    assert!(acks.iter().all(|a| a.kind == AckKind::Accepted));
    assert_eq!(acks.iter().map(|a| a.lsn).collect::<Vec<_>>(), [1, 2, 3]);

    // A duplicate: same id and LSN as the original, nothing written.
    let dup = session
        .observe(2, obs("resent", random_vec(&mut r, 8)), Lane::Normal)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(dup.kind, AckKind::Duplicate);
    assert_eq!((dup.lsn, dup.id), (acks[1].lsn, acks[1].id));
    assert_eq!(e.get("s", 2).unwrap().content, "o2");

    // A gap names the expected sequence; nothing written.
    match session.observe(5, obs("gap", random_vec(&mut r, 8)), Lane::Normal) {
        Err(Error::SequenceGap { got, expected, .. }) => assert_eq!((got, expected), (5, 4)),
        other => panic!("expected a gap error, got {other:?}"),
    }
    assert!(matches!(
        session.observe(0, obs("zero", random_vec(&mut r, 8)), Lane::Normal),
        Err(Error::InvalidArgument(_))
    ));
    // Bad input: refused, and the expected sequence does not move.
    assert!(matches!(
        session.observe(4, obs("bad dim", random_vec(&mut r, 7)), Lane::Normal),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(session.next_expected(), 4);
    assert_eq!(e.snapshot("s").unwrap(), 3);

    let stats = e.ingest_stats();
    assert_eq!((stats.duplicates, stats.gaps), (1, 1));
    e.close().unwrap();
}

#[test]
fn duplicate_of_an_observation_in_flight_gets_the_original_ack() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_space("s", SpaceConfig::new(4)).unwrap();
    let s = e.open_session("s", None).unwrap();
    let first = s
        .observe(1, obs("one", vec![1.0, 0.0, 0.0, 0.0]), Lane::High)
        .unwrap();
    let again = s
        .observe(1, obs("one again", vec![1.0, 0.0, 0.0, 0.0]), Lane::High)
        .unwrap();
    let (a, b) = (first.wait().unwrap(), again.wait().unwrap());
    assert_eq!((a.kind, b.kind), (AckKind::Accepted, AckKind::Duplicate));
    assert_eq!((a.lsn, a.id), (b.lsn, b.id));
    assert_eq!(e.snapshot("s").unwrap(), 1, "written once");
    e.close().unwrap();
}

#[test]
fn credit_window_bounds_observations_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.ingest.credit_window = 4;
    let e = mnemo_engine::Engine::open(cfg).unwrap();
    e.create_space("s", SpaceConfig::new(4)).unwrap();
    let s = e.open_session("s", None).unwrap();
    assert_eq!(s.credit_window(), 4);
    let v = || vec![0.5, 0.5, 0.0, 0.0];
    // Unawaited tickets hold their credit.
    let held: Vec<_> = (1..=4)
        .map(|seq| s.observe(seq, obs("x", v()), Lane::Normal).unwrap())
        .collect();
    assert_eq!(s.in_flight(), 4);
    match s.observe(5, obs("x", v()), Lane::Normal) {
        Err(Error::WindowExceeded {
            window, in_flight, ..
        }) => assert_eq!((window, in_flight), (4, 4)),
        other => panic!("expected the window to be full, got {other:?}"),
    }
    for t in held {
        t.wait().unwrap();
    }
    assert_eq!(s.in_flight(), 0);
    s.observe(5, obs("x", v()), Lane::Normal)
        .unwrap()
        .wait()
        .unwrap();
    e.close().unwrap();
}

#[test]
fn resume_after_restart_continues_from_the_high_water_mark() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(2);
    let mut ids = HashMap::new();
    {
        let e = open(dir.path());
        e.create_space("s", SpaceConfig::new(8)).unwrap();
        let s = e.open_session("s", Some("agent-7")).unwrap();
        for seq in 1..=10 {
            let ack = s
                .observe(
                    seq,
                    obs(format!("o{seq}"), random_vec(&mut r, 8)),
                    Lane::Normal,
                )
                .unwrap()
                .wait()
                .unwrap();
            ids.insert(seq, (ack.lsn, ack.id));
        }
        e.close().unwrap();
    }
    let e = open(dir.path());
    assert!(matches!(
        e.resume_session("s", "never-seen"),
        Err(Error::SessionNotFound(_))
    ));
    let s = e.resume_session("s", "agent-7").unwrap();
    assert_eq!(s.next_expected(), 11);
    // The client re-sends a tail it was not sure about: exactly once.
    for seq in 8..=10 {
        let ack = s
            .observe(seq, obs("resent", random_vec(&mut r, 8)), Lane::Normal)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(ack.kind, AckKind::Duplicate);
        assert_eq!((ack.lsn, ack.id), ids[&seq]);
    }
    let ack = s
        .observe(11, obs("o11", random_vec(&mut r, 8)), Lane::Normal)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!((ack.kind, ack.lsn), (AckKind::Accepted, 11));
    e.close().unwrap();
}

#[test]
fn reopening_a_session_supersedes_the_old_handle() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_space("s", SpaceConfig::new(2)).unwrap();
    let old = e.open_session("s", Some("x")).unwrap();
    old.observe(1, obs("a", vec![1.0, 0.0]), Lane::Normal)
        .unwrap()
        .wait()
        .unwrap();
    let new = e.open_session("s", Some("x")).unwrap();
    assert_eq!(new.next_expected(), 2);
    assert!(matches!(
        old.observe(2, obs("b", vec![1.0, 0.0]), Lane::Normal),
        Err(Error::SessionClosed { .. })
    ));
    new.observe(2, obs("b", vec![1.0, 0.0]), Lane::Normal)
        .unwrap()
        .wait()
        .unwrap();
    e.close().unwrap();
}

#[test]
fn idle_sessions_expire_and_session_count_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.ingest.session_idle_timeout_s = 1;
    cfg.ingest.max_sessions = 3;
    let e = mnemo_engine::Engine::open(cfg).unwrap();
    e.create_space("s", SpaceConfig::new(2)).unwrap();
    let sessions: Vec<_> = (0..3).map(|_| e.open_session("s", None).unwrap()).collect();
    assert!(matches!(
        e.open_session("s", None),
        Err(Error::TooManySessions {
            open: 3,
            limit: 3,
            ..
        })
    ));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(e.ingest_stats().sessions_open, 0, "expired after 1 s idle");
    assert!(matches!(
        sessions[0].observe(1, obs("late", vec![0.0, 1.0]), Lane::Normal),
        Err(Error::SessionClosed { .. })
    ));
    e.open_session("s", None).unwrap();
    e.close().unwrap();
}

#[test]
fn close_with_drain_waits_until_indexed_and_returns_the_final_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_space("s", SpaceConfig::new(16)).unwrap();
    let mut r = rng(3);
    let s = e.open_session("s", None).unwrap();
    let tickets: Vec<_> = (1..=300)
        .map(|seq| {
            s.observe(seq, obs("d", random_vec(&mut r, 16)), Lane::Low)
                .unwrap()
        })
        .collect();
    drop(tickets); // acks not awaited: close still waits for every one
    let last = 300;
    assert_eq!(s.close(true, Duration::from_secs(30)).unwrap(), last);
    let (_, stats) = e.describe_space("s").unwrap();
    assert_eq!(stats.committed_lsn, 300);
    assert_eq!(stats.indexed_lsn, 300, "drained into the graph");
    e.close().unwrap();
}

/// 8 sessions at once: each session's records commit in its sequence order, and
/// every one is acked exactly once.
#[test]
fn fifo_per_session_under_8_concurrent_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(open(dir.path()));
    e.create_space("s", SpaceConfig::new(8)).unwrap();
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let e = Arc::clone(&e);
            std::thread::spawn(move || {
                let mut r = rng(100 + t);
                let s = e.open_session("s", Some(&format!("w{t}"))).unwrap();
                let mut pending = Vec::new();
                let mut acks = Vec::new();
                for seq in 1..=250 {
                    let lane = Lane::ALL[(seq % 3) as usize];
                    pending.push(
                        s.observe(seq, obs("f", random_vec(&mut r, 8)), lane)
                            .unwrap(),
                    );
                    if pending.len() == 16 {
                        acks.extend(pending.drain(..).map(|t| t.wait().unwrap()));
                    }
                }
                acks.extend(pending.drain(..).map(|t| t.wait().unwrap()));
                acks
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        let acks = h.join().unwrap();
        assert_eq!(acks.len(), 250);
        for w in acks.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1);
            assert!(w[1].lsn > w[0].lsn, "commit order follows sequence order");
        }
        all.extend(acks.iter().map(|a| a.lsn));
    }
    all.sort_unstable();
    assert_eq!(all, (1..=2000).collect::<Vec<_>>());
    e.wait_indexed("s", 2000, Duration::from_secs(60)).unwrap();
    // Each record carries its session and sequence.
    let m = e.get("s", 1).unwrap();
    assert!(m.session_id.starts_with('w') && m.session_seq >= 1);
}

/// A busy space cannot starve a quiet one: with one index worker and thousands of
/// records queued in space A, a few records of space B are indexed long before A is.
#[test]
fn a_busy_space_does_not_starve_a_quiet_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.index_threads = 1;
    let e = mnemo_engine::Engine::open(cfg).unwrap();
    e.create_space("busy", SpaceConfig::new(384)).unwrap();
    e.create_space("quiet", SpaceConfig::new(384)).unwrap();
    let mut r = rng(4);
    let n = 4000u64;
    let tickets: Vec<_> = (0..n)
        .map(|_| {
            e.observe("busy", obs("b", random_vec(&mut r, 384)))
                .unwrap()
        })
        .collect();
    for t in tickets {
        t.wait().unwrap();
    }
    for _ in 0..5 {
        e.observe_blocking("quiet", obs("q", random_vec(&mut r, 384)))
            .unwrap();
    }
    e.wait_indexed("quiet", 5, Duration::from_secs(30)).unwrap();
    let busy = e.describe_space("busy").unwrap().1.indexed_count;
    assert!(busy < n, "quiet space waited for all {n} busy records");
    e.wait_indexed("busy", n, Duration::from_secs(120)).unwrap();
    e.close().unwrap();
}

/// A session whose appends are still queued (its client gone, its tickets dropped,
/// so no credit is in flight) must not expire: reopened below those appends, it
/// would take their sequence numbers again and store them twice.
#[test]
fn a_session_with_appends_still_queued_does_not_expire() {
    use mnemo_engine::io::{FileSystem, SimFs};
    let fs = SimFs::new();
    let mut cfg = mnemo_engine::EngineConfig::new("/data");
    cfg.ingest.session_idle_timeout_s = 1;
    cfg.log.min_free_bytes = 0;
    let e =
        mnemo_engine::Engine::open_in(cfg, Arc::new(fs.clone()) as Arc<dyn FileSystem>).unwrap();
    e.create_space("s", SpaceConfig::new(2)).unwrap();
    let s = e.open_session("s", Some("slow-disk")).unwrap();
    fs.hold_syncs(); // the disk stalls: appends stay queued
    // Released when the test ends, even by a failed assertion, so that the
    // engine's close does not wait on the stalled disk for ever.
    struct Release(SimFs);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.release_syncs();
        }
    }
    let _release = Release(fs.clone());
    for seq in 1..=5 {
        drop(
            s.observe(
                seq,
                obs(format!("o{seq}"), vec![seq as f32, 1.0]),
                Lane::Normal,
            )
            .unwrap(),
        );
    }
    assert_eq!(s.in_flight(), 0, "dropped tickets returned their credits");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        e.ingest_stats().sessions_open,
        1,
        "expired with appends queued"
    );
    fs.release_syncs();
    e.wait_indexed("s", 5, Duration::from_secs(10)).unwrap();
    let again = e.open_session("s", Some("slow-disk")).unwrap();
    assert_eq!(again.next_expected(), 6);
    // Once everything committed, it may expire.
    drop((s, again));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(e.ingest_stats().sessions_open, 0);
    e.close().unwrap();
}

/// A DUPLICATE ack is sent only once the original is visible: a recall made right
/// after it finds the record (the session mark is set before the batch publishes).
#[test]
fn a_duplicate_ack_comes_only_once_the_original_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(open(dir.path()));
    e.create_space("s", SpaceConfig::new(2)).unwrap();
    let s = e.open_session("s", Some("dup")).unwrap();
    for seq in 1..=300u64 {
        let first = s
            .observe(
                seq,
                obs(format!("o{seq}"), vec![seq as f32, 1.0]),
                Lane::Normal,
            )
            .unwrap();
        let dup = s
            .observe(
                seq,
                obs(format!("o{seq}"), vec![seq as f32, 1.0]),
                Lane::Normal,
            )
            .unwrap();
        let ack = dup.wait().unwrap();
        assert_eq!(ack.kind, AckKind::Duplicate);
        assert!(
            e.snapshot("s").unwrap() >= ack.lsn,
            "DUPLICATE ack for LSN {} before it was visible",
            ack.lsn
        );
        first.wait().unwrap();
    }
    drop(s);
    Arc::try_unwrap(e).unwrap().close().unwrap();
}
