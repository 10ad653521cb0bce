//! The log frame decoder and the record decoder on arbitrary bytes, walked the way
//! recovery walks a segment. Never panics; a frame that decodes re-encodes to exactly
//! its bytes; a record that decodes re-encodes to a body that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnemo_engine::internals::ObservationRecord;
use mnemo_engine::internals::{FrameError, decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        let rest = &data[at..];
        match decode_frame(rest) {
            Ok(f) => {
                assert!(f.len <= rest.len() && f.len >= 20, "frame length {}", f.len);
                let mut again = Vec::new();
                let n = encode_frame(&mut again, f.space, f.lsn, f.body);
                assert_eq!(n, f.len);
                assert_eq!(&again[..], &rest[..f.len], "a verified frame is canonical");
                check_body(f.body);
                at += f.len;
            }
            // Recovery stops here (a torn tail) or refuses (corruption): either way the
            // walk ends; check the body decoder on what is left, too.
            Err(FrameError::Truncated) | Err(FrameError::Corrupt(_)) => {
                check_body(rest);
                break;
            }
        }
    }
});

fn check_body(body: &[u8]) {
    let session = ObservationRecord::decode_session(body);
    if let Ok(rec) = ObservationRecord::decode(body) {
        let (id, seq) = session.expect("a body that decodes has a session header");
        assert_eq!((id, seq), (rec.session_id.as_str(), rec.session_seq));
        let encoded = rec.encode();
        assert_eq!(encoded.len(), rec.encoded_len());
        let again = ObservationRecord::decode(&encoded).expect("re-encoded body decodes");
        assert_eq!(again.encode(), encoded, "decode ∘ encode is stable");
    }
}
