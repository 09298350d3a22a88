// Covers the consumer-protocol payloads a group leader and members read off the network:
// kafka_wire::group::payload::{decode_subscription, decode_assignment}.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(sub) = kafka_wire::group::payload::decode_subscription(bytes.clone()) {
        // What decodes must encode again without panicking.
        let _ = kafka_wire::group::payload::encode_subscription(&sub);
    }
    if let Ok(assignment) = kafka_wire::group::payload::decode_assignment(bytes) {
        let _ = kafka_wire::group::payload::encode_assignment(&assignment);
    }
});
