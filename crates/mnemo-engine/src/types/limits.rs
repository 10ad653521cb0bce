//! Bounds on everything a client controls: dimensions, sizes, counts.

/// Largest vector dimension a space may have.
pub const MAX_DIM: u32 = 4096;
/// Largest observation content, in bytes of UTF-8.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// Most tags one observation may carry.
pub const MAX_TAGS: usize = 64;
/// Largest tag key, in bytes.
pub const MAX_TAG_KEY_BYTES: usize = 128;
/// Largest total size of all tag keys and values of one observation, in bytes.
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
/// Largest session id, in bytes.
pub const MAX_SESSION_ID_BYTES: usize = 128;
/// Largest memory-space name, in bytes.
pub const MAX_SPACE_NAME_BYTES: usize = 64;
