//! Dead letters: a record that cannot be served (not a request, over the size limit, or its
//! handler panicked) is copied to the service's dead-letter topic with headers saying where it
//! came from and why, and the server moves on. A batch of the request topic that cannot even be
//! decoded (unknown codec, corrupt) is copied there whole, raw, with the offsets it spans.

use kafka_wire::{ConsumerRecord, Header, ProducerRecord, SkippedBatch};

/// Header: why the record was dead-lettered (UTF-8).
pub const REASON: &str = "krpc-dlq-reason";
/// Header: the topic it came from (UTF-8).
pub const SOURCE_TOPIC: &str = "krpc-dlq-topic";
/// Header: the partition it came from (4-byte big-endian).
pub const SOURCE_PARTITION: &str = "krpc-dlq-partition";
/// Header: its offset there (8-byte big-endian).
pub const SOURCE_OFFSET: &str = "krpc-dlq-offset";
/// Header: for an undecodable batch, the offset after it (8-byte big-endian, exclusive); its
/// first offset is in [`SOURCE_OFFSET`].
pub const SOURCE_OFFSET_END: &str = "krpc-dlq-offset-end";
/// Header: the server that gave up on it (UTF-8).
pub const SERVER: &str = "krpc-dlq-server";

/// The dead-letter copy of `record`: same key, value (unless `keep_value` is false) and headers,
/// plus the provenance headers.
pub fn dead_letter(
    record: &ConsumerRecord,
    reason: &str,
    server_id: &str,
    keep_value: bool,
) -> ProducerRecord {
    let mut headers = record.headers.clone();
    headers.extend([
        Header::new(REASON, reason.to_string()),
        Header::new(SOURCE_TOPIC, record.topic.to_string()),
        Header::new(SOURCE_PARTITION, record.partition.to_be_bytes().to_vec()),
        Header::new(SOURCE_OFFSET, record.offset.to_be_bytes().to_vec()),
        Header::new(SERVER, server_id.to_string()),
    ]);
    let value = if keep_value {
        record.value.clone()
    } else {
        None
    };
    ProducerRecord {
        key: record.key.clone(),
        value,
        headers,
        timestamp: Some(record.timestamp),
    }
}

/// The dead-letter record of an undecodable batch: no key, the batch's raw bytes as they were
/// fetched (a v2 record batch or an old-format message set entry, offset and length fields
/// included) as the value, and the provenance headers with the offset range it spans.
pub fn undecodable_batch(batch: &SkippedBatch, server_id: &str) -> ProducerRecord {
    ProducerRecord {
        key: None,
        value: Some(batch.raw.clone()),
        headers: vec![
            Header::new(REASON, format!("undecodable batch: {}", batch.reason)),
            Header::new(SOURCE_TOPIC, batch.topic.to_string()),
            Header::new(SOURCE_PARTITION, batch.partition.to_be_bytes().to_vec()),
            Header::new(SOURCE_OFFSET, batch.base_offset.to_be_bytes().to_vec()),
            Header::new(SOURCE_OFFSET_END, batch.next_offset.to_be_bytes().to_vec()),
            Header::new(SERVER, server_id.to_string()),
        ],
        timestamp: None,
    }
}
