//! Dead letters: a record that cannot be served (not a request, over the size limit, or its
//! handler panicked) is copied to the service's dead-letter topic with headers saying where it
//! came from and why, and the server moves on. A batch of the request topic that cannot even be
//! decoded (unknown codec, corrupt) is copied there whole, raw, with the offsets it spans.

use krpc_kafka::{ConsumerRecord, Header, ProducerRecord, SkippedBatch};

use crate::envelope::headers as h;
use crate::envelope::RequestId;

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
/// Header: the size in bytes of a value the copy does not carry (8-byte big-endian), written
/// when the request was over the size limit: the letter keeps its headers, not its payload.
pub const VALUE_DROPPED: &str = "krpc-dlq-value-dropped";

/// The dead-letter copy of `record`: same key, value (unless `keep_value` is false: then
/// [`VALUE_DROPPED`] says how big it was) and headers, plus the provenance headers.
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) fn dead_letter(
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
        if let Some(v) = &record.value {
            headers.push(Header::new(
                VALUE_DROPPED,
                (v.len() as u64).to_be_bytes().to_vec(),
            ));
        }
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
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) fn undecodable_batch(batch: &SkippedBatch, server_id: &str) -> ProducerRecord {
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

/// A record of a dead-letter topic, read back: the provenance headers the server writes (see
/// the constants of this module), for `krpc dlq list|show` and for [`replay`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its offset in the dead-letter topic.
    pub offset: i64,
    /// Its partition in the dead-letter topic.
    pub partition: i32,
    /// [`REASON`], or `None` if the record lacks it (not written by a kafka-rpc server).
    pub reason: Option<String>,
    /// [`SOURCE_TOPIC`].
    pub source_topic: Option<String>,
    /// [`SOURCE_PARTITION`].
    pub source_partition: Option<i32>,
    /// [`SOURCE_OFFSET`].
    pub source_offset: Option<i64>,
    /// [`SOURCE_OFFSET_END`]: set only for an undecodable batch.
    pub source_offset_end: Option<i64>,
    /// [`SERVER`].
    pub server: Option<String>,
    /// The request's method (`krpc-method`), if the copy is a native request.
    pub method: Option<String>,
    /// The request's id (`krpc-id`, 32 hex digits), if the copy is a native request.
    pub request_id: Option<String>,
    /// When it was dead-lettered (the record's timestamp, ms since the Unix epoch).
    pub timestamp_ms: i64,
    /// Bytes of its value (0 if none).
    pub value_len: usize,
    /// [`VALUE_DROPPED`]: the size of the request's value the copy does not carry.
    pub value_dropped: Option<u64>,
}

impl DeadLetter {
    /// Reads the provenance headers of a dead-letter record. Headers of the wrong length or
    /// encoding read as absent: this is a display of untrusted data, not a decision.
    pub fn from_record(record: &ConsumerRecord) -> Self {
        let raw = |name: &str| {
            record
                .headers
                .iter()
                .rev()
                .find(|h| h.key.as_str() == name)
                .and_then(|h| h.value.clone())
        };
        let text = |name: &str| raw(name).and_then(|v| String::from_utf8(v.to_vec()).ok());
        let int = |name: &str| {
            raw(name).and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok().map(i64::from_be_bytes))
        };
        Self {
            offset: record.offset,
            partition: record.partition,
            reason: text(REASON),
            source_topic: text(SOURCE_TOPIC),
            source_partition: raw(SOURCE_PARTITION)
                .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok().map(i32::from_be_bytes)),
            source_offset: int(SOURCE_OFFSET),
            source_offset_end: int(SOURCE_OFFSET_END),
            server: text(SERVER),
            method: text(h::METHOD),
            request_id: raw(h::ID)
                .and_then(|v| <[u8; 16]>::try_from(v.as_ref()).ok())
                .map(|id| RequestId(id).to_string()),
            timestamp_ms: record.timestamp,
            value_len: record.value.as_ref().map_or(0, |v| v.len()),
            value_dropped: raw(VALUE_DROPPED)
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok().map(u64::from_be_bytes)),
        }
    }
}

/// Why a dead letter cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The copy is a raw batch that no server could decode; sending it again changes nothing.
    #[error("it is an undecodable batch of {topic} (offsets {from}..{to}), not a request")]
    UndecodableBatch {
        /// Source topic.
        topic: String,
        /// First offset of the batch.
        from: i64,
        /// The offset after it.
        to: i64,
    },
    /// The copy is not a native kafka-rpc request (no `krpc-id` of 16 bytes or no method).
    #[error("it is not a kafka-rpc request ({0})")]
    NotARequest(String),
    /// The payload is sealed: its seal covers the request id, so a new id would make the server
    /// refuse it as forged, and the same id would be deduplicated.
    #[error("its payload is sealed (krpc-key-id), and the seal covers the request id")]
    Sealed,
    /// The copy does not carry the request's value (it was over the size limit): sending it
    /// would call the method with no arguments.
    #[error("its value (over the size limit{}) was not kept in the dead letter", .0.map(|n| format!(", {n} bytes")).unwrap_or_default())]
    ValueDropped(Option<u64>),
}

