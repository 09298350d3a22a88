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
    /// The offset after the last complete batch seen (control batches and undecodable ones
    /// included), if any.
    pub next_offset: Option<i64>,
    /// Complete batches that could not be decoded (unsupported codec, corrupt content); the
    /// batches around them are decoded all the same.
    pub undecodable: Vec<UndecodableBatch>,
    /// The first offset at or after the one asked for that no batch covers while a later
    /// batch was returned: a hole in the log (compaction removed it, or the broker showed a
    /// later batch before an earlier one was visible).
    pub first_gap: Option<i64>,
}

/// A batch whose records could not be read, and the offsets it spans.
#[derive(Debug)]
pub struct UndecodableBatch {
    /// Its base offset.
    pub base_offset: i64,
    /// The offset after it.
    pub next_offset: i64,
    /// Why it could not be read.
    pub error: RecordsError,
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
    // Offsets below this are accounted for by the batches seen so far.
    let mut covered = min_offset;
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
        let attributes = i16::from_be_bytes([batch[21], batch[22]]);
        let last_offset_delta = i32::from_be_bytes(batch[23..27].try_into().expect("4 bytes"));
        let record_count = i32::from_be_bytes(batch[57..61].try_into().expect("4 bytes"));
        let next_offset = base_offset
            .saturating_add(last_offset_delta.max(0) as i64)
            .saturating_add(1);
        out.next_offset = Some(next_offset);
        if base_offset > covered && out.first_gap.is_none() {
            out.first_gap = Some(covered);
        }
        covered = covered.max(next_offset);
        let mut skip = |error: RecordsError| {
            out.undecodable.push(UndecodableBatch {
                base_offset,
                next_offset,
                error,
            });
        };
        let magic = batch[16] as i8;
        if magic != 2 {
            skip(malformed(format!(
                "message format v{magic} is not supported (only v2)"
            )));
            continue;
        }
        if attributes & 0x20 != 0 {
            continue; // control batch (transaction markers): not data
        }
        if record_count < 0 {
            skip(malformed(format!("negative record count {record_count}")));
            continue;
        }
        let min_body = (record_count as usize).saturating_mul(MIN_RECORD_LEN);
        let codec = attributes & 0x7;
        if codec == 0 && min_body > total - BATCH_HEADER_LEN {
            skip(malformed(format!(
                "{record_count} records cannot fit in {} bytes",
                total - BATCH_HEADER_LEN
            )));
            continue;
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
        let set = match RecordBatchDecoder::decode_with_custom_compression(
            &mut batch_bytes,
            Some(decompress),
        ) {
            Ok(set) => set,
            Err(e) => {
                skip(match e.downcast_ref::<DecompressError>() {
                    Some(DecompressError::Unsupported(name)) => {
                        RecordsError::UnsupportedCodec(name)
                    }
                    _ => malformed(format!("{e:#}")),
                });
                continue;
            }
        };
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
        let decoded = decode_batches(&b.freeze(), &topic(), 0, 0, 1 << 20).unwrap();
        assert!(decoded.records.is_empty());
        let err = &decoded.undecodable[0].error;
        assert!(err.to_string().contains("cannot fit"), "{err}");
        assert_eq!(
            decoded.next_offset,
            Some(3),
            "the bad batch is stepped over"
        );
    }

    #[test]
    fn a_corrupted_byte_fails_the_crc() {
        let mut b = BytesMut::from(&encode_batch(&sample(), Codec::None, 0).unwrap()[..]);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        let decoded = decode_batches(&b.freeze(), &topic(), 0, 0, 1 << 20).unwrap();
        let err = &decoded.undecodable[0].error;
        assert!(
            err.to_string().to_lowercase().contains("cyclic redundancy"),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_batch_between_good_ones_is_stepped_over() {
        let good = encode_batch(&sample(), Codec::None, 0).unwrap();
        let mut bad = BytesMut::from(&good[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        bad[0..8].copy_from_slice(&3i64.to_be_bytes());
        let mut third = BytesMut::from(&good[..]);
        third[0..8].copy_from_slice(&6i64.to_be_bytes());
        let mut all = BytesMut::from(&good[..]);
        all.extend_from_slice(&bad);
        all.extend_from_slice(&third);
        let decoded = decode_batches(&all.freeze(), &topic(), 0, 0, 1 << 20).unwrap();
        let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![0, 1, 2, 6, 7, 8]);
        assert_eq!(decoded.undecodable.len(), 1);
        assert_eq!(
            (
                decoded.undecodable[0].base_offset,
                decoded.undecodable[0].next_offset
            ),
            (3, 6)
        );
        assert_eq!(decoded.next_offset, Some(9));
    }

    fn unhex(s: &str) -> Bytes {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
            .into()
    }

    /// Inputs found by the `record_batches` fuzz target (valid CRCs, hostile fields).
    #[test]
    fn fuzz_found_batches_are_errors_or_records_never_panics_or_aborts() {
        let cases = [
            // first timestamp i64::MAX, record timestamp delta +1: overflowed in kafka-protocol
            "0000000000000000000000380000000002babae7af0000000000007fffffffffffffff7fffffffffffffffffffffffffffffffffffffffffff000000010c000200010100",
            // base offset i64::MIN, offset delta -1
            "8000000000000000000000380000000002e9fe38cb00000000000000000000000000000000000000000000ffffffffffffffffffffffffffff000000010c000001010100",
            // a record claiming 2^31 headers: reserved 38 GB in kafka-protocol
            "00000000000000000000003c0000000002c36e3f7900000000000000000000000000000000000000000000ffffffffffffffffffffffffffff00000001140000000101feffffff0f",
        ];
        for case in cases {
            let _ = decode_batches(&unhex(case), &topic(), 0, 0, 1 << 20);
        }
    }

    #[test]
    fn a_hole_before_a_batch_is_reported() {
        let mut b = BytesMut::from(&encode_batch(&sample(), Codec::None, 0).unwrap()[..]);
        b[0..8].copy_from_slice(&10i64.to_be_bytes());
        let decoded = decode_batches(&b.freeze(), &topic(), 0, 7, 1 << 20).unwrap();
        assert_eq!(decoded.first_gap, Some(7), "offsets 7..10 are missing");
        let whole = encode_batch(&sample(), Codec::None, 0).unwrap();
        assert_eq!(
            decode_batches(&whole, &topic(), 0, 1, 1 << 20)
                .unwrap()
                .first_gap,
            None,
            "a batch starting below the asked offset is no hole"
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
