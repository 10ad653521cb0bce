//! [`SimFs`]: a simulated disk that keeps only what was synced.
//!
//! Model: a file is an inode with its current bytes and its durable bytes (those
//! at its last `sync_data`/`sync_all`). A directory maps names to inodes, now and
//! durably (as of its last `sync_dir`). Creating, renaming and removing a file
//! change only the current map. A power cut ([`SimFs::power_cut`]) keeps the
//! durable maps and the durable bytes of the inodes they name; everything else is
//! gone. Directories themselves are created and removed durably at once (the
//! engine never depends on a directory's own creation being undone), and a write
//! either reaches the current bytes whole or not at all (no torn pages).

use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{FileHandle, FileSystem, OpenMode};
use crate::error::{Error, IoContext};

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Default, Clone)]
struct Dir {
    now: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
}

#[derive(Default)]
struct State {
    dirs: BTreeMap<PathBuf, Dir>,
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    locks: BTreeSet<PathBuf>,
    /// While set, `sync_data`/`sync_all` wait (a slow disk, for tests).
    syncs_held: bool,
}

struct Shared {
    state: Mutex<State>,
    released: Condvar,
}

/// See the module docs. Cheap to clone: clones share the disk.
#[derive(Clone)]
pub struct SimFs {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.state.lock();
        f.debug_struct("SimFs")
            .field("dirs", &st.dirs.len())
            .field("files", &st.inodes.len())
            .finish()
    }
}

impl Default for SimFs {
    fn default() -> Self {
        Self::from_state(State::default())
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

/// `(parent directory, file name)` of a file path.
fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let parent = path.parent().unwrap_or(Path::new(""));
    Ok((parent.to_path_buf(), name.to_string_lossy().into_owned()))
}

impl State {
    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| not_found(dir))
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path)?;
        self.dirs
            .get(&dir)
            .and_then(|d| d.now.get(&name))
            .copied()
            .ok_or_else(|| not_found(path))
    }

    fn inode(&mut self, ino: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| io::Error::other("stale file handle"))
    }
}

impl SimFs {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn from_state(state: State) -> Self {
        SimFs {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                released: Condvar::new(),
            }),
        }
    }

    /// The disk as it would be found after a power cut now: the durable directory
    /// entries and the durable bytes of the files they name. This disk goes on as
    /// it was (an engine still running on it writes into a world that is gone).
    pub fn power_cut(&self) -> SimFs {
        let st = self.shared.state.lock();
        let mut inodes = HashMap::new();
        let dirs = st
            .dirs
            .iter()
            .map(|(path, d)| {
                for ino in d.durable.values() {
                    if let Some(i) = st.inodes.get(ino) {
                        inodes.insert(
                            *ino,
                            Inode {
                                data: i.durable.clone(),
                                durable: i.durable.clone(),
                            },
                        );
                    }
                }
                let kept = Dir {
                    now: d.durable.clone(),
                    durable: d.durable.clone(),
                };
                (path.clone(), kept)
            })
            .collect();
        SimFs::from_state(State {
            dirs,
            inodes,
            next_ino: st.next_ino,
            locks: BTreeSet::new(),
            syncs_held: false,
        })
    }

    /// Makes every sync wait until [`SimFs::release_syncs`] (a stalled disk).
    pub fn hold_syncs(&self) {
        self.shared.state.lock().syncs_held = true;
    }

    /// Lets held syncs go.
    pub fn release_syncs(&self) {
        self.shared.state.lock().syncs_held = false;
        self.shared.released.notify_all();
    }

    /// The current bytes of a file (what a reader sees now).
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.read_all(path)
    }

    /// Overwrites bytes of a file in place, durably (damage from outside: a bad
    /// sector, a stray write).
    pub fn corrupt(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        let ino = st.lookup(path)?;
        let inode = st.inode(ino)?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        for data in [&mut inode.data, &mut inode.durable] {
            let end = start + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[start..end].copy_from_slice(bytes);
        }
        Ok(())
    }

    fn sync(&self, ino: u64) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        while st.syncs_held {
            self.shared.released.wait(&mut st);
        }
        let inode = st.inode(ino)?;
        inode.durable = inode.data.clone();
        Ok(())
    }
}

struct SimFile {
    fs: SimFs,
    ino: u64,
    writable: bool,
}

impl SimFile {
    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "opened read-only",
            ))
        }
    }
}

