//! The file-system seam: every byte the engine keeps on disk (log segments,
//! checkpoints, the catalog) goes through [`FileSystem`], so that durability can be
//! proven rather than assumed. [`StdFs`] is the real one; [`SimFs`] is a simulated
//! disk that keeps only what was synced (file data by `fdatasync`/`fsync`,
//! directory entries by an fsync of the directory) and can be "powered off" at any
//! moment ([`SimFs::power_cut`]). A test that runs the engine on it and checks what
//! survives a power cut fails if any sync the engine relies on is removed.

mod sim;
mod std_fs;

pub use sim::SimFs;
pub use std_fs::StdFs;

use std::io;
use std::path::Path;
use std::sync::Arc;

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write a new file; fails if it exists.
    CreateNew,
    /// Read and write, created if missing, emptied if present.
    CreateTruncate,
}

/// An open file: positional reads and writes, and the two syncs.
pub trait FileHandle: Send + Sync {
    /// Current size in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Reads at `offset`; returns the bytes read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// `fdatasync`: the file's data is durable.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: data and metadata are durable.
    fn sync_all(&self) -> io::Result<()>;

    /// Fills `buf` from `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }
}

/// What the engine needs of a file system. Paths are the engine's own (under its
/// data directory); a directory entry change (create, rename, remove) is durable
/// only after [`FileSystem::sync_dir`] of its directory.
pub trait FileSystem: Send + Sync {
    /// Creates `path` and its parents (durably: the simulated disk models directory
    /// creation as immediate).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of `dir` (files and directories).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>>;
    /// True if `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Removes a file's directory entry.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Renames a file (replacing `to` if it exists).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Free bytes on the volume of `dir`, if known.
    fn free_bytes(&self, dir: &Path) -> Option<u64>;
    /// Takes an exclusive lock named by `path` (one process per data directory);
    /// held while the returned guard lives.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>>;
    /// Lets a library that writes files by path (usearch's `save`) write `path`:
    /// `write` gets a real path to write to, and the result becomes `path`'s
    /// content (not yet synced).
    fn write_via_path(
        &self,
        path: &Path,
        write: &mut dyn FnMut(&Path) -> crate::Result<()>,
    ) -> crate::Result<()>;
    /// Lets a library that reads files by path (usearch's `load`) read `path`.
    fn read_via_path(
        &self,
        path: &Path,
        read: &mut dyn FnMut(&Path) -> crate::Result<()>,
    ) -> crate::Result<()>;

    /// The whole content of a file.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open(path, OpenMode::Read)?;
        let len = usize::try_from(f.size()?).map_err(|_| io::Error::other("file too large"))?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    /// Replaces `path` with `bytes` atomically and durably: a temporary file,
    /// synced, renamed over `path`, then the directory synced. A failed write
    /// removes the temporary file (a full disk must not keep a half-written copy).
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = path.with_extension("tmp");
        let written = self
            .open(&tmp, OpenMode::CreateTruncate)
            .and_then(|f| f.write_all_at(bytes, 0).and_then(|()| f.sync_all()));
        if let Err(e) = written {
            let _ = self.remove_file(&tmp);
            return Err(e);
        }
        self.rename(&tmp, path)?;
        self.sync_dir(path.parent().unwrap_or(Path::new(".")))
    }
}
