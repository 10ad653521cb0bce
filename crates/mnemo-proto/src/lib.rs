//! # mnemo-proto
//!
//! Mnemo's wire protocol, package `mnemo.v1`: the `.proto` (in this crate's
//! `proto/mnemo/v1/mnemo.proto`), and the message types, client and server stubs
//! generated from it at build time (protox: no system `protoc`). The guarantees
//! behind the messages are in `docs/protocol.md`.
//!
//! Most users want `mnemo-client` (a connection, the calls, and a session driver)
//! rather than these raw types; the server is `mnemo-server`.

/// Generated protocol types and service stubs.
pub mod pb {
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::unwrap_used)]
    tonic::include_proto!("mnemo.v1");

    /// Encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/mnemo_descriptor.bin"));
}

/// The `.proto` source, for tools that generate stubs in other languages.
pub const PROTO_SOURCE: &str = include_str!("../proto/mnemo/v1/mnemo.proto");
