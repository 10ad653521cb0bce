//! The client commands (against a running server) and helpers.

pub(crate) mod conn;
pub(crate) mod forget;
#[cfg(feature = "server")]
pub(crate) mod key;
pub(crate) mod observe;
pub(crate) mod recall;
#[cfg(feature = "server")]
pub(crate) mod repair;
pub(crate) mod space;
pub(crate) mod stats;
pub(crate) mod synth;
