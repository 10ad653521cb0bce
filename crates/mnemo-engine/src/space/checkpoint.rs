//! Per-space checkpoints: one usearch file per index shard, the space's state
//! (`state.rs`: attributes, deaths, session marks), and `checkpoint.json`, which
//! names the files, their sizes and CRC32Cs, and the LSN the graph covers (every
//! LSN up to it is in the graph files). New files get new names; the JSON is
//! switched atomically after the files are durable; only then are the old files
//! deleted. So a crash at any point leaves either the old or the new checkpoint intact.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::index::hnsw::Hnsw;
use crate::io::{FileSystem, OpenMode};
use crate::types::{Lsn, SpaceConfig};

const META: &str = "checkpoint.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    lsn: Lsn,
    /// One per shard.
    #[serde(default)]
    files: Vec<FileMeta>,
    /// The space's state (none in checkpoints of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<FileMeta>,
    /// Before shards (one file): that file. Still read.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    legacy: Option<FileMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileMeta {
    file: String,
    bytes: u64,
    crc32c: u32,
    count: u64,
}

impl Meta {
    /// The graph's files.
    fn files(&self) -> Vec<FileMeta> {
        if self.files.is_empty() {
            self.legacy.iter().cloned().collect()
        } else {
            self.files.clone()
        }
    }

    /// Every file it names.
    fn all_files(&self) -> Vec<String> {
        self.files()
            .into_iter()
            .chain(self.state.clone())
            .map(|f| f.file)
            .collect()
    }
}

