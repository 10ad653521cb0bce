//! Overload: producers far faster than the index workers drive the pressure state up
//! through Warning and Critical to Overloaded, get per-item refusals with a non-zero
//! retry_after, memory stays under the configured bound, and once the load stops
//! every accepted observation is indexed and recallable. Then shutdown drains.
use mnemo_engine::{Engine, Error, PressureState, RecallRequest, SpaceConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{config, obs, random_vec, rng};

const DIM: usize = 128;
const MAX_ITEMS: usize = 2000;

#[test]
fn overload_refuses_with_retry_after_bounds_memory_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.index_threads = 1;
    cfg.ingest.queue_max_items = MAX_ITEMS;
    cfg.ingest.pressure_sample_ms = 2;
    let e = Arc::new(Engine::open(cfg).unwrap());
    e.create_space("o", SpaceConfig::new(DIM as u32)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    // Watch every state change, and the bound on what is held, while the load runs.
    let watcher = {
        let e = Arc::clone(&e);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut rx = e.subscribe_pressure();
            let mut states = vec![PressureState::Normal];
            let mut max_held = 0;
            while !stop.load(Ordering::Acquire) {
                if rx.has_changed().unwrap_or(false) {
                    let s = rx.borrow_and_update().state;
                    if states.last() != Some(&s) {
                        states.push(s);
                    }
                }
                max_held = max_held.max(e.pressure().queue_items);
                std::thread::sleep(Duration::from_micros(500));
            }
            (states, max_held)
        })
    };

    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..4u64)
        .map(|t| {
            let (e, stop) = (Arc::clone(&e), Arc::clone(&stop));
            let (accepted, refused) = (Arc::clone(&accepted), Arc::clone(&refused));
            std::thread::spawn(move || {
                let mut r = rng(t);
                let mut retry_afters = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    match e.observe("o", obs("load", random_vec(&mut r, DIM))) {
                        Ok(ticket) => {
                            ticket.wait().unwrap();
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::Overloaded { retry_after, .. }) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            retry_afters.push(retry_after);
                            std::thread::sleep(retry_after.min(Duration::from_millis(5)));
                        }
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
                retry_afters
            })
        })
        .collect();

    let started = Instant::now();
    while refused.load(Ordering::Relaxed) < 200 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Release);
    let retry_afters: Vec<Duration> = producers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    let (states, max_held) = watcher.join().unwrap();

    assert!(
        refused.load(Ordering::Relaxed) >= 200,
        "load never overloaded the engine"
    );
    assert!(
        retry_afters
            .iter()
            .all(|d| *d >= Duration::from_millis(10) && *d <= Duration::from_secs(30)),
        "retry_after within 10 ms..30 s"
    );
    for s in [
        PressureState::Warning,
        PressureState::Critical,
        PressureState::Overloaded,
    ] {
        assert!(
            states.contains(&s),
            "state {s:?} never reported: {states:?}"
        );
    }
    let first = |s| states.iter().position(|x| *x == s).unwrap();
    assert!(first(PressureState::Warning) < first(PressureState::Critical));
    assert!(first(PressureState::Critical) < first(PressureState::Overloaded));
    assert!(max_held <= MAX_ITEMS, "held {max_held} > bound {MAX_ITEMS}");

    // Every accepted observation gets indexed and is recallable.
    let n = accepted.load(Ordering::Relaxed);
    assert_eq!(e.snapshot("o").unwrap(), n);
    e.wait_indexed("o", n, Duration::from_secs(120)).unwrap();
    let (_, stats) = e.describe_space("o").unwrap();
    assert_eq!(stats.indexed_count, n);
    let ingest = e.ingest_stats();
    assert_eq!(ingest.accepted, n);
    assert!(ingest.refused_overloaded >= 200);
    assert!(ingest.largest_batch > 1, "batches grow under load");
    for lsn in (1..=n).step_by((n / 50).max(1) as usize) {
        let m = e.get("o", lsn).unwrap();
        let hits = e
            .recall("o", RecallRequest::new(m.embedding.clone(), 1))
            .unwrap()
            .collect_all()
            .unwrap();
        assert_eq!(
            hits[0].lsn, lsn,
            "record {lsn} is recallable by its own vector"
        );
    }
    // Pressure comes back down once drained.
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.pressure().state != PressureState::Normal && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(e.pressure().state, PressureState::Normal);
    assert!(e.pressure().drain_rate > 0.0);
}

#[test]
fn shutdown_drains_the_index_queue() {
    let dir = tempfile::tempdir().unwrap();
    let n = 1500u64;
    {
        let mut cfg = config(dir.path());
        cfg.index_threads = 1;
        let e = Engine::open(cfg).unwrap();
        e.create_space("d", SpaceConfig::new(64)).unwrap();
        let mut r = rng(9);
        let tickets: Vec<_> = (0..n)
            .map(|_| e.observe("d", obs("d", random_vec(&mut r, 64))).unwrap())
            .collect();
        for t in tickets {
            t.wait().unwrap();
        }
        assert!(
            e.describe_space("d").unwrap().1.indexed_lsn < n,
            "still queued at close"
        );
        e.close().unwrap();
    }
    let e = Engine::open(config(dir.path())).unwrap();
    let (_, s) = e.describe_space("d").unwrap();
    assert_eq!(
        s.checkpoint_lsn, n,
        "close indexed everything and checkpointed it"
    );
    assert_eq!(s.fresh_count, 0, "nothing left to replay");
    e.close().unwrap();
}
