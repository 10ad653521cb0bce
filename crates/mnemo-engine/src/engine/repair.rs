//! `mnemo repair`: the offline repair of a damaged log (see `log/repair.rs`), with
//! the data directory locked so that no server writes it meanwhile.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::io::{FileSystem, StdFs};
use crate::log::{RepairReport, repair_log};
use crate::space::catalog::Catalog;
use crate::types::{SpaceNo, now_us};

/// Repairs the log of the data directory `data_dir` (which no server may have
/// open): keeps every valid frame, fills each LSN lost to damage with a
/// placeholder, keeps a copy of every rewritten segment in `log/quarantine/`, and
/// reports what was lost. A log with no damage is left as it is.
pub fn repair(data_dir: &Path) -> Result<RepairReport> {
    repair_in(Arc::new(StdFs), data_dir)
}

/// [`repair`] on the file system `fs`.
pub fn repair_in(fs: Arc<dyn FileSystem>, data_dir: &Path) -> Result<RepairReport> {
    let log_dir = data_dir.join("log");
    if !fs.exists(&log_dir) {
        return Err(Error::invalid(format!(
            "{} holds no Mnemo log (no log/ directory)",
            data_dir.display()
        )));
    }
    let lock_path = data_dir.join("LOCK");
    let _lock = fs.lock(&lock_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Error::invalid(format!(
                "data directory {} is in use by a running server: stop it first",
                data_dir.display()
            ))
        } else {
            Error::io(&lock_path, e)
        }
    })?;
    let catalog = Catalog::load(fs.as_ref(), data_dir)?;
    let live: HashMap<SpaceNo, String> = catalog
        .spaces
        .iter()
        .map(|s| (s.no, s.name.clone()))
        .collect();
    let stamp = now_us().unsigned_abs();
    let report = repair_log(fs.as_ref(), &log_dir, &live, stamp)?;
    fs.sync_dir(&log_dir).at(&log_dir)?;
    if !report.rewritten.is_empty() {
        // The checkpointed states describe the log before the repair (records now
        // lost among them): the next open rebuilds attributes and sessions from it.
        for space in &catalog.spaces {
            let dir = super::open::space_dir(data_dir, space.no);
            crate::space::checkpoint::drop_state(fs.as_ref(), &dir)?;
        }
    }
    Ok(report)
}