fn file_crc(fs: &dyn FileSystem, path: &Path) -> Result<(u64, u32)> {
    let f = fs.open(path, OpenMode::Read).at(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut crc, mut bytes) = (0u32, 0u64);
    loop {
        let n = f.read_at(&mut buf, bytes).at(path)?;
        if n == 0 {
            return Ok((bytes, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        bytes += n as u64;
    }
}

/// Saves `hnsw` as the checkpoint covering `lsn`, with the space's `state`.
pub(crate) fn save(
    fs: &dyn FileSystem,
    dir: &Path,
    hnsw: &Hnsw,
    lsn: Lsn,
    state: &[u8],
) -> Result<()> {
    // Names never reused, even for a second checkpoint at the same LSN.
    let stamp = crate::types::now_us();
    let mut names: Vec<String> = (0..hnsw.shard_count())
        .map(|i| format!("index-{lsn:016}-{stamp}-{i}.usearch"))
        .collect();
    names.push(format!("state-{lsn:016}-{stamp}.bin"));
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let old = read_meta(fs, dir).ok().flatten();
    let saved = save_files(fs, dir, hnsw, lsn, state, &names, &paths, old.as_ref());
    if saved.is_err() {
        // A failed save (a full disk, say) must not leave its files eating the space:
        // remove those the current checkpoint does not use.
        let current: Vec<String> = old.as_ref().map(Meta::all_files).unwrap_or_default();
        for (name, path) in names.iter().zip(&paths) {
            if !current.contains(name) {
                let _ = fs.remove_file(path);
            }
        }
    }
    saved
}

#[allow(clippy::too_many_arguments)] // one save's own values, passed through
fn save_files(
    fs: &dyn FileSystem,
    dir: &Path,
    hnsw: &Hnsw,
    lsn: Lsn,
    state: &[u8],
    names: &[String],
    paths: &[PathBuf],
    old: Option<&Meta>,
) -> Result<()> {
    let (state_name, names) = names
        .split_last()
        .ok_or_else(|| Error::Index("no names".into()))?;
    let (state_path, paths) = paths
        .split_last()
        .ok_or_else(|| Error::Index("no paths".into()))?;
    {
        let f = fs
            .open(state_path, OpenMode::CreateTruncate)
            .at(state_path)?;
        f.write_all_at(state, 0).at(state_path)?;
        f.sync_all().at(state_path)?;
    }
    let state_meta = FileMeta {
        file: state_name.clone(),
        bytes: state.len() as u64,
        crc32c: crc32c::crc32c(state),
        count: 0,
    };
    let counts = hnsw.save(fs, paths)?;
    let mut files = Vec::with_capacity(names.len());
    for ((name, path), count) in names.iter().zip(paths).zip(counts) {
        // Removed (forgotten) nodes' vectors are saved too: erase them.
        crate::index::scrub::scrub_freed_vectors(fs, path)?;
        fs.open(path, OpenMode::ReadWrite)
            .and_then(|f| f.sync_all())
            .at(path)?;
        let (bytes, crc32c) = file_crc(fs, path)?;
        files.push(FileMeta {
            file: name.clone(),
            bytes,
            crc32c,
            count: count as u64,
        });
    }
    let meta = Meta {
        lsn,
        files,
        state: Some(state_meta),
        legacy: None,
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::invalid(e.to_string()))?;
    // The new files' directory entries are durable with the switch: write_atomic
    // syncs the directory after its rename.
    fs.write_atomic(&dir.join(META), &json).at(dir)?;
    if let Some(old) = old {
        let keep = meta.all_files();
        for f in old.all_files().into_iter().filter(|f| !keep.contains(f)) {
            let _ = fs.remove_file(&dir.join(f)); // a leftover file is harmless
        }
    }
    Ok(())
}

/// Removes the checkpoint of a space (its metadata first, so a crash half-way
/// leaves no checkpoint rather than a broken one).
pub(crate) fn discard(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let Some(meta) = read_meta(fs, dir).ok().flatten() else {
        return Ok(());
    };
    let path = dir.join(META);
    fs.remove_file(&path).at(&path)?;
    fs.sync_dir(dir).at(dir)?;
    for f in meta.all_files() {
        let _ = fs.remove_file(&dir.join(f)); // a leftover file is harmless
    }
    Ok(())
}

/// Removes the state from the checkpoint of a space (its graph stays): the next
/// open replays the whole log to rebuild attributes and session marks.
pub(crate) fn drop_state(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let Some(mut meta) = read_meta(fs, dir)? else {
        return Ok(());
    };
    let Some(state) = meta.state.take() else {
        return Ok(());
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::invalid(e.to_string()))?;
    fs.write_atomic(&dir.join(META), &json).at(dir)?;
    let _ = fs.remove_file(&dir.join(state.file)); // a leftover file is harmless
    Ok(())
}

fn read_meta(fs: &dyn FileSystem, dir: &Path) -> Result<Option<Meta>> {
    let path = dir.join(META);
    match fs.read_all(&path) {
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

/// A loaded checkpoint.
pub(crate) struct Loaded {
    pub(crate) hnsw: Hnsw,
    /// Every LSN up to it is in the graph.
    pub(crate) lsn: Lsn,
    /// The space's state, if the checkpoint has a valid one.
    pub(crate) state: Option<super::state::State>,
}

/// Loads the checkpoint if there is a valid one. A missing, corrupt or mismatching
/// checkpoint yields `None` (the caller rebuilds from the log) and a warning; a
/// valid graph with an unusable state loads without the state (the log is then
/// replayed from its start).
pub(crate) fn load(fs: &dyn FileSystem, dir: &Path, config: &SpaceConfig) -> Option<Loaded> {
    let attempt = || -> Result<Option<Loaded>> {
        let Some(meta) = read_meta(fs, dir)? else {
            return Ok(None);
        };
        let files = meta.files();
        let mut paths = Vec::with_capacity(files.len());
        for f in &files {
            let path = dir.join(&f.file);
            let (bytes, crc) = file_crc(fs, &path)?;
            if bytes != f.bytes || crc != f.crc32c {
                return Err(Error::Corruption {
                    path,
                    offset: 0,
                    detail: format!(
                        "index file has {bytes} bytes / crc {crc:08x}, checkpoint says {} / {:08x}",
                        f.bytes, f.crc32c
                    ),
                });
            }
            paths.push(path);
        }
        let hnsw = Hnsw::load(fs, &paths, config)?;
        let want: u64 = files.iter().map(|f| f.count).sum();
        if hnsw.len() as u64 != want {
            return Err(Error::Index(format!(
                "index holds {} records, checkpoint says {want}",
                hnsw.len()
            )));
        }
        let state = meta.state.as_ref().and_then(|f| {
            let path = dir.join(&f.file);
            let loaded = fs
                .read_all(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| super::state::decode_state(&b).map_err(|e| e.to_string()));
            match loaded {
                Ok(state) => Some(state),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable state checkpoint; replaying the whole log");
                    None
                }
            }
        });
        Ok(Some(Loaded {
            hnsw,
            lsn: meta.lsn,
            state,
        }))
    };
    match attempt() {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "ignoring unusable checkpoint; rebuilding the index from the log");
            None
        }
    }
}
