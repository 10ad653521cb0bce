//! The distributed mode's engine seam with an in-process shared log: one engine
//! writes through it, another follows its frames, and both hold the same records
//! at the same LSNs.

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::ClusterHooks;
use crate::error::{Error, Result};
use crate::log::{Replicator, SharedCatalog};
use crate::types::{SpaceConfig, SpaceInfo, SpaceNo, now_us};
use crate::{Engine, EngineConfig, Observation, RecallRequest};

/// The shared log and catalog, in memory: parts in the order they were accepted.
#[derive(Default)]
struct Shared {
    parts: Mutex<Vec<(u32, Vec<u8>)>>,
    catalog: Mutex<Vec<SpaceInfo>>,
    /// Whether the writing engine still owns every partition.
    owner: AtomicBool,
    /// The shared log refuses appends (another writer fenced this one).
    fenced: AtomicBool,
}

impl Replicator for Shared {
    fn partition_of(&self, space: SpaceNo) -> u32 {
        space.0 % 2
    }
    fn check_owner(&self, space: SpaceNo) -> Result<()> {
        if self.owner.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::NotOwner {
                partition: self.partition_of(space),
                owner: Some("other:1".into()),
            })
        }
    }
    fn replicate(&self, parts: &[(u32, &[u8])]) -> Vec<Result<()>> {
        parts
            .iter()
            .map(|(p, frames)| {
                if self.fenced.load(Ordering::SeqCst) {
                    return Err(Error::NotOwner {
                        partition: *p,
                        owner: None,
                    });
                }
                self.parts.lock().push((*p, frames.to_vec()));
                Ok(())
            })
            .collect()
    }
}

impl SharedCatalog for Shared {
    fn create_space(&self, name: &str, config: &SpaceConfig) -> Result<SpaceInfo> {
        let mut catalog = self.catalog.lock();
        if catalog.iter().any(|s| s.name == name) {
            return Err(Error::SpaceExists(name.into()));
        }
        let info = SpaceInfo {
            name: name.into(),
            no: SpaceNo(catalog.len() as u32 + 1),
            config: config.clone(),
            created_at_us: now_us(),
        };
        catalog.push(info.clone());
        Ok(info)
    }
    fn drop_space(&self, name: &str) -> Result<()> {
        self.catalog.lock().retain(|s| s.name != name);
        Ok(())
    }
}

fn node(dir: &std::path::Path, shared: &Arc<Shared>) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.index_threads = 1;
    let hooks = ClusterHooks {
        replicator: Arc::clone(shared) as Arc<dyn Replicator>,
        catalog: Arc::clone(shared) as Arc<dyn SharedCatalog>,
    };
    Engine::open_clustered(cfg, hooks).unwrap()
}

fn obs(i: usize) -> Observation {
    Observation {
        content: format!("m{i}"),
        embedding: vec![i as f32, 1.0, 0.5, -1.0],
        ..Default::default()
    }
}

#[test]
fn a_follower_holds_what_the_writer_wrote_at_the_same_lsns() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let shared = Arc::new(Shared::default());
    shared.owner.store(true, Ordering::SeqCst);
    let a = node(da.path(), &shared);
    let b = node(db.path(), &shared);
    for name in ["s1", "s2"] {
        let info = a.create_space(name, SpaceConfig::new(4)).unwrap();
        assert!(b.adopt_space(info.clone()).unwrap());
        assert!(!b.adopt_space(info).unwrap(), "adopting twice is a no-op");
    }
    let mut acked = Vec::new();
    for i in 0..60 {
        let space = if i % 3 == 0 { "s1" } else { "s2" };
        acked.push((
            space,
            i,
            a.observe(space, obs(i)).unwrap().wait().unwrap().lsn,
        ));
    }
    let parts: Vec<(u32, Vec<u8>)> = shared.parts.lock().clone();
    assert!(parts.iter().all(|(p, _)| *p < 2));
    let mut new = 0;
    for (_, frames) in &parts {
        new += b.follow(frames.clone()).unwrap();
    }
    assert_eq!(new, 60);
    // A replay from an earlier position changes nothing.
    for (_, frames) in &parts {
        assert_eq!(b.follow(frames.clone()).unwrap(), 0);
    }
    for (space, i, lsn) in acked {
        let m = b.get(space, lsn).unwrap();
        assert_eq!(m.content, format!("m{i}"), "{space} LSN {lsn}");
    }
    assert_eq!(a.local_lsns(), b.local_lsns());
    let hits = b
        .recall("s2", RecallRequest::new(vec![59.0, 1.0, 0.5, -1.0], 1))
        .unwrap()
        .collect_all()
        .unwrap();
    assert_eq!(hits[0].content, "m59");
    // The follower writes nothing itself once it is not the owner.
    shared.owner.store(false, Ordering::SeqCst);
    assert!(matches!(
        b.observe("s1", obs(0)),
        Err(Error::NotOwner { partition: 1, .. })
    ));
}

