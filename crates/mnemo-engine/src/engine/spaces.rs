//! Creating and dropping spaces: the catalog file is rewritten first, then the
//! registry and the log learn of the change.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Engine;
use super::open::{build_space, space_dir};
use crate::error::{Error, IoContext, Result};
use crate::index::hnsw::Hnsw;
use crate::log::Log;
use crate::space::catalog::Catalog;

use crate::types::{SpaceConfig, SpaceInfo, SpaceStats, now_us, validate_space_name};

impl Engine {
    /// Creates a memory space.
    pub fn create_space(&self, name: &str, config: SpaceConfig) -> Result<SpaceInfo> {
        validate_space_name(name)?;
        config.validate()?;
        self.check_running()?;
        if let Some(shared) = self.inner.shared_catalog() {
            let info = shared.create_space(name, &config)?;
            self.adopt_space(info.clone())?;
            return Ok(info);
        }
        let mut catalog = self.inner.catalog.lock();
        if catalog.spaces.iter().any(|s| s.name == name) {
            return Err(Error::SpaceExists(name.to_string()));
        }
        let mut next = catalog.clone();
        let info = SpaceInfo {
            name: name.to_string(),
            no: next.allocate(),
            config,
            created_at_us: now_us(),
        };
        self.install_space(&mut catalog, next, &info)?;
        Ok(info)
    }

    /// Makes `info` a live space: its directory, its (empty) state, then `next` (the
    /// catalog with `info`'s number allocated) saved and installed, then the registry
    /// and the log.
    pub(super) fn install_space(
        &self,
        catalog: &mut Catalog,
        mut next: Catalog,
        info: &SpaceInfo,
    ) -> Result<()> {
        let inner = &self.inner;
        let dir = space_dir(&inner.config.data_dir, info.no);
        inner.fs.create_dir_all(&dir).at(&dir)?;
        let hnsw = Hnsw::new(&info.config, inner.config.index_shards())?;
        let space = build_space(
            &inner.fs,
            &inner.config,
            &inner.registry,
            info.clone(),
            hnsw,
            0,
        );
        next.spaces.push(info.clone());
        next.save(inner.fs.as_ref(), &inner.config.data_dir)?;
        *catalog = next;
        inner
            .registry
            .by_no
            .write()
            .insert(info.no, Arc::new(space));
        inner.log.register_space(info.no);
        Ok(())
    }

    /// All live spaces, in creation order.
    pub fn list_spaces(&self) -> Vec<SpaceInfo> {
        self.inner
            .registry
            .list()
            .iter()
            .map(|s| s.info.clone())
            .collect()
    }

    /// One space's description and counters.
    pub fn describe_space(&self, name: &str) -> Result<(SpaceInfo, SpaceStats)> {
        let space = self.inner.registry.by_name(name)?;
        let mut stats = space.stats();
        let dead = space.attrs.read().dead_or_control();
        (stats.live_bytes, stats.dead_bytes) = self
            .inner
            .log
            .space_bytes(space.info.no, &|lsn| dead.contains(lsn));
        Ok((space.info.clone(), stats))
    }

    /// Drops a space: it disappears at once; its checkpoint is deleted and its log
    /// segments are reclaimed once no live space has records in them.
    pub fn drop_space(&self, name: &str) -> Result<()> {
        if let Some(shared) = self.inner.shared_catalog() {
            self.inner.registry.by_name(name)?;
            shared.drop_space(name)?;
            // The node's catalog watch may have dropped it here already.
            return self.drop_adopted(name);
        }
        self.drop_local(name)
    }

    pub(super) fn drop_local(&self, name: &str) -> Result<()> {
        let mut catalog = self.inner.catalog.lock();
        let space = self.inner.registry.by_name(name)?;
        let mut next = catalog.clone();
        next.spaces.retain(|s| s.name != name);
        next.save(self.inner.fs.as_ref(), &self.inner.config.data_dir)?;
        *catalog = next;
        space.dropped.store(true, Ordering::Release);
        self.inner.registry.by_no.write().remove(&space.info.no);
        // Waiters on its watermarks find out it is gone.
        space.indexed.wake();
        space.committed.wake();
        // Retire what was waiting for its index (workers skip a space they cannot find).
        for (_, item) in space.queue.pop_batch(usize::MAX) {
            self.inner.registry.budget.release(1, item.bytes as usize);
        }
        self.inner.sessions.forget_space(space.info.no);
        self.inner.log.forget_space(space.info.no)?;
        let _no_checkpoint = space.checkpoint_lock.lock();
        self.inner.fs.remove_dir_all(&space.dir).at(&space.dir)?;
        Ok(())
    }

    pub(super) fn check_running(&self) -> Result<()> {
        if self.inner.closing.load(Ordering::Acquire) {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }
}
