//! The catalog of memory spaces: `catalog.json`, rewritten atomically
//! (temp file, fsync, rename, fsync of the directory) on every change.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::io::FileSystem;
use crate::types::{SpaceInfo, SpaceNo};

/// What `catalog.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Catalog {
    /// Number the next created space gets (numbers are never reused).
    pub(crate) next_no: u32,
    /// Live spaces.
    pub(crate) spaces: Vec<SpaceInfo>,
}

impl Catalog {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("catalog.json")
    }

    /// Reads the catalog, or an empty one if there is none yet.
    pub(crate) fn load(fs: &dyn FileSystem, data_dir: &Path) -> Result<Catalog> {
        let path = Self::path(data_dir);
        match fs.read_all(&path) {
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
    pub(crate) fn save(&self, fs: &dyn FileSystem, data_dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        let path = Self::path(data_dir);
        fs.write_atomic(&path, &bytes).at(&path)
    }

    /// Hands out the next space number.
    pub(crate) fn allocate(&mut self) -> SpaceNo {
        let no = SpaceNo(self.next_no);
        self.next_no += 1;
        no
    }
}