#[test]
fn a_part_the_shared_log_refuses_is_not_written_locally() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let shared = Arc::new(Shared::default());
    shared.owner.store(true, Ordering::SeqCst);
    let a = node(da.path(), &shared);
    let info = a.create_space("s", SpaceConfig::new(4)).unwrap();
    let first = a.observe("s", obs(1)).unwrap().wait().unwrap().lsn;
    // Admission passes, then the shared log refuses: the append fails and the
    // local log does not move.
    shared.fenced.store(true, Ordering::SeqCst);
    let refused = a.observe("s", obs(2)).unwrap().wait();
    assert!(
        matches!(refused, Err(Error::NotOwner { .. })),
        "{refused:?}"
    );
    assert_eq!(a.local_lsns(), vec![(info.no, first)]);
    assert!(a.get("s", first + 1).is_err());
    shared.fenced.store(false, Ordering::SeqCst);
    let next = a.observe("s", obs(3)).unwrap().wait().unwrap().lsn;
    assert_eq!(next, first + 1, "LSNs stay dense past a refused part");

    // A follower that missed a part cannot apply the one after it.
    let b = node(db.path(), &shared);
    b.adopt_space(info).unwrap();
    let parts = shared.parts.lock().clone();
    let last = parts.last().unwrap().1.clone();
    assert!(matches!(
        b.follow(last),
        Err(Error::FollowGap { have: 0, .. })
    ));
    assert_eq!(b.local_lsns(), vec![(SpaceNo(1), 0)]);
    // Frames of a space not adopted yet: refused whole, nothing written.
    let c_dir = tempfile::tempdir().unwrap();
    let c = node(c_dir.path(), &shared);
    assert!(matches!(
        c.follow(parts[0].1.clone()),
        Err(Error::SpaceNotFound(_))
    ));
}

#[test]
fn each_group_commit_fits_the_batch_limit_so_it_fits_one_shared_log_message() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(Shared::default());
    shared.owner.store(true, Ordering::SeqCst);
    let mut cfg = EngineConfig::new(dir.path());
    cfg.index_threads = 1;
    cfg.log.max_batch_bytes = 8192;
    let hooks = ClusterHooks {
        replicator: Arc::clone(&shared) as Arc<dyn Replicator>,
        catalog: Arc::clone(&shared) as Arc<dyn SharedCatalog>,
    };
    let a = Engine::open_clustered(cfg, hooks).unwrap();
    a.create_space("s", SpaceConfig::new(4)).unwrap();
    let tickets: Vec<_> = (0..200)
        .map(|i| {
            let mut o = obs(i);
            o.content = "x".repeat(1000);
            a.observe("s", o).unwrap()
        })
        .collect();
    for t in tickets {
        t.wait().unwrap();
    }
    let parts = shared.parts.lock();
    assert!(parts.len() >= 200 * 1000 / 8192, "{} parts", parts.len());
    assert!(
        parts.iter().all(|(_, f)| f.len() <= 8192),
        "a part over the limit"
    );
}
