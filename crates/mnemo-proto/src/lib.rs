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

/// The metadata key of an UNAVAILABLE refusal that names the node to send writes
/// to instead (distributed mode: the owner of the space's partition), as the
/// address clients connect to (`http://host:port`).
pub const OWNER_METADATA: &str = "mnemo-owner";

/// The `.proto` source, for tools that generate stubs in other languages.
pub const PROTO_SOURCE: &str = include_str!("../proto/mnemo/v1/mnemo.proto");

/// A vector as a packed embedding (`embedding_f32`, `cue_f32`): little-endian f32.
pub fn pack_f32(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// A packed embedding as a vector; `None` if its length is not a multiple of 4.
pub fn unpack_f32(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn packing_round_trips_and_refuses_ragged_lengths() {
        let v = [1.5f32, -0.0, f32::MIN_POSITIVE, 3.25e7];
        let p = super::pack_f32(&v);
        assert_eq!(p.len(), 16);
        assert_eq!(&p[..4], &1.5f32.to_le_bytes());
        assert_eq!(super::unpack_f32(&p).as_deref(), Some(&v[..]));
        assert_eq!(super::unpack_f32(&p[..15]), None);
        assert_eq!(super::unpack_f32(&[]), Some(vec![]));
    }
}
