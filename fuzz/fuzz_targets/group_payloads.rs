// Covers the consumer-protocol payloads a group leader and members read off the network:
// krpc_kafka::group::payload::{decode_subscription, decode_assignment}.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(sub) = krpc_kafka::group::payload::decode_subscription(bytes.clone()) {
        // What decodes must encode again without panicking.
        let _ = krpc_kafka::group::payload::encode_subscription(&sub);
    }
    if let Ok(assignment) = krpc_kafka::group::payload::decode_assignment(bytes) {
        let _ = krpc_kafka::group::payload::encode_assignment(&assignment);
    }
});
