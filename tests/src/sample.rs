//! The sample records every interop test exchanges; `tests/interop/peers.py` builds the same.

use bytes::Bytes;
use krpc_kafka::{ConsumerRecord, Header, ProducerRecord};

/// Sample record `i`: some keys and values null, three headers (one null; the first key
/// repeated last, as Kafka allows), a fixed timestamp.
pub fn record(i: usize) -> ProducerRecord {
    let key = (i % 5 != 4).then(|| Bytes::from(format!("key-{i}")));
    let value = (i % 7 != 6).then(|| Bytes::from(format!("value-{i}").repeat(i % 3 + 1)));
    ProducerRecord {
        key,
        value,
        headers: vec![
            Header::new("h", i.to_string()),
            Header {
                key: "n".into(),
                value: None,
            },
            Header::new("h", "again"),
        ],
        timestamp: Some(1_600_000_000_000 + i as i64),
    }
}

/// Record `i` as the JSON line `peers.py consume` prints.
pub fn json(i: usize, offset: i64) -> serde_json::Value {
    let r = record(i);
    let hex = |b: &Option<Bytes>| match b {
        Some(b) => serde_json::Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        None => serde_json::Value::Null,
    };
    serde_json::json!({
        "offset": offset,
        "key": hex(&r.key),
        "value": hex(&r.value),
        "headers": r.headers.iter().map(|h| serde_json::json!([h.key, hex(&h.value)])).collect::<Vec<_>>(),
        "timestamp": r.timestamp,
    })
}

/// Asserts that `got` is sample record `i` at `offset`.
pub fn assert_is(got: &ConsumerRecord, i: usize, offset: i64) {
    assert_matches(got, record(i), i, offset);
}

/// Asserts that `got` is sample record `i` at `offset`, less its null-valued headers (for
/// producers that cannot send those, such as kafka-python).
pub fn assert_is_without_null_headers(got: &ConsumerRecord, i: usize, offset: i64) {
    let mut want = record(i);
    want.headers.retain(|h| h.value.is_some());
    assert_matches(got, want, i, offset);
}

fn assert_matches(got: &ConsumerRecord, want: ProducerRecord, i: usize, offset: i64) {
    assert_eq!(got.offset, offset, "offset of sample {i}");
    assert_eq!(got.key, want.key, "key of sample {i}");
    assert_eq!(got.value, want.value, "value of sample {i}");
    assert_eq!(got.headers, want.headers, "headers of sample {i}");
    assert_eq!(
        Some(got.timestamp),
        want.timestamp,
        "timestamp of sample {i}"
    );
}
