//! The catalog of memory spaces: `catalog.json`, rewritten atomically
//! (temp file, fsync, rename, fsync of the directory) on every change.

use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::types::{SpaceInfo, SpaceNo};

/// What `catalog.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Catalog {
    /// Number the next created space gets (numbers are never reused).
    pub(crate) next_no: u32,
    /// Live spaces.
    pub(crate) spaces: Vec<SpaceInfo>,
}

/// Writes `bytes` to `path` atomically and durably.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let written = File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .at(&tmp);
    if written.is_err() {
        let _ = fs::remove_file(&tmp); // a full disk must not keep a half-written copy
    }
    written?;
    fs::rename(&tmp, path).at(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

impl Catalog {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("catalog.json")
    }

    /// Reads the catalog, or an empty one if there is none yet.
    pub(crate) fn load(data_dir: &Path) -> Result<Catalog> {
        let path = Self::path(data_dir);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corruption {
                path,
                offset: e.column() as u64,
                detail: format!("catalog does not parse: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalog::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Persists the catalog.
    pub(crate) fn save(&self, data_dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(&Self::path(data_dir), &bytes)
    }

    /// Hands out the next space number.
    pub(crate) fn allocate(&mut self) -> SpaceNo {
        let no = SpaceNo(self.next_no);
        self.next_no += 1;
        no
    }
}
