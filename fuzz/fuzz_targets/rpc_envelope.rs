// Covers the RPC envelope decoders a server and a client run on every record they read:
// kafka_rpc::envelope::{Request, Reply, Completion}::from_record and Completion::read_all (one
// or, coalesced, many completions in a record), on records whose headers and value come from
// the input (each header: a 1-byte name index or name, a 1-byte length, bytes).
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use kafka_rpc::envelope::{headers as h, Completion, Reply, Request, COMPLETIONS};
use krpc_kafka::{ConsumerRecord, Header};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 14] = [
    h::VERSION,
    h::ID,
    h::METHOD,
    h::REPLY_TOPIC,
    h::REPLY_PARTITION,
    h::DEADLINE,
    h::SENT,
    h::STATUS,
    h::MESSAGE,
    h::SERVER,
    h::HANDLER_US,
    h::QUEUE_MS,
    COMPLETIONS,
    "other",
];

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut headers = Vec::new();
    while rest.len() >= 2 && headers.len() < 32 {
        let (name, len) = (NAMES[rest[0] as usize % NAMES.len()], rest[1] as usize);
        rest = &rest[2..];
        let take = len.min(rest.len());
        // Length 255 stands for a null value.
        let value = (len != 255).then(|| Bytes::copy_from_slice(&rest[..take]));
        headers.push(Header {
            key: name.to_string(),
            value,
        });
        rest = &rest[take..];
    }
    let record = ConsumerRecord {
        topic: Arc::from("t"),
        partition: 0,
        offset: 0,
        timestamp: 0,
        log_append_time: false,
        key: None,
        value: Some(Bytes::copy_from_slice(rest)),
        headers,
    };
    if let Ok(req) = Request::from_record(&record) {
        let _ = req.to_record(None);
    }
    let _ = Reply::from_record(&record);
    let _ = Completion::from_record(&record);
    if let Ok(all) = Completion::read_all(&record) {
        // Whatever was read writes out again and reads back, as many completions (the fields
        // may normalise: an OK reply's message is not written).
        let again = Completion::coalesce(all.iter().map(Completion::to_record).collect());
        let again = ConsumerRecord {
            key: again.key,
            value: again.value,
            headers: again.headers,
            ..record.clone()
        };
        assert_eq!(Completion::read_all(&again).map(|a| a.len()), Ok(all.len()));
    }
    let _ = kafka_rpc::codec::decode_args::<(i64, String, Vec<u8>)>(rest);
});
