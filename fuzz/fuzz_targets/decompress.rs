// Covers krpc_kafka::compression::decompress for every codec (first byte picks it), 1 MiB limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let codec = krpc_kafka_fuzz::pick_codec(selector);
    let limit = 1 << 20;
    if let Ok(out) = krpc_kafka::compression::decompress(codec, payload, limit) {
        assert!(
            out.len() <= limit,
            "{codec:?} inflated {} bytes past the limit {limit}",
            out.len()
        );
    }
});
