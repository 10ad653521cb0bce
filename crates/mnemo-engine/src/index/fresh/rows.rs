//! A chunk's rows: each kept at the graph's precision (for the index workers), as
//! 8-bit codes with their scale and squared norm, and (with sign codes) as 1 bit
//! per dimension around the chunk's center.

use super::super::hnsw::VectorRef;
use super::super::score;
use super::CHUNK_ROWS;
use crate::types::Precision;

/// A chunk's rows, row-major.
pub(super) struct Rows {
    /// Prepared vectors for the graph (see [`score::prepare`]), all rows in one.
    pub(super) full: IndexRow,
    /// 8-bit codes of the prepared vectors (see [`score::quantize`]).
    pub(super) codes: Vec<i8>,
    /// Per row: the code scale and the exact squared norm.
    pub(super) scales: Vec<f32>,
    pub(super) sq_norms: Vec<f32>,
    /// Sign codes against the chunk's center (empty when it has none).
    pub(super) signs: Vec<u64>,
}

/// Vectors at the precision the graph stores (f16 as IEEE bits): a row handed to an
/// index worker, or all the rows of a chunk.
pub(crate) enum IndexRow {
    F32(Vec<f32>),
    F16(Vec<i16>),
}

impl IndexRow {
    /// Empty, with room for `len` values, in the form a graph of `precision` takes.
    pub(super) fn with_capacity(precision: Precision, len: usize) -> Self {
        match precision {
            Precision::F32 => IndexRow::F32(Vec::with_capacity(len)),
            Precision::F16 | Precision::I8 => IndexRow::F16(Vec::with_capacity(len)),
        }
    }

    /// Bytes per value for a graph of `precision`.
    pub(super) fn element_bytes(precision: Precision) -> usize {
        match precision {
            Precision::F32 => size_of::<f32>(),
            Precision::F16 | Precision::I8 => size_of::<i16>(),
        }
    }

    /// `v` (prepared) in the form a graph of `precision` takes.
    pub(crate) fn from_prepared(precision: Precision, v: &[f32]) -> Self {
        let mut row = Self::with_capacity(precision, v.len());
        row.extend(v);
        row
    }

    fn extend(&mut self, v: &[f32]) {
        match self {
            IndexRow::F32(out) => out.extend_from_slice(v),
            IndexRow::F16(out) => out.extend(
                v.iter()
                    .map(|x| half::f16::from_f32(*x).to_bits().cast_signed()),
            ),
        }
    }

    /// The values as f32 (f16 widened).
    pub(crate) fn to_f32(&self) -> Vec<f32> {
        match self {
            IndexRow::F32(v) => v.clone(),
            IndexRow::F16(v) => v
                .iter()
                .map(|b| half::f16::from_bits(b.cast_unsigned()).to_f32())
                .collect(),
        }
    }

    pub(crate) fn as_ref(&self) -> VectorRef<'_> {
        match self {
            IndexRow::F32(v) => VectorRef::F32(v),
            IndexRow::F16(v) => VectorRef::F16(v),
        }
    }
}

impl Rows {
    pub(super) fn new(dim: usize, precision: Precision, sign_words: usize) -> Self {
        Rows {
            full: IndexRow::with_capacity(precision, CHUNK_ROWS * dim),
            codes: Vec::with_capacity(CHUNK_ROWS * dim),
            scales: Vec::with_capacity(CHUNK_ROWS),
            sq_norms: Vec::with_capacity(CHUNK_ROWS),
            signs: Vec::with_capacity(CHUNK_ROWS * sign_words),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.scales.len()
    }

    pub(super) fn push(&mut self, prepared: &[f32], q: score::Quantized, center: Option<&[f32]>) {
        if let Some(center) = center {
            self.signs
                .extend_from_slice(&score::sign_bits(prepared, center));
        }
        self.full.extend(prepared);
        self.codes.extend_from_slice(&q.codes);
        self.scales.push(q.scale);
        self.sq_norms.push(q.sq_norm);
    }

    pub(super) fn index_row(&self, row: usize, dim: usize) -> IndexRow {
        let span = row * dim..(row + 1) * dim;
        match &self.full {
            IndexRow::F32(v) => IndexRow::F32(v[span].to_vec()),
            IndexRow::F16(v) => IndexRow::F16(v[span].to_vec()),
        }
    }
}
