//! Erasing removed vectors from a saved usearch file.
//!
//! usearch's `remove` only marks a node's slot free (its key becomes the free key,
//! `u64::MAX`), and `save` writes every slot's vector, freed ones included, so a
//! forgotten memory's vector would stay in every checkpoint until its slot is
//! reused. After a save, [`scrub_freed_vectors`] zeroes the vector rows of freed
//! slots in the file (the graph's structure and the other vectors are untouched).
//!
//! The file layout (usearch 2.x, `index_dense_gt::save_to_stream`, pinned by the
//! tests below): `u32 rows, u32 bytes_per_vector` (or both `u64`), the rows of
//! vectors in slot order, a 64-byte head starting with the magic `usearch`, the
//! graph header (`u64 size, connectivity, connectivity_base, max_level,
//! entry_slot`), `size` levels (`i16`), then each slot's node: `u64 key, i16
//! level`, then `u32 count + 4 × connectivity_base` bytes of base-level neighbours
//! and `u32 count + 4 × connectivity` per further level.

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::io::{FileHandle, FileSystem, OpenMode};

const HEAD_BYTES: u64 = 64;
const MAGIC: &[u8] = b"usearch";
const FREE_KEY: u64 = u64::MAX;

/// Zeroes, in the usearch file at `path`, the vectors of slots whose node is free
/// (removed). Returns how many rows it zeroed.
pub(crate) fn scrub_freed_vectors(fs: &dyn FileSystem, path: &Path) -> Result<u64> {
    let f = fs.open(path, OpenMode::ReadWrite).at(path)?;
    let bad = |what: &str| Error::Index(format!("{}: {what}", path.display()));
    let file_len = f.size().at(path)?;
    let (rows, cols, vectors_at) = matrix_shape(f.as_ref(), file_len, path)?;
    let head_at = vectors_at + rows * cols;
    // The head counts freed slots (after the magic, three u16 versions and four
    // one-byte kinds): none, nothing to do.
    let mut deleted = [0u8; 8];
    f.read_exact_at(&mut deleted, head_at + 25).at(path)?;
    if u64::from_le_bytes(deleted) == 0 {
        return Ok(0);
    }
    let graph_at = head_at + HEAD_BYTES;
    let mut header = [0u8; 40];
    f.read_exact_at(&mut header, graph_at).at(path)?;
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&header[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let (size, connectivity, connectivity_base) = (word(0), word(1), word(2));
    if size != rows {
        return Err(bad("graph size differs from the vector rows"));
    }
    let levels_at = graph_at + 40;
    let mut levels = vec![0u8; (size * 2) as usize];
    f.read_exact_at(&mut levels, levels_at).at(path)?;
    let base_bytes = 4 + 4 * connectivity_base;
    let level_bytes = 4 + 4 * connectivity;
    let mut nodes = Window::new(f.as_ref(), levels_at + size * 2, file_len);
    let zeros = vec![0u8; cols as usize];
    let mut scrubbed = 0;
    for slot in 0..size {
        let i = (slot * 2) as usize;
        let level = i16::from_le_bytes([levels[i], levels[i + 1]]);
        if level < 0 {
            return Err(bad("a node has a negative level"));
        }
        let key = nodes.u64_at_cursor(path)?;
        if key == FREE_KEY {
            f.write_all_at(&zeros, vectors_at + slot * cols).at(path)?;
            scrubbed += 1;
        }
        if !nodes.advance(10 + base_bytes + level_bytes * level as u64) {
            return Err(bad("the nodes run past the end of the file"));
        }
    }
    if scrubbed > 0 {
        f.sync_all().at(path)?;
    }
    Ok(scrubbed)
}

/// Sequential reads of the node region, a MiB at a time.
struct Window<'a> {
    f: &'a dyn FileHandle,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
    /// File offset of the next node.
    cursor: u64,
    end: u64,
}

impl<'a> Window<'a> {
    fn new(f: &'a dyn FileHandle, cursor: u64, end: u64) -> Self {
        Window {
            f,
            buf: Vec::new(),
            start: cursor,
            cursor,
            end,
        }
    }

    /// The little-endian `u64` at the cursor.
    fn u64_at_cursor(&mut self, path: &Path) -> Result<u64> {
        let within =
            self.cursor >= self.start && self.cursor + 8 <= self.start + self.buf.len() as u64;
        if !within {
            let n = (self.end.saturating_sub(self.cursor)).min(1 << 20) as usize;
            if n < 8 {
                return Err(Error::Index(format!(
                    "{}: a node is cut short",
                    path.display()
                )));
            }
            self.buf.resize(n, 0);
            self.f.read_exact_at(&mut self.buf, self.cursor).at(path)?;
            self.start = self.cursor;
        }
        let at = (self.cursor - self.start) as usize;
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.buf[at..at + 8]);
        Ok(u64::from_le_bytes(w))
    }

    /// Moves the cursor `n` bytes on; false past the end.
    fn advance(&mut self, n: u64) -> bool {
        self.cursor += n;
        self.cursor <= self.end
    }
}

