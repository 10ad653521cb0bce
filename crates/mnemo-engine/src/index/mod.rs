//! Vector search: the exact [`fresh`] tier for just-committed records and the
//! approximate [`hnsw`] graph for everything indexed, plus the scoring kernels.

pub(crate) mod fresh;
pub(crate) mod gate;
pub(crate) mod hnsw;
pub(crate) mod score;