impl FileHandle for SimFile {
    fn size(&self) -> io::Result<u64> {
        let mut st = self.fs.shared.state.lock();
        Ok(st.inode(self.ino)?.data.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut st = self.fs.shared.state.lock();
        let data = &st.inode(self.ino)?.data;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        if start >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut st = self.fs.shared.state.lock();
        let data = &mut st.inode(self.ino)?.data;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut st = self.fs.shared.state.lock();
        let len = usize::try_from(len).map_err(io::Error::other)?;
        st.inode(self.ino)?.data.resize(len, 0);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.fs.sync(self.ino)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.fs.sync(self.ino)
    }
}

/// Releases a [`SimFs`] lock when dropped.
struct SimLock {
    fs: SimFs,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.shared.state.lock().locks.remove(&self.path);
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        for dir in path.ancestors() {
            st.dirs.entry(dir.to_path_buf()).or_default();
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.shared.state.lock();
        let d = st.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        let mut names: Vec<String> = d.now.keys().cloned().collect();
        names.extend(
            st.dirs
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        );
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        let mut st = self.shared.state.lock();
        let existing = st.lookup(path).ok();
        let ino = match (mode, existing) {
            (OpenMode::Read | OpenMode::ReadWrite, Some(ino)) => ino,
            (OpenMode::Read | OpenMode::ReadWrite, None) => return Err(not_found(path)),
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", path.display()),
                ));
            }
            (OpenMode::CreateTruncate, Some(ino)) => {
                st.inode(ino)?.data.clear();
                ino
            }
            (OpenMode::CreateNew | OpenMode::CreateTruncate, None) => {
                let (dir, name) = split(path)?;
                st.next_ino += 1;
                let ino = st.next_ino;
                st.dir_mut(&dir)?.now.insert(name, ino);
                st.inodes.insert(ino, Inode::default());
                ino
            }
        };
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            ino,
            writable: mode != OpenMode::Read,
        }))
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.shared.state.lock();
        st.dirs.contains_key(path) || st.lookup(path).is_ok()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        let (dir, name) = split(path)?;
        st.dir_mut(&dir)?
            .now
            .remove(&name)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        if !st.dirs.contains_key(path) {
            return Err(not_found(path));
        }
        st.dirs.retain(|p, _| !p.starts_with(path));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        let ino = st
            .dir_mut(&from_dir)?
            .now
            .remove(&from_name)
            .ok_or_else(|| not_found(from))?;
        st.dir_mut(&to_dir)?.now.insert(to_name, ino);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.shared.state.lock();
        while st.syncs_held {
            self.shared.released.wait(&mut st);
        }
        let d = st.dir_mut(dir)?;
        d.durable = d.now.clone();
        Ok(())
    }

    fn free_bytes(&self, _dir: &Path) -> Option<u64> {
        None
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        let mut st = self.shared.state.lock();
        if !st.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "locked"));
        }
        Ok(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn write_via_path(
        &self,
        path: &Path,
        write: &mut dyn FnMut(&Path) -> crate::Result<()>,
    ) -> crate::Result<()> {
        let scratch = tempfile::tempdir().map_err(|e| Error::io(path, e))?;
        let real = scratch.path().join("file");
        write(&real)?;
        let bytes = std::fs::read(&real).at(&real)?;
        let f = self.open(path, OpenMode::CreateTruncate).at(path)?;
        f.write_all_at(&bytes, 0).at(path)
    }

    fn read_via_path(
        &self,
        path: &Path,
        read: &mut dyn FnMut(&Path) -> crate::Result<()>,
    ) -> crate::Result<()> {
        let bytes = self.read_all(path).at(path)?;
        let scratch = tempfile::tempdir().map_err(|e| Error::io(path, e))?;
        let real = scratch.path().join("file");
        std::fs::write(&real, bytes).at(&real)?;
        read(&real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(fs: &SimFs, path: &str, bytes: &[u8]) -> Arc<dyn FileHandle> {
        let f = fs.open(Path::new(path), OpenMode::CreateNew).unwrap();
        f.write_all_at(bytes, 0).unwrap();
        f
    }

    #[test]
    fn only_synced_data_and_entries_survive_a_power_cut() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let a = write(&fs, "/d/a", b"hello");
        // Not synced at all: gone.
        assert!(!fs.power_cut().exists(Path::new("/d/a")));
        // Entry synced, data not: an empty file.
        fs.sync_dir(Path::new("/d")).unwrap();
        assert_eq!(fs.power_cut().contents(Path::new("/d/a")).unwrap(), b"");
        a.sync_data().unwrap();
        a.write_all_at(b" world", 5).unwrap();
        assert_eq!(
            fs.power_cut().contents(Path::new("/d/a")).unwrap(),
            b"hello"
        );
        // A rename is durable only with the directory sync.
        fs.rename(Path::new("/d/a"), Path::new("/d/b")).unwrap();
        let cut = fs.power_cut();
        assert!(cut.exists(Path::new("/d/a")) && !cut.exists(Path::new("/d/b")));
        fs.sync_dir(Path::new("/d")).unwrap();
        let cut = fs.power_cut();
        assert!(!cut.exists(Path::new("/d/a")) && cut.exists(Path::new("/d/b")));
        // The live disk saw everything.
        assert_eq!(fs.contents(Path::new("/d/b")).unwrap(), b"hello world");
    }

    #[test]
    fn atomic_writes_leave_old_or_new() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let p = Path::new("/d/meta.json");
        fs.write_atomic(p, b"one").unwrap();
        let before = fs.power_cut();
        fs.write_atomic(p, b"two").unwrap();
        assert_eq!(before.contents(p).unwrap(), b"one");
        assert_eq!(fs.power_cut().contents(p).unwrap(), b"two");
    }

    #[test]
    fn locks_are_exclusive_until_dropped() {
        let fs = SimFs::new();
        let g = fs.lock(Path::new("/LOCK")).unwrap();
        assert!(fs.lock(Path::new("/LOCK")).is_err());
        drop(g);
        assert!(fs.lock(Path::new("/LOCK")).is_ok());
    }
}