/// A dead-lettered request made new for its request topic: the same method, arguments and
/// caller headers, a fresh `krpc-id`, no deadline (the old one has passed) and no reply address
/// (its caller has stopped waiting: the replay is a one-way call, whose completion record the
/// server still writes); the provenance headers are dropped. Returns the record and its new id.
///
/// # Errors
/// [`ReplayError`]: a raw undecodable batch, a record that is not a native request, a sealed
/// payload, a value the dead letter does not carry.
pub fn replay(record: &ConsumerRecord) -> Result<(ProducerRecord, RequestId), ReplayError> {
    let letter = DeadLetter::from_record(record);
    if let (Some(end), Some(from)) = (letter.source_offset_end, letter.source_offset) {
        return Err(ReplayError::UndecodableBatch {
            topic: letter.source_topic.unwrap_or_default(),
            from,
            to: end,
        });
    }
    let has = |name: &str| record.headers.iter().any(|h| h.key.as_str() == name);
    if letter.request_id.is_none() || letter.method.is_none() {
        return Err(ReplayError::NotARequest(
            "no 16-byte krpc-id and krpc-method headers".into(),
        ));
    }
    if has(h::KEY_ID) {
        return Err(ReplayError::Sealed);
    }
    // Present at all (even with a malformed size) means the value is not here.
    if has(VALUE_DROPPED) {
        return Err(ReplayError::ValueDropped(letter.value_dropped));
    }
    let id = RequestId::random();
    let dropped = [
        REASON,
        SOURCE_TOPIC,
        SOURCE_PARTITION,
        SOURCE_OFFSET,
        SOURCE_OFFSET_END,
        SERVER,
        VALUE_DROPPED,
        // The replay is a new call: a new trace, not a child of a caller that stopped waiting.
        crate::trace::TRACEPARENT,
        crate::trace::TRACESTATE,
        h::ID,
        h::DEADLINE,
        h::REPLY_TOPIC,
        h::REPLY_PARTITION,
        h::SENT,
    ];
    let mut headers: Vec<Header> = record
        .headers
        .iter()
        .filter(|h| !dropped.contains(&h.key.as_str()))
        .cloned()
        .collect();
    headers.push(h::header(h::ID, id.0.to_vec()));
    headers.push(h::header(
        h::SENT,
        crate::envelope::now_ms().to_be_bytes().to_vec(),
    ));
    Ok((
        ProducerRecord {
            key: record.key.clone(),
            value: record.value.clone(),
            headers,
            timestamp: None,
        },
        id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;

    fn request(value: &[u8]) -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from("krpc.S.requests"),
            partition: 3,
            offset: 42,
            timestamp: 1_700_000_000_000,
            log_append_time: false,
            key: None,
            value: Some(Bytes::copy_from_slice(value)),
            headers: vec![
                h::header(h::ID, [7u8; 16].to_vec()),
                h::header(h::METHOD, b"add".to_vec()),
                h::header(
                    crate::trace::TRACEPARENT,
                    b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_vec(),
                ),
            ],
        }
    }

    /// Written back as the dead-letter topic holds it, then read by `replay`.
    fn as_read(letter: ProducerRecord) -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from("krpc.S.dead-letters"),
            partition: 0,
            offset: 0,
            timestamp: 1_700_000_000_001,
            log_append_time: false,
            key: letter.key,
            value: letter.value,
            headers: letter.headers,
        }
    }

    #[test]
    fn a_letter_that_kept_its_value_replays_with_a_new_id_and_the_same_value() {
        let letter = as_read(dead_letter(
            &request(b"args"),
            "the handler panicked",
            "s1",
            true,
        ));
        let (again, id) = replay(&letter).unwrap();
        assert_eq!(again.value.as_deref(), Some(&b"args"[..]));
        assert_ne!(id.0, [7u8; 16]);
        assert!(again
            .headers
            .iter()
            .all(|h| !h.key.starts_with("krpc-dlq-")));
        assert!(
            again
                .headers
                .iter()
                .all(|h| h.key != crate::trace::TRACEPARENT),
            "a replay starts a new trace"
        );
    }

    /// Review R7: an oversize request's letter keeps no value; replaying it used to send a
    /// request with no arguments and report it replayed.
    #[test]
    fn a_letter_without_its_value_says_so_and_is_not_replayed() {
        let letter = as_read(dead_letter(
            &request(&[1u8; 300]),
            "over the size limit",
            "s1",
            false,
        ));
        assert_eq!(letter.value, None);
        assert_eq!(DeadLetter::from_record(&letter).value_dropped, Some(300));
        assert_eq!(replay(&letter), Err(ReplayError::ValueDropped(Some(300))));
        // Anyone can write a dead-letter topic: a malformed size still means no value.
        let mut forged = letter.clone();
        for h in &mut forged.headers {
            if h.key == VALUE_DROPPED {
                h.value = Some(Bytes::from_static(b"x"));
            }
        }
        assert_eq!(replay(&forged), Err(ReplayError::ValueDropped(None)));
    }
}
