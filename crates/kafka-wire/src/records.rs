//! Records as users see them, and their encoding into / decoding from v2 record batches.
//!
//! Decoding treats its input as hostile: batches are split by their length field (a trailing
//! partial batch, which a fetch may legally end with, is dropped), control batches are skipped,
//! record counts are checked against the bytes that hold them before anything is allocated, and
//! decompression is bounded.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::compression::{self, Codec, DecompressError};

/// One record header. Kafka allows repeated keys; the encoder of `kafka-protocol` keeps the
/// last value of a repeated key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value (may be null).
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Key (partitioning and compaction); `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Creation time in ms since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and no key.
    pub fn value(value: impl Into<Bytes>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Sets the timestamp (ms since the epoch).
    pub fn with_timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }

    /// Bytes this record takes in a batch, an upper bound used for size limits.
    pub fn encoded_size_bound(&self) -> usize {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len) + 5;
        21 + len(&self.key)
            + len(&self.value)
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + 5 + len(&h.value))
                .sum::<usize>()
    }
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in ms since the epoch.
    pub timestamp: i64,
    /// Whether the timestamp was set by the broker on append.
    pub log_append_time: bool,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers in wire order.
    pub headers: Vec<Header>,
}

impl ConsumerRecord {
    /// The value of the first header named `key`.
    pub fn header(&self, key: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value.as_ref())
    }
}

/// Encodes `records` as one v2 record batch with base offset 0.
pub fn encode_batch(
    records: &[ProducerRecord],
    codec: Codec,
    now_ms: i64,
) -> anyhow::Result<Bytes> {
    let protocol_records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let headers: IndexMap<StrBytes, Option<Bytes>> = r
                .headers
                .iter()
                .map(|h| (StrBytes::from_string(h.key.clone()), h.value.clone()))
                .collect();
            Record {
                transactional: false,
                control: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // offset - sequence must be constant for the encoder to keep one batch; this
                // makes the batch's base sequence -1 (no sequence), as non-idempotent clients send.
                sequence: (i as i32).wrapping_sub(1),
                timestamp: r.timestamp.unwrap_or(now_ms),
                key: r.key.clone(),
                value: r.value.clone(),
                headers,
                delete_horizon: false,
            }
        })
        .collect();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec.to_protocol(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode_with_custom_compression(
        &mut buf,
        &protocol_records,
        &options,
        Some(|raw: &mut BytesMut, out: &mut BytesMut, c: Compression| {
            compression::compress(c, raw, out)
        }),
    )?;
    Ok(buf.freeze())
}

/// Why a record set could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// A batch uses a codec this build cannot decode.
    #[error("unsupported codec {0}")]
    UnsupportedCodec(&'static str),
    /// A batch is malformed.
    #[error("batch at offset {offset}: {reason}")]
    Malformed {
        /// Base offset of the batch.
        offset: i64,
        /// Why.
        reason: String,
    },
}

/// What a record set decoded to.
#[derive(Debug, Default)]
pub struct DecodedRecords {
    /// Data records at or after the requested offset, in offset order.
    pub records: Vec<ConsumerRecord>,
    /// The offset after the last complete batch seen (control batches included), if any.
    pub next_offset: Option<i64>,
}

/// Size of a v2 batch header from the base offset to the record count inclusive.
const BATCH_HEADER_LEN: usize = 61;
/// Smallest possible encoded record (length, attributes, deltas, key, value, header count).
const MIN_RECORD_LEN: usize = 7;

/// Decodes the record batches in `data` (a fetch response's records) for `topic`/`partition`,
/// keeping records at or after `min_offset`. No batch may inflate past `max_inflated` bytes.
pub fn decode_batches(
    data: &Bytes,
    topic: &Arc<str>,
    partition: i32,
    min_offset: i64,
    max_inflated: usize,
) -> Result<DecodedRecords, RecordsError> {
    let mut out = DecodedRecords::default();
    let mut rest = data.clone();
    while rest.len() >= 12 {
        let base_offset = i64::from_be_bytes(rest[0..8].try_into().expect("8 bytes"));
        let malformed = |reason: String| RecordsError::Malformed {
            offset: base_offset,
            reason,
        };
        let batch_len = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        if batch_len < (BATCH_HEADER_LEN - 12) as i32 {
            return Err(malformed(format!(
                "batch length {batch_len} is below the header size"
            )));
        }
        let total = 12 + batch_len as usize;
        if rest.len() < total {
            break; // a trailing partial batch: the next fetch starts from it again
        }
        let batch = rest.split_to(total);
        let magic = batch[16] as i8;
        if magic != 2 {
            return Err(malformed(format!(
                "message format v{magic} is not supported (only v2)"
            )));
        }
        let attributes = i16::from_be_bytes([batch[21], batch[22]]);
        let last_offset_delta = i32::from_be_bytes(batch[23..27].try_into().expect("4 bytes"));
        let record_count = i32::from_be_bytes(batch[57..61].try_into().expect("4 bytes"));
        out.next_offset = Some(
            base_offset
                .saturating_add(last_offset_delta as i64)
                .saturating_add(1),
        );
        if attributes & 0x20 != 0 {
            continue; // control batch (transaction markers): not data
        }
        if record_count < 0 {
            return Err(malformed(format!("negative record count {record_count}")));
        }
        let min_body = (record_count as usize).saturating_mul(MIN_RECORD_LEN);
        let codec = attributes & 0x7;
        if codec == 0 && min_body > total - BATCH_HEADER_LEN {
            return Err(malformed(format!(
                "{record_count} records cannot fit in {} bytes",
                total - BATCH_HEADER_LEN
            )));
        }
        let mut batch_bytes = batch.clone();
        let decompress = |compressed: &mut Bytes, c: Compression| -> anyhow::Result<Bytes> {
            let inflated = compression::decompress(c, compressed, max_inflated)?;
            if inflated.len() < min_body {
                anyhow::bail!(
                    "{record_count} records cannot fit in {} inflated bytes",
                    inflated.len()
                );
            }
            Ok(inflated)
        };
        let set =
            RecordBatchDecoder::decode_with_custom_compression(&mut batch_bytes, Some(decompress))
                .map_err(|e| match e.downcast_ref::<DecompressError>() {
                    Some(DecompressError::Unsupported(name)) => {
                        RecordsError::UnsupportedCodec(name)
                    }
                    _ => malformed(format!("{e:#}")),
                })?;
        for r in set.records {
            if r.offset < min_offset {
                continue;
            }
            out.records.push(ConsumerRecord {
                topic: topic.clone(),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                log_append_time: r.timestamp_type == TimestampType::LogAppend,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| Header {
                        key: k.to_string(),
                        value: v,
                    })
                    .collect(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> Arc<str> {
        Arc::from("t")
    }

    fn sample() -> Vec<ProducerRecord> {
        vec![
            ProducerRecord::value("v0")
                .with_key("k0")
                .with_header("h", "x")
                .with_timestamp(1000),
            ProducerRecord {
                key: Some(Bytes::from_static(b"k1")),
                value: None,
                headers: vec![],
                timestamp: Some(1001),
            },
            ProducerRecord {
                key: None,
                value: Some(Bytes::new()),
                headers: vec![Header {
                    key: "n".into(),
                    value: None,
                }],
                timestamp: Some(999),
            },
        ]
    }

    #[test]
    fn batches_round_trip_with_every_codec() {
        for codec in Codec::ALL {
            let bytes = encode_batch(&sample(), codec, 0).unwrap();
            let decoded = decode_batches(&bytes, &topic(), 3, 0, 1 << 20).unwrap();
            assert_eq!(decoded.records.len(), 3, "{codec:?}");
            assert_eq!(decoded.next_offset, Some(3));
            for (i, (got, want)) in decoded.records.iter().zip(sample()).enumerate() {
                assert_eq!(got.offset, i as i64);
                assert_eq!(got.partition, 3);
                assert_eq!(
                    (got.key.clone(), got.value.clone(), got.timestamp),
                    (want.key, want.value, want.timestamp.unwrap())
                );
                assert_eq!(got.headers, want.headers);
            }
        }
    }

    #[test]
    fn a_trailing_partial_batch_is_dropped_and_earlier_offsets_skipped() {
        let mut two = BytesMut::from(&encode_batch(&sample(), Codec::None, 0).unwrap()[..]);
        let second = encode_batch(&sample(), Codec::None, 0).unwrap();
        two.extend_from_slice(&second[..second.len() - 5]);
        let decoded = decode_batches(&two.freeze(), &topic(), 0, 1, 1 << 20).unwrap();
        assert_eq!(
            decoded.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(decoded.next_offset, Some(3));
    }

    #[test]
    fn a_lying_record_count_is_refused_before_allocating() {
        let mut b = BytesMut::from(&encode_batch(&sample(), Codec::None, 0).unwrap()[..]);
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let err = decode_batches(&b.freeze(), &topic(), 0, 0, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("cannot fit"), "{err}");
    }

    #[test]
    fn a_corrupted_byte_fails_the_crc() {
        let mut b = BytesMut::from(&encode_batch(&sample(), Codec::None, 0).unwrap()[..]);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        let err = decode_batches(&b.freeze(), &topic(), 0, 0, 1 << 20).unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("cyclic redundancy"),
            "{err}"
        );
    }

    #[test]
    fn control_batches_are_skipped_but_advance_the_offset() {
        let mut b = BytesMut::from(&encode_batch(&sample(), Codec::None, 0).unwrap()[..]);
        b[22] |= 0x20; // control bit (the CRC is not checked for skipped batches)
        let decoded = decode_batches(&b.freeze(), &topic(), 0, 0, 1 << 20).unwrap();
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.next_offset, Some(3));
    }
}
