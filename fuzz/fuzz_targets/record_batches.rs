// Covers krpc_kafka::records::decode_fetched: v2 record batches (any codec, zstd included) and
// old-format message sets (magic 0 and 1, compressed wrappers), raw and with every checksum made
// valid, read_uncommitted and read_committed (the aborted list and last stable offset drawn
// from the input's first bytes).
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use krpc_kafka::records::{decode_fetched, ReadCommitted};
use libfuzzer_sys::fuzz_target;

fn decode(data: Vec<u8>, committed: Option<&ReadCommitted>) {
    let topic: Arc<str> = Arc::from("fuzz");
    let data = Bytes::from(data);
    let _ = decode_fetched(&data, &topic, 0, 0, 1 << 20, committed);
}

fuzz_target!(|data: &[u8]| {
    // The bytes as they came: exercises the framing and the checksum checks.
    decode(data.to_vec(), None);
    // The same bytes with each entry's checksum made valid, so mutations of the records get
    // past it.
    let mut fixed = data.to_vec();
    let changed = krpc_kafka_fuzz::fix_batch_crcs(&mut fixed);
    if changed {
        decode(fixed.clone(), None);
    }
    // read_committed: aborted transactions of producers 0..4 from the first bytes' values.
    let aborted = data
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, &b)| ((b % 4) as i64, i as i64 * (b as i64 % 8)))
        .collect();
    let committed = ReadCommitted {
        aborted,
        last_stable_offset: data.get(4).map_or(-1, |&b| b as i64 - 16),
    };
    decode(fixed, Some(&committed));
});
