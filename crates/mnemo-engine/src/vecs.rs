//! Readers for the `.fvecs` / `.ivecs` vector-set layout (TEXMEX / ann-benchmarks:
//! per row a little-endian `i32` dimension, then that many `f32` or `i32`), used by
//! the examples, tests and benchmarks on real data sets.

use std::path::Path;

use crate::error::{Error, IoContext, Result};

fn read_rows<T>(path: &Path, conv: fn([u8; 4]) -> T) -> Result<Vec<Vec<T>>> {
    let bytes = std::fs::read(path).at(path)?;
    let corrupt = |offset: usize, detail: &str| Error::Corruption {
        path: path.to_path_buf(),
        offset: offset as u64,
        detail: detail.to_string(),
    };
    let word = |pos: usize| -> Option<[u8; 4]> { bytes.get(pos..pos + 4)?.try_into().ok() };
    let mut rows = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let dim = word(pos)
            .map(i32::from_le_bytes)
            .ok_or_else(|| corrupt(pos, "truncated row header"))?;
        let dim = usize::try_from(dim).map_err(|_| corrupt(pos, "negative dimension"))?;
        pos += 4;
        let row = (0..dim)
            .map(|i| word(pos + 4 * i).map(conv))
            .collect::<Option<Vec<T>>>()
            .ok_or_else(|| corrupt(pos, "truncated row"))?;
        pos += 4 * dim;
        rows.push(row);
    }
    Ok(rows)
}

/// Reads an `.fvecs` file: one `Vec<f32>` per row.
pub fn read_fvecs(path: &Path) -> Result<Vec<Vec<f32>>> {
    read_rows(path, f32::from_le_bytes)
}

/// Reads an `.ivecs` file: one `Vec<i32>` per row.
pub fn read_ivecs(path: &Path) -> Result<Vec<Vec<i32>>> {
    read_rows(path, i32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_and_rejects_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.fvecs");
        let mut b = Vec::new();
        for row in [[1.0f32, 2.0], [3.0, 4.0]] {
            b.extend_from_slice(&2i32.to_le_bytes());
            row.iter()
                .for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        }
        std::fs::write(&p, &b).unwrap();
        assert_eq!(
            read_fvecs(&p).unwrap(),
            vec![vec![1.0, 2.0], vec![3.0, 4.0]]
        );
        std::fs::write(&p, &b[..b.len() - 1]).unwrap();
        assert!(matches!(
            read_fvecs(&p),
            Err(Error::Corruption { offset: 16, .. })
        ));
    }
}
