// Covers kafka_wire::records::decode_batches: v2 record batches, any codec, raw and CRC-fixed.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn decode(data: Vec<u8>) {
    let topic: Arc<str> = Arc::from("fuzz");
    let data = Bytes::from(data);
    let _ = kafka_wire::records::decode_batches(&data, &topic, 0, 0, 1 << 20);
}

fuzz_target!(|data: &[u8]| {
    // The bytes as they came: exercises the framing and the checksum check.
    decode(data.to_vec());
    // The same bytes with each batch's CRC made valid, so mutations of the records get past it.
    let mut fixed = data.to_vec();
    if kafka_wire_fuzz::fix_batch_crcs(&mut fixed) {
        decode(fixed);
    }
});
