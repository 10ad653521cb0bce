//! Memory-space names: what a valid one looks like.

use super::limits::MAX_SPACE_NAME_BYTES;
use crate::error::{Error, Result};

/// Checks a memory-space name: 1..=64 bytes of `[A-Za-z0-9_.-]`.
pub fn validate_space_name(name: &str) -> Result<()> {
    let ok_len = !name.is_empty() && name.len() <= MAX_SPACE_NAME_BYTES;
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok_len && ok_chars && name != "." && name != ".." {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "space name must be 1..={MAX_SPACE_NAME_BYTES} characters of [A-Za-z0-9_.-], got {name:?}"
        )))
    }
}
