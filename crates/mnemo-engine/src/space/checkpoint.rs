//! Per-space checkpoints: the usearch index file plus `checkpoint.json`, which names
//! the file, its size and CRC32C, and the LSN it covers (every LSN up to it is in the
//! file). A new index file gets a new name; the JSON is switched atomically after
//! the file is durable; only then is the old file deleted. So a crash at any point
//! leaves either the old or the new checkpoint intact.

use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use super::catalog::write_atomic;
use crate::error::{Error, IoContext, Result};
use crate::index::hnsw::Hnsw;
use crate::types::{Lsn, SpaceConfig};

const META: &str = "checkpoint.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    lsn: Lsn,
    file: String,
    bytes: u64,
    crc32c: u32,
    count: u64,
}

fn file_crc(path: &Path) -> Result<(u64, u32)> {
    let mut f = File::open(path).at(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut crc, mut bytes) = (0u32, 0u64);
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            return Ok((bytes, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        bytes += n as u64;
    }
}

/// Saves `hnsw` as the checkpoint covering `lsn`.
pub(crate) fn save(dir: &Path, hnsw: &Hnsw, lsn: Lsn) -> Result<()> {
    let name = format!("index-{lsn:016}.usearch");
    let path = dir.join(&name);
    hnsw.save(&path)?;
    File::open(&path).and_then(|f| f.sync_all()).at(&path)?;
    let (bytes, crc32c) = file_crc(&path)?;
    let old = read_meta(dir).ok().flatten();
    let meta = Meta {
        lsn,
        file: name.clone(),
        bytes,
        crc32c,
        count: hnsw.len() as u64,
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(&dir.join(META), &json)?;
    if let Some(old) = old.filter(|o| o.file != name) {
        let _ = fs::remove_file(dir.join(old.file)); // a leftover file is harmless
    }
    Ok(())
}

fn read_meta(dir: &Path) -> Result<Option<Meta>> {
    let path = dir.join(META);
    match fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Corruption {
                path,
                offset: 0,
                detail: format!("checkpoint metadata does not parse: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Loads the checkpoint if there is a valid one. A missing, corrupt or mismatching
/// checkpoint yields `None` (the caller rebuilds from the log) and a warning.
pub(crate) fn load(dir: &Path, config: &SpaceConfig) -> Option<(Hnsw, Lsn)> {
    let attempt = || -> Result<Option<(Hnsw, Lsn)>> {
        let Some(meta) = read_meta(dir)? else {
            return Ok(None);
        };
        let path = dir.join(&meta.file);
        let (bytes, crc) = file_crc(&path)?;
        if bytes != meta.bytes || crc != meta.crc32c {
            return Err(Error::Corruption {
                path,
                offset: 0,
                detail: format!(
                    "index file has {bytes} bytes / crc {crc:08x}, checkpoint says {} / {:08x}",
                    meta.bytes, meta.crc32c
                ),
            });
        }
        let hnsw = Hnsw::load(&path, config)?;
        if hnsw.len() as u64 != meta.count {
            return Err(Error::Index(format!(
                "index holds {} records, checkpoint says {}",
                hnsw.len(),
                meta.count
            )));
        }
        Ok(Some((hnsw, meta.lsn)))
    };
    match attempt() {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "ignoring unusable checkpoint; rebuilding the index from the log");
            None
        }
    }
}
