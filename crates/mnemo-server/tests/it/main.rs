//! Integration tests: a real server on a loopback port, a real tonic client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod common;

mod admin;
mod auth;
mod client_session;
mod filters;
mod forget;
mod hostile;
mod interop;
mod memory_stream;
mod observe;
mod packed;
mod read_path;