/// `(rows, bytes per row, offset of the first row)`: 32-bit dimensions, else 64.
fn matrix_shape(f: &dyn FileHandle, len: u64, path: &Path) -> Result<(u64, u64, u64)> {
    let mut dims = [0u8; 16];
    let n = f.read_at(&mut dims, 0).at(path)?;
    for (word, at) in [(4usize, 8u64), (8, 16)] {
        if n < 2 * word {
            continue;
        }
        let read = |i: usize| {
            let mut b = [0u8; 8];
            b[..word].copy_from_slice(&dims[i * word..(i + 1) * word]);
            u64::from_le_bytes(b)
        };
        let (rows, cols) = (read(0), read(1));
        let Some(head) = rows.checked_mul(cols).and_then(|m| m.checked_add(at)) else {
            continue;
        };
        if head + HEAD_BYTES > len {
            continue;
        }
        let mut magic = [0u8; 7];
        f.read_exact_at(&mut magic, head).at(path)?;
        if magic == MAGIC {
            return Ok((rows, cols, at));
        }
    }
    Err(Error::Index(format!(
        "{}: not a usearch file this version can read",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::gate::RecallGate;
    use crate::index::hnsw::{Hnsw, VectorRef};
    use crate::io::StdFs;
    use crate::types::{IndexParams, Lsn, Metric, Precision, SpaceConfig};

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// Every precision and shard count: a removed vector's bytes are in the saved
    /// file until scrubbed, then nowhere; the file still loads and searches.
    #[test]
    fn removed_vectors_leave_the_saved_file() {
        for precision in [Precision::F32, Precision::F16, Precision::I8] {
            let cfg = SpaceConfig {
                metric: Metric::Cosine,
                index: IndexParams {
                    precision,
                    m: 8,
                    ..Default::default()
                },
                ..SpaceConfig::new(16)
            };
            let h = Hnsw::new(&cfg, 1).unwrap();
            let rows: Vec<(Lsn, Vec<f32>)> = (1..=500)
                .zip(crate::index::test_noise(3, 500, 16))
                .collect();
            let refs: Vec<(Lsn, VectorRef<'_>)> =
                rows.iter().map(|(l, v)| (*l, VectorRef::F32(v))).collect();
            h.add_batch(&refs, false, &RecallGate::default()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("i.usearch");
            let gone: roaring::RoaringTreemap = (100..=120).collect();
            assert_eq!(h.remove(&gone).unwrap(), 21);
            h.save(&StdFs, std::slice::from_ref(&path)).unwrap();
            // What the file holds of row 110: its stored form (found by its bytes).
            let stored = {
                let probe = Hnsw::load(&StdFs, std::slice::from_ref(&path), &cfg).unwrap();
                assert!(!probe.contains(110));
                let bytes = std::fs::read(&path).unwrap();
                let (_, cols, at) = matrix_shape(
                    StdFs.open(&path, OpenMode::Read).unwrap().as_ref(),
                    bytes.len() as u64,
                    &path,
                )
                .unwrap();
                // Slots are in insertion order: LSN 110 is slot 109.
                let row = &bytes[(at + 109 * cols) as usize..(at + 110 * cols) as usize];
                row.to_vec()
            };
            assert!(stored.iter().any(|b| *b != 0));
            assert_eq!(scrub_freed_vectors(&StdFs, &path).unwrap(), 21);
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !contains(&bytes, &stored),
                "{precision:?}: the removed row is gone"
            );
            let back = Hnsw::load(&StdFs, std::slice::from_ref(&path), &cfg).unwrap();
            assert_eq!(back.len(), 479);
            for (lsn, v) in rows.iter().step_by(37).filter(|(l, _)| !gone.contains(*l)) {
                let hit = back.search(v, 1, &|_| true).unwrap();
                assert_eq!(hit[0].0, *lsn, "{precision:?}");
            }
            assert_eq!(
                scrub_freed_vectors(&StdFs, &path).unwrap(),
                21,
                "idempotent"
            );
        }
    }

    #[test]
    fn a_file_of_something_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, vec![7u8; 500]).unwrap();
        assert!(scrub_freed_vectors(&StdFs, &path).is_err());
    }
}
