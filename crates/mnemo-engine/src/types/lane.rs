//! Indexing lanes: the order in which committed records move into the graph.

use serde::{Deserialize, Serialize};

/// Indexing priority of an observation. Every lane is durable and visible at once;
/// the lane only orders the move into the HNSW graph (weighted 8 : 4 : 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// Indexed first.
    High = 0,
    /// The default.
    #[default]
    Normal = 1,
    /// Indexed last, but never starved.
    Low = 2,
}

impl Lane {
    /// All lanes, highest priority first.
    pub const ALL: [Lane; 3] = [Lane::High, Lane::Normal, Lane::Low];

    /// The lane with this number (0 high, 1 normal, 2 low); anything else is normal.
    pub fn from_u8(v: u8) -> Lane {
        match v {
            0 => Lane::High,
            2 => Lane::Low,
            _ => Lane::Normal,
        }
    }
}
