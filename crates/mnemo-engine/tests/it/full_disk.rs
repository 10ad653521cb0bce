//! A full disk, for real: the data directory lives on a small tmpfs.
//!
//! - Below the free-space reserve, observations are refused up front with
//!   `StorageFull`: nothing is written, the session's next sequence is unchanged,
//!   recalls go on, and writing resumes by itself once space is freed.
//! - With the reserve off, the log runs into ENOSPC in the middle of a write: the
//!   short write is cut, the log fails closed (no later write can land after a hole),
//!   recalls go on, and a restart with space freed recovers every acked record.
//!
//! Mounting needs root (CAP_SYS_ADMIN). Elsewhere the tests say so and pass, unless
//! `MNEMO_REQUIRE_TMPFS` is set (CI sets it when it runs as root).
use crate::common::*;
use mnemo_engine::{Engine, Error, Lane, RecallRequest, SpaceConfig};
use std::path::{Path, PathBuf};
use std::process::Command;

const DIM: usize = 32;

/// A tmpfs of a fixed size mounted on a temporary directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(Tmpfs { dir });
        }
        assert!(
            std::env::var_os("MNEMO_REQUIRE_TMPFS").is_none(),
            "MNEMO_REQUIRE_TMPFS is set but mounting a tmpfs failed"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A file of `bytes` zeros that takes real space on the tmpfs.
fn ballast(path: &Path, bytes: usize) {
    std::fs::write(path, vec![0u8; bytes]).unwrap();
}

fn big_obs(i: u64) -> mnemo_engine::Observation {
    let mut r = rng(i);
    obs(
        format!("{i:08}-{}", "x".repeat(900)),
        random_vec(&mut r, DIM),
    )
}

fn engine_on(dir: &Path, reserve: u64) -> Engine {
    let mut c = config(&dir.join("data"));
    c.log.min_free_bytes = reserve;
    c.index_threads = 1;
    Engine::open(c).unwrap()
}

/// Observes in one session until refused; returns the refused sequence and error.
fn fill_until_refused(session: &mnemo_engine::Session) -> (u64, Error) {
    for seq in 1..100_000 {
        if let Err(err) = session
            .observe(seq, big_obs(seq), Lane::Normal)
            .and_then(|t| t.wait())
        {
            return (seq, err);
        }
    }
    panic!("never refused");
}

fn assert_all_readable(e: &Engine, upto: u64) {
    for lsn in 1..=upto {
        let m = e.get("s", lsn).unwrap();
        assert!(m.content.starts_with(&format!("{lsn:08}-")), "LSN {lsn}");
    }
    let hit = &e
        .recall("s", RecallRequest::new(big_obs(upto).embedding, 1))
        .unwrap()
        .collect_all()
        .unwrap()[0];
    assert_eq!(hit.lsn, upto, "the last acked record is recallable");
}

#[test]
fn below_the_reserve_observations_are_refused_and_resume_when_space_is_freed() {
    let Some(fs) = Tmpfs::mount(12 << 20) else {
        return;
    };
    let ballast_path: PathBuf = fs.path().join("ballast");
    ballast(&ballast_path, 3 << 20);
    let e = engine_on(fs.path(), 4 << 20);
    e.create_space("s", SpaceConfig::new(DIM as u32)).unwrap();
    let session = e.open_session("s", Some("agent")).unwrap();

    let (refused, err) = fill_until_refused(&session);
    assert!(
        matches!(err, Error::StorageFull { free_bytes, reserve_bytes, .. }
            if free_bytes < reserve_bytes && reserve_bytes == 4 << 20),
        "{err}"
    );
    assert!(refused > 100, "refused too early: {refused}");
    let acked = refused - 1;
    assert_eq!(
        session.next_expected(),
        refused,
        "a refusal moves no sequence"
    );
    assert_eq!(
        e.snapshot("s").unwrap(),
        acked,
        "nothing written on refusal"
    );
    assert!(err.to_string().contains("recalls go on"), "{err}");
    // The one-shot path refuses too, and recalls are served.
    assert!(matches!(
        e.observe_blocking("s", big_obs(0)),
        Err(Error::StorageFull { .. })
    ));
    assert_all_readable(&e, acked);

    // Free space: writing resumes at the refused sequence, no restart needed.
    std::fs::remove_file(&ballast_path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(60)); // past the sample's age
    let ack = session
        .observe(refused, big_obs(refused), Lane::Normal)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(ack.lsn, refused);
    drop(session);
    e.close().unwrap();

    let e = engine_on(fs.path(), 0);
    assert_eq!(
        e.session_high_water("s", "agent").unwrap().unwrap().0,
        refused
    );
    assert_all_readable(&e, refused);
    e.close().unwrap();
}

#[test]
fn enospc_in_a_write_fails_closed_and_a_restart_recovers_every_ack() {
    let Some(fs) = Tmpfs::mount(8 << 20) else {
        return;
    };
    let ballast_path = fs.path().join("ballast");
    ballast(&ballast_path, 3 << 20);
    let e = engine_on(fs.path(), 0);
    e.create_space("s", SpaceConfig::new(DIM as u32)).unwrap();
    let session = e.open_session("s", Some("agent")).unwrap();
    let (failed, err) = fill_until_refused(&session);
    assert!(
        matches!(&err, Error::Poisoned(why) if why.contains("No space left")),
        "{err}"
    );
    let acked = failed - 1;
    // Fail closed: nothing more is written, even if space appears.
    std::fs::remove_file(&ballast_path).unwrap();
    assert!(e.observe_blocking("s", big_obs(0)).is_err());
    assert_eq!(e.snapshot("s").unwrap(), acked);
    assert_all_readable(&e, acked);
    drop(session);
    let _ = e.close(); // the final checkpoint may not fit; the log is the truth

    // The short write was cut: the log reopens cleanly with every acked record,
    // and the session resumes right after the last durable one.
    let e = engine_on(fs.path(), 0);
    assert_all_readable(&e, acked);
    let session = e.resume_session("s", "agent").unwrap();
    assert_eq!(session.next_expected(), failed);
    let ack = session
        .observe(failed, big_obs(failed), Lane::Normal)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(ack.lsn, failed);
    drop(session);
    e.close().unwrap();
}
