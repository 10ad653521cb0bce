//! Fencing by the shared log itself, against a real `nats-server` (skipped without
//! one unless `MNEMO_REQUIRE_NATS` is set): two nodes that both believe they own a
//! partition cannot both append, and a retried append that had landed is
//! recognised by its message id instead of being written twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mnemo_engine::Error;

use super::Role;
use crate::config::ClusterConfig;
use crate::node::{Node, connect};

/// The server, and its store (deleted after it).
struct Server(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh nats-server with JetStream on a free port, and its URL.
pub(crate) fn nats_server() -> Option<(impl Drop, String)> {
    nats_server_with("")
}

/// [`nats_server`] with `extra` added to its configuration.
pub(crate) fn nats_server_with(extra: &str) -> Option<(impl Drop, String)> {
    let bin = std::env::var_os("MNEMO_NATS_SERVER")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("nats-server"))
                .find(|p| p.is_file())
        });
    let Some(bin) = bin else {
        assert!(
            std::env::var_os("MNEMO_REQUIRE_NATS").is_none(),
            "MNEMO_REQUIRE_NATS is set but no nats-server was found"
        );
        eprintln!("skipped: no nats-server (set MNEMO_NATS_SERVER)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\", sync_interval: always }}\n{extra}\n",
            dir.path().join("js").display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child, dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((server, format!("nats://127.0.0.1:{port}")))
}

async fn node(id: &str, url: &str) -> Arc<Node> {
    let config = ClusterConfig {
        nats: url.into(),
        partitions: 1,
        node_id: id.into(),
        advertise: format!("http://{id}:7400"),
        ..ClusterConfig::default()
    };
    Arc::new(
        connect(config, tokio::runtime::Handle::current())
            .await
            .unwrap(),
    )
}

/// Makes `node` believe it owns partition 0, whatever the lease says.
fn claim(node: &Node) {
    *node.partitions[0].role.lock() = Role::Owner {
        lease_until: Instant::now() + Duration::from_secs(60),
        revision: 0,
    };
}

async fn last_sequence(node: &Node) -> u64 {
    let mut stream = node
        .js
        .get_stream(&node.partitions[0].stream)
        .await
        .unwrap();
    stream.info().await.unwrap().state.last_sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_cannot_both_append_and_a_landed_retry_is_not_written_twice() {
    let Some((_server, url)) = nats_server() else {
        return;
    };
    let a = node("a", &url).await;
    let b = node("b", &url).await;
    claim(&a);
    claim(&b);

    Arc::clone(&a).publish(0, "first".into()).await.unwrap();
    assert_eq!(a.partitions[0].applied.load(Ordering::SeqCst), 1);

    // b has applied nothing, so its append states "after 0": refused by the log.
    let refused = Arc::clone(&b).publish(0, "stale".into()).await;
    assert!(
        matches!(refused, Err(Error::NotOwner { partition: 0, .. })),
        "{refused:?}"
    );
    assert!(!b.partitions[0].role.lock().is_owner_now(), "b steps down");
    assert!(matches!(
        Arc::clone(&b).publish(0, "again".into()).await,
        Err(Error::NotOwner { .. })
    ));
    assert_eq!(last_sequence(&a).await, 1);

    // a's append lands, and a then retries it as if the ack had been lost: the
    // log refuses the retry, and reading the stream shows it is a's own.
    Arc::clone(&a).publish(0, "second".into()).await.unwrap();
    a.partitions[0].applied.store(1, Ordering::SeqCst);
    Arc::clone(&a).publish(0, "second".into()).await.unwrap();
    assert_eq!(a.partitions[0].applied.load(Ordering::SeqCst), 2);
    assert_eq!(
        last_sequence(&a).await,
        2,
        "the retry was not written again"
    );
    assert!(a.partitions[0].role.lock().is_owner_now());

    // A writer whose lease time has passed does not even try.
    *a.partitions[0].role.lock() = Role::Owner {
        lease_until: Instant::now(),
        revision: 0,
    };
    assert!(matches!(
        Arc::clone(&a).publish(0, "late".into()).await,
        Err(Error::NotOwner { .. })
    ));
    assert_eq!(last_sequence(&a).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_takes_a_free_lease_and_releases_it_on_leaving() {
    let Some((_server, url)) = nats_server() else {
        return;
    };
    let a = node("a", &url).await;
    let b = node("b", &url).await;
    let holder = tokio::spawn(crate::lease::hold(Arc::clone(&a), 0));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.partitions[0].role.lock().is_owner_now() {
        assert!(Instant::now() < deadline, "a did not take the free lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // b sees a as the owner and sends clients there.
    let watcher = tokio::spawn(crate::lease::hold(Arc::clone(&b), 0));
    while !matches!(&*b.partitions[0].role.lock(), Role::Follower { owner: Some(o) } if o == "http://a:7400")
    {
        assert!(Instant::now() < deadline, "b does not name a as the owner");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holder.abort();
    Arc::clone(&a).release_leases().await;
    assert!(!a.partitions[0].role.lock().is_owner_now());
    let entry = a.leases.entry("p0").await.unwrap();
    assert!(
        entry.is_none_or(|e| e.operation != async_nats::jetstream::kv::Operation::Put),
        "the lease key is gone"
    );
    // b takes it at its next check (a quarter TTL), well before the TTL would
    // have expired the key.
    while !b.partitions[0].role.lock().is_owner_now() {
        assert!(
            Instant::now() < deadline,
            "b did not take the released lease"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    watcher.abort();
}
