//! Two nodes in one process on a real `nats-server` (skipped without one unless
//! `MNEMO_REQUIRE_NATS` is set): the shared catalog (create, adopt, drop, a new
//! number for a re-created name), following, and a node configured with another
//! partition count refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mnemo_engine::{Engine, EngineConfig, Observation, SpaceConfig};

use super::Cluster;
use crate::checkpoints::CheckpointConfig;
use crate::config::ClusterConfig;
use crate::error::ClusterError;
use crate::shared_log::tests::{nats_server, nats_server_with};

fn config(id: &str, url: &str, partitions: u32) -> ClusterConfig {
    ClusterConfig {
        nats: url.into(),
        partitions,
        node_id: id.into(),
        advertise: format!("http://{id}:7400"),
        lease_ttl_ms: 1_000,
        ..ClusterConfig::default()
    }
}

fn start(id: &str, url: &str, dir: &std::path::Path) -> (Cluster, Arc<Engine>) {
    let mut engine = EngineConfig::new(dir.join(id));
    engine.index_threads = 1;
    let (cluster, engine) =
        Cluster::open(config(id, url, 2), &CheckpointConfig::default(), engine).unwrap();
    let engine = Arc::new(engine);
    cluster.run(Arc::clone(&engine));
    (cluster, engine)
}

fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn number_of(engine: &Engine, name: &str) -> Option<u32> {
    engine
        .list_spaces()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.no.0)
}

#[test]
fn spaces_created_and_dropped_anywhere_reach_every_node() {
    let Some((_server, url)) = nats_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca, a) = start("a", &url, dir.path());
    let (cb, b) = start("b", &url, dir.path());

    let first = a.create_space("s", SpaceConfig::new(4)).unwrap().no.0;
    eventually("b adopts s", || number_of(&b, "s") == Some(first));
    assert!(matches!(
        b.create_space("s", SpaceConfig::new(4)),
        Err(mnemo_engine::Error::SpaceExists(_))
    ));

    // Writes go through whichever node owns the partition; the other follows.
    eventually("a partition owner", || {
        !ca.owned().is_empty() || !cb.owned().is_empty()
    });
    let p = first % 2;
    eventually("s's partition has an owner", || {
        ca.owned().contains(&p) || cb.owned().contains(&p)
    });
    let (writer, reader) = if ca.owned().contains(&p) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    for i in 0..50 {
        let o = Observation {
            content: format!("m{i}"),
            embedding: vec![i as f32, 1.0, 0.0, 0.5],
            ..Default::default()
        };
        writer.observe("s", o).unwrap().wait().unwrap();
    }
    eventually("the follower has all 50", || {
        reader.snapshot("s").unwrap_or(0) == 50
    });

    // Dropped on b: gone on a too; the name can be used again, with a new number.
    b.drop_space("s").unwrap();
    eventually("a drops s", || number_of(&a, "s").is_none());
    let second = a.create_space("s", SpaceConfig::new(4)).unwrap().no.0;
    assert_ne!(first, second, "space numbers are never reused");
    eventually("b adopts the new s", || number_of(&b, "s") == Some(second));
    assert_eq!(b.snapshot("s").unwrap(), 0);

    // A node configured with another partition count does not join.
    let engine = EngineConfig::new(dir.path().join("c"));
    let refused = Cluster::open(config("c", &url, 3), &CheckpointConfig::default(), engine);
    assert!(
        matches!(refused, Err(ClusterError::Mismatch(_))),
        "{refused:?}"
    );
    drop((ca, cb));
}

#[test]
fn credentials_in_the_url_are_used_and_never_shown() {
    let Some((_server, url)) =
        nats_server_with("authorization { user: mnemo, password: s3cret-pass }")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let with = |password: &str, id: &str| {
        let url = url.replace("nats://", &format!("nats://mnemo:{password}@"));
        let mut c = config(id, &url, 2);
        c.nats = url;
        Cluster::open(
            c,
            &CheckpointConfig::default(),
            EngineConfig::new(dir.path().join(id)),
        )
    };
    assert!(
        with("s3cret-pass", "a").is_ok(),
        "the URL's credentials are sent"
    );
    let e = with("wrong-pass", "b").unwrap_err().to_string();
    assert!(e.contains("authorization"), "{e}");
    assert!(!e.contains("wrong-pass"), "the password is shown: {e}");
}
