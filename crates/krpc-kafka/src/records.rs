//! Records as users see them, and their encoding into / decoding from v2 record batches.
//!
//! Decoding treats its input as hostile: batches are split by their length field (a trailing
//! partial batch, which a fetch may legally end with, is dropped), control batches are skipped,
//! record counts are checked against the bytes that hold them before anything is allocated, and
//! decompression is bounded.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::Compression;

use crate::compression::{self, Codec};

mod builder;
mod legacy;
mod v2;

pub(crate) use builder::BatchBuilder;

/// One record header. Kafka allows repeated keys: the producer writes every header given, in
/// order, and the consumer reads every one, in order (as the Java client and librdkafka do).
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
    /// Creation time in ms since the epoch; `None`: the time of the send (the producer reads
    /// its clock in `send`, as the Java producer does).
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

/// The idempotent producer's stamp on a batch (KIP-98): its producer id and epoch (from
/// InitProducerId) and the sequence number of its first record in its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) struct ProducerStamp {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence of the first record; the batch's records take the next ones in order. The
    /// caller keeps `base_sequence + records.len()` within `i32::MAX`.
    pub base_sequence: i32,
}

/// Encodes `records` as one v2 record batch with base offset 0, with no producer id (as a
/// non-idempotent producer writes).
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
#[cfg_attr(not(feature = "unstable-internals"), allow(dead_code))]
pub(crate) fn encode_batch(
    records: &[ProducerRecord],
    codec: Codec,
    now_ms: i64,
) -> anyhow::Result<Bytes> {
    encode_stamped_batch(records, codec, now_ms, None)
}

/// Encodes `records` as one v2 record batch with base offset 0, stamped with a producer id,
/// epoch and base sequence when `stamp` is given (idempotent produce).
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) fn encode_stamped_batch(
    records: &[ProducerRecord],
    codec: Codec,
    now_ms: i64,
    stamp: Option<ProducerStamp>,
) -> anyhow::Result<Bytes> {
    let mut builder =
        BatchBuilder::with_capacity(records.iter().map(ProducerRecord::encoded_size_bound).sum());
    for r in records {
        builder.push(r, || now_ms)?;
    }
    builder.encode(codec, stamp)
}

/// Why a record set could not be decoded.
#[derive(Debug, thiserror::Error)]
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) enum RecordsError {
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
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) struct DecodedRecords {
    /// Data records at or after the requested offset, in offset order.
    pub records: Vec<ConsumerRecord>,
    /// The offset after the last complete batch seen (control batches, aborted and undecodable
    /// ones included), if any. With read_committed it never passes the last stable offset.
    pub next_offset: Option<i64>,
    /// Complete batches (or old-format messages) that could not be decoded (unsupported codec,
    /// corrupt content, a size below the format's minimum); the entries around them are
    /// decoded all the same.
    pub undecodable: Vec<UndecodableBatch>,
    /// The first offset at or after the one asked for that no batch covers while a later
    /// batch was returned: a hole in the log (compaction removed it, or the broker showed a
    /// later batch before an earlier one was visible).
    pub first_gap: Option<i64>,
    /// Data batches dropped under read_committed because their transaction was aborted.
    pub aborted_batches: usize,
}

/// A batch whose records could not be read, and the offsets it spans.
#[derive(Debug)]
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) struct UndecodableBatch {
    /// Its base offset (for an old-format message: its own offset).
    pub base_offset: i64,
    /// The offset after it (for an entry whose layout is unknown: its base offset + 1).
    pub next_offset: i64,
    /// Why it could not be read.
    pub error: RecordsError,
    /// The entry exactly as the broker sent it (offset and size fields included), so it can
    /// be kept (a dead-letter topic) and recovered by hand.
    pub raw: Bytes,
}

/// What a read_committed fetch (Fetch v4+, KIP-98) needs to drop aborted transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) struct ReadCommitted {
    /// The response's aborted transactions of this partition: (producer id, first offset).
    pub aborted: Vec<(i64, i64)>,
    /// The partition's last stable offset; negative if the broker sent none.
    pub last_stable_offset: i64,
}

/// Size of a v2 batch header from the base offset to the record count inclusive.
pub(crate) const BATCH_HEADER_LEN: usize = 61;
/// Smallest possible encoded record (length, attributes, deltas, key, value, header count).
const MIN_RECORD_LEN: usize = 7;
/// Offset of the magic byte in every format (after base offset, size, and the v2 partition
/// leader epoch or the v0/v1 CRC).
const MAGIC_AT: usize = 16;

/// Decodes the record batches in `data` (a fetch response's records) for `topic`/`partition`,
/// keeping records at or after `min_offset`, as read_uncommitted does. No batch may inflate
/// past `max_inflated` bytes. See [`decode_fetched`].
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
#[cfg_attr(not(feature = "unstable-internals"), allow(dead_code))]
pub(crate) fn decode_batches(
    data: &Bytes,
    topic: &Arc<str>,
    partition: i32,
    min_offset: i64,
    max_inflated: usize,
) -> Result<DecodedRecords, RecordsError> {
    decode_fetched(data, topic, partition, min_offset, max_inflated, None)
}

/// Decodes a fetch response's records for `topic`/`partition`, keeping records at or after
/// `min_offset`, the way the Java consumer reads them:
///
/// - v2 record batches (magic 2) and old message sets (magic 0 and 1, compressed wrappers
///   included) in any mix; codecs none, gzip, snappy, lz4, zstd.
/// - Header attributes: the codec; the timestamp type (log append time: every record gets the
///   batch's max timestamp, which the broker set); control batches are never returned.
/// - `committed` (read_committed): a transactional data batch of a producer whose transaction
///   the response lists as aborted (from its first offset until that producer's next control
///   batch, its abort marker) is dropped, and nothing at or past the last stable offset is
///   returned or stepped over.
/// - An entry that cannot be read (unsupported codec, CRC mismatch, a size below its format's
///   minimum, unknown magic) is stepped over by its own size field and reported in
///   [`DecodedRecords::undecodable`] with its raw bytes; the entries after it are decoded.
///
/// Errors only when an entry's size field is negative (nothing after it can be located).
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) fn decode_fetched(
    data: &Bytes,
    topic: &Arc<str>,
    partition: i32,
    min_offset: i64,
    max_inflated: usize,
    committed: Option<&ReadCommitted>,
) -> Result<DecodedRecords, RecordsError> {
    let mut out = DecodedRecords::default();
    let mut rest = data.clone();
    // Offsets below this are accounted for by the batches seen so far.
    let mut covered = min_offset;
    let lso = committed
        .map(|c| c.last_stable_offset)
        .filter(|&lso| lso >= 0);
    let mut aborted_txns: Vec<(i64, i64)> = committed.map_or(Vec::new(), |c| c.aborted.clone());
    aborted_txns.sort_by_key(|&(_, first)| first);
    let mut aborted_txns = aborted_txns.into_iter().peekable();
    let mut aborted_producers = std::collections::HashSet::new();
    while rest.len() >= 12 {
        let base_offset = i64::from_be_bytes(rest[0..8].try_into().expect("8 bytes"));
        let malformed = |reason: String| RecordsError::Malformed {
            offset: base_offset,
            reason,
        };
        let size = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        let Ok(size) = usize::try_from(size) else {
            return Err(malformed(format!("negative batch length {size}")));
        };
        let total = 12usize.saturating_add(size);
        if rest.len() < total {
            break; // a trailing partial batch: the next fetch starts from it again
        }
        if lso.is_some_and(|lso| base_offset >= lso) {
            break; // read_committed: not stable yet
        }
        let entry = rest.split_to(total);
        let unreadable = |next_offset: i64, error: RecordsError| UndecodableBatch {
            base_offset,
            next_offset,
            error,
            raw: entry.clone(),
        };
        let Some(&magic) = entry.get(MAGIC_AT) else {
            out.undecodable.push(unreadable(
                base_offset.saturating_add(1),
                malformed(format!("an entry of {size} bytes has no magic byte")),
            ));
            out.next_offset = Some(base_offset.saturating_add(1));
            covered = covered.max(base_offset.saturating_add(1));
            continue;
        };
        // (first offset, next offset) the entry covers, and its records (v2 records go straight
        // into `out.records`, from `tail` on).
        let tail = out.records.len();
        let (start, next_offset, records) = match magic as i8 {
            0 | 1 => {
                let next = base_offset.saturating_add(1);
                match legacy::decode_entry(base_offset, &entry.slice(12..), max_inflated) {
                    Ok(messages) => {
                        let start = messages.first().map_or(base_offset, |m| m.offset);
                        let records = messages
                            .into_iter()
                            .map(|m| ConsumerRecord {
                                topic: topic.clone(),
                                partition,
                                offset: m.offset,
                                timestamp: m.timestamp,
                                log_append_time: m.log_append_time,
                                key: m.key,
                                value: m.value,
                                headers: Vec::new(),
                            })
                            .collect();
                        (start, next, records)
                    }
                    Err(e) => {
                        out.undecodable.push(unreadable(
                            next,
                            match e {
                                legacy::LegacyError::Malformed(reason) => {
                                    malformed(format!("message format v{magic}: {reason}"))
                                }
                            },
                        ));
                        (base_offset, next, Vec::new())
                    }
                }
            }
            2 => {
                if total < BATCH_HEADER_LEN {
                    let next = base_offset.saturating_add(1);
                    out.undecodable.push(unreadable(
                        next,
                        malformed(format!("batch length {size} is below the v2 header size")),
                    ));
                    (base_offset, next, Vec::new())
                } else {
                    let header = V2Header::read(&entry);
                    let next = base_offset
                        .saturating_add(header.last_offset_delta.max(0) as i64)
                        .saturating_add(1);
                    let mut skip_batch = header.control;
                    if committed.is_some() {
                        while let Some((pid, _)) = aborted_txns.next_if(|&(_, first)| first < next)
                        {
                            aborted_producers.insert(pid);
                        }
                        if header.control {
                            // The producer's marker ends its transaction. (Java removes the
                            // producer on an ABORT marker only; a COMMIT marker of a producer
                            // listed as aborted cannot precede that abort's marker in a valid
                            // log, so ending on any marker is the same.)
                            aborted_producers.remove(&header.producer_id);
                        } else if header.transactional
                            && aborted_producers.contains(&header.producer_id)
                        {
                            out.aborted_batches += 1;
                            skip_batch = true;
                        }
                    }
                    if skip_batch {
                        (base_offset, next, Vec::new())
                    } else {
                        let decoded = decode_v2(
                            &entry,
                            &header,
                            topic,
                            partition,
                            max_inflated,
                            &mut out.records,
                        );
                        match decoded {
                            Ok(()) => (base_offset, next, Vec::new()),
                            Err(reason) if v2_crc_holds(&entry) => {
                                // The batch is intact (an unsupported codec, an inflation past
                                // the limit): its header says where it ends.
                                out.undecodable.push(unreadable(next, reason));
                                (base_offset, next, Vec::new())
                            }
                            Err(reason) => {
                                // The CRC covers the last offset delta, so where a corrupt
                                // batch ends is unknown: up to where the next entry starts, or
                                // (the last entry of the response) one offset past the
                                // position, so no record after it is ever jumped over. The
                                // broker returns the same batch for each offset inside it, so
                                // it is reported once, when first met, and then stepped
                                // through.
                                let from = min_offset.max(base_offset);
                                let next = match rest.get(0..8) {
                                    Some(b) => i64::from_be_bytes(b.try_into().expect("8 bytes"))
                                        .clamp(from.saturating_add(1), next.max(from + 1)),
                                    None => from.saturating_add(1),
                                };
                                if base_offset >= min_offset {
                                    out.undecodable.push(unreadable(next, reason));
                                }
                                (base_offset, next, Vec::new())
                            }
                        }
                    }
                }
            }
            other => {
                let next = base_offset.saturating_add(1);
                out.undecodable.push(unreadable(
                    next,
                    malformed(format!("unknown message format (magic {other})")),
                ));
                (base_offset, next, Vec::new())
            }
        };
        let next_offset = match lso {
            Some(lso) => next_offset.min(lso),
            None => next_offset,
        };
        out.next_offset = Some(next_offset);
        if start > covered && out.first_gap.is_none() {
            out.first_gap = Some(covered);
        }
        covered = covered.max(next_offset);
        out.records.extend(records);
        let keep =
            |r: &ConsumerRecord| r.offset >= min_offset && lso.is_none_or(|lso| r.offset < lso);
        // Most entries keep every record: then nothing moves.
        if out.records[tail..].iter().any(|r| !keep(r)) {
            let entry_records = out.records.split_off(tail);
            out.records.extend(entry_records.into_iter().filter(keep));
        }
    }
    Ok(out)
}

/// Whether a v2 batch's CRC-32C (bytes 17..21, over everything from the attributes at byte 21
/// on) matches its content.
fn v2_crc_holds(entry: &[u8]) -> bool {
    entry.len() >= 21
        && crc32c::crc32c(&entry[21..])
            == u32::from_be_bytes(entry[17..21].try_into().expect("4 bytes"))
}

/// The v2 batch header fields the decoder acts on (KIP-98 layout).
struct V2Header {
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    record_count: i32,
    transactional: bool,
    control: bool,
}

impl V2Header {
    /// Reads the header of `batch`, which holds at least [`BATCH_HEADER_LEN`] bytes.
    fn read(batch: &[u8]) -> Self {
        let i16_at = |at: usize| i16::from_be_bytes([batch[at], batch[at + 1]]);
        let i32_at = |at: usize| i32::from_be_bytes(batch[at..at + 4].try_into().expect("4"));
        let i64_at = |at: usize| i64::from_be_bytes(batch[at..at + 8].try_into().expect("8"));
        let attributes = i16_at(21);
        Self {
            attributes,
            last_offset_delta: i32_at(23),
            base_timestamp: i64_at(27),
            max_timestamp: i64_at(35),
            producer_id: i64_at(43),
            record_count: i32_at(57),
            transactional: attributes & 0x10 != 0,
            control: attributes & 0x20 != 0,
        }
    }
}

/// Decodes the records of one complete v2 data batch onto the end of `out`: its CRC-32C
/// checked, its records inflated (within `max_inflated` bytes) and read
/// ([`v2::decode_records`]). On an error `out` is as it was.
fn decode_v2(
    batch: &Bytes,
    header: &V2Header,
    topic: &Arc<str>,
    partition: i32,
    max_inflated: usize,
    out: &mut Vec<ConsumerRecord>,
) -> Result<(), RecordsError> {
    let base_offset = i64::from_be_bytes(batch[0..8].try_into().expect("8 bytes"));
    let malformed = |reason: String| RecordsError::Malformed {
        offset: base_offset,
        reason,
    };
    if !v2_crc_holds(batch) {
        return Err(malformed(format!(
            "CRC-32C mismatch: the batch says {:#010x}, its bytes make {:#010x}",
            u32::from_be_bytes(batch[17..21].try_into().expect("4 bytes")),
            crc32c::crc32c(&batch[21..])
        )));
    }
    let record_count = header.record_count;
    let Ok(count) = usize::try_from(record_count) else {
        return Err(malformed(format!("negative record count {record_count}")));
    };
    let min_body = count.saturating_mul(MIN_RECORD_LEN);
    let body = batch.slice(BATCH_HEADER_LEN..);
    let codec = (header.attributes & 0x7) as u8;
    let body = match compression::from_attribute(codec) {
        Some(Compression::None) => body,
        Some(c) => compression::decompress(c, &body, max_inflated)
            .map_err(|e| malformed(format!("{e:#}")))?,
        None => return Err(malformed(format!("unknown compression codec {codec}"))),
    };
    if min_body > body.len() {
        let inflated = if codec == 0 { "" } else { "inflated " };
        return Err(malformed(format!(
            "{record_count} records cannot fit in {} {inflated}bytes",
            body.len()
        )));
    }
    let source = v2::Batch {
        topic,
        partition,
        base_offset,
        base_timestamp: header.base_timestamp,
        // A broker with message.timestamp.type=LogAppendTime sets the batch's max timestamp
        // and the attribute only; Java gives every record that timestamp.
        log_append_time: (header.attributes & 0x8 != 0).then_some(header.max_timestamp),
    };
    let before = out.len();
    v2::decode_records(&source, body, count, out).map_err(|reason| {
        out.truncate(before);
        malformed(reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

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

    /// The batch encoder this crate used before [`BatchBuilder`]: kafka-protocol's, from its
    /// `Record`s. The reference the builder's bytes are checked against.
    fn encode_with_kafka_protocol(
        records: &[ProducerRecord],
        codec: Codec,
        now_ms: i64,
        stamp: Option<ProducerStamp>,
    ) -> Bytes {
        use indexmap::IndexMap;
        use kafka_protocol::protocol::StrBytes;
        let protocol_records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: -1,
                producer_id: stamp.map_or(-1, |s| s.producer_id),
                producer_epoch: stamp.map_or(-1, |s| s.producer_epoch),
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: match stamp {
                    Some(s) => s.base_sequence + i as i32,
                    None => (i as i32).wrapping_sub(1),
                },
                timestamp: r.timestamp.unwrap_or(now_ms),
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|h| (StrBytes::from_string(h.key.clone()), h.value.clone()))
                    .collect::<IndexMap<_, _>>(),
                delete_horizon: false,
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
        )
        .unwrap();
        buf.freeze()
    }

    /// The hand-written batch encoder writes what kafka-protocol's encoder wrote (for records
    /// in timestamp order; that encoder takes the least timestamp as the base, the builder the
    /// first as Java does; and for header keys that do not repeat, which that encoder's map
    /// keeps once): nulls, empty values, timestamps left to the producer, large lengths
    /// (multi-byte varints), stamps, every codec.
    #[test]
    fn builder_writes_the_bytes_kafka_protocol_writes() {
        let big = Bytes::from(vec![7u8; 20_000]);
        let records = vec![
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
                headers: vec![
                    Header {
                        key: "n".into(),
                        value: None,
                    },
                    Header::new("a", "1"),
                    Header::new("b", big.clone()),
                ],
                timestamp: None,
            },
            ProducerRecord::value(big.clone())
                .with_key(big)
                .with_timestamp(1_000_000_000_000),
        ];
        let stamps = [
            None,
            Some(ProducerStamp {
                producer_id: 77,
                producer_epoch: 3,
                base_sequence: 41,
            }),
        ];
        for codec in Codec::ALL {
            for stamp in stamps {
                let want = encode_with_kafka_protocol(&records, codec, 1002, stamp);
                let got = encode_stamped_batch(&records, codec, 1002, stamp).unwrap();
                if codec == Codec::None {
                    assert_eq!(got, want, "{stamp:?}");
                } else {
                    // Compressors need not be deterministic across calls: compare what decodes.
                    let d = |b: &Bytes| decode_batches(b, &topic(), 0, 0, 1 << 24).unwrap().records;
                    assert_eq!(d(&got), d(&want), "{codec:?} {stamp:?}");
                    assert_eq!(got[21..61], want[21..61], "{codec:?}: same header fields");
                }
            }
        }
        // Re-encoding under another stamp (a retry after UNKNOWN_PRODUCER_ID) gives that
        // stamp's bytes, and the first encoding stays as it was.
        for codec in Codec::ALL {
            let mut b = BatchBuilder::with_capacity(0);
            for r in &records {
                b.push(r, || 1002).unwrap();
            }
            let first = b.encode(codec, stamps[1]).unwrap();
            let first_copy = first.to_vec();
            let again = b.encode(codec, None).unwrap();
            assert!(b.push(&records[0], || 0).is_err(), "sealed");
            assert_eq!(first, first_copy);
            let d = |b: &Bytes| decode_batches(b, &topic(), 0, 0, 1 << 24).unwrap().records;
            assert_eq!(d(&again), d(&first));
            if codec == Codec::None {
                assert_eq!(
                    again,
                    encode_with_kafka_protocol(&records, codec, 1002, None)
                );
            }
        }
    }

    /// A header key given more than once is written and read back each time, in order, with
    /// each value (Kafka allows it; Java and librdkafka keep every one). Before, the builder
    /// wrote a repeated key once (its first place, its last value) and the decoder, through
    /// kafka-protocol's map of headers, kept one of each key.
    #[test]
    fn repeated_header_keys_are_written_and_read_each_time_in_order() {
        let headers = vec![
            Header::new("a", "1"),
            Header {
                key: "n".into(),
                value: None,
            },
            Header::new("a", "2"),
            Header::new("n", "last"),
            Header::new("a", "3"),
        ];
        let record = ProducerRecord {
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: headers.clone(),
            timestamp: Some(5),
        };
        for codec in Codec::ALL {
            let bytes = encode_batch(std::slice::from_ref(&record), codec, 0).unwrap();
            let decoded = decode_batches(&bytes, &topic(), 0, 0, 1 << 20).unwrap();
            assert_eq!(decoded.records.len(), 1, "{codec:?}");
            assert_eq!(decoded.records[0].headers, headers, "{codec:?}");
        }
        // Batches librdkafka and kafka-python write with a repeated key: tests/tests/wire_interop.rs.
        let bytes = encode_batch(std::slice::from_ref(&record), Codec::None, 0).unwrap();
        let got = &decode_batches(&bytes, &topic(), 0, 0, 1 << 20)
            .unwrap()
            .records[0];
        assert_eq!(
            got.header("a").map(|v| &v[..]),
            Some(&b"1"[..]),
            "the first of a key"
        );
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
        fix_crc(&mut b); // as a producer that lies would send it: the CRC holds
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
        assert!(err.to_string().contains("CRC-32C mismatch"), "{err}");
    }

    /// A corrupt batch whose (CRC-covered) last offset delta is garbage never moves the
    /// position past records not returned: the last entry of a response is stepped one offset
    /// at a time, reported once; between entries it ends where the next one starts.
    #[test]
    fn a_corrupt_batch_with_a_garbage_offset_delta_jumps_over_nothing() {
        let good = encode_batch(&sample(), Codec::None, 0).unwrap();
        let mut bad = BytesMut::from(&good[..]);
        bad[0..8].copy_from_slice(&3i64.to_be_bytes());
        bad[23..27].copy_from_slice(&1_000_000i32.to_be_bytes()); // breaks the CRC too
        let alone = bad.clone().freeze();
        let decoded = decode_batches(&alone, &topic(), 0, 3, 1 << 20).unwrap();
        assert_eq!(decoded.next_offset, Some(4));
        assert_eq!(decoded.undecodable.len(), 1);
        // Fetched again from inside it: stepped on, not reported again.
        let again = decode_batches(&alone, &topic(), 0, 4, 1 << 20).unwrap();
        assert_eq!((again.next_offset, again.undecodable.len()), (Some(5), 0));
        // Followed by a good batch at 6: the corrupt one ends at 6.
        let mut third = BytesMut::from(&good[..]);
        third[0..8].copy_from_slice(&6i64.to_be_bytes());
        let mut both = bad.clone();
        both.extend_from_slice(&third);
        let decoded = decode_batches(&both.freeze(), &topic(), 0, 3, 1 << 20).unwrap();
        assert_eq!(decoded.undecodable[0].next_offset, 6);
        let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![6, 7, 8]);
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

    // ---- Old message formats (magic 0 and 1) ----

    use bytes::BufMut;
    use legacy::tests::entry;

    fn offsets(d: &DecodedRecords) -> Vec<i64> {
        d.records.iter().map(|r| r.offset).collect()
    }

    /// A v2 batch of `sample()` at `base`.
    fn v2_at(base: i64) -> Bytes {
        let mut b = BytesMut::from(&encode_batch(&sample(), Codec::None, 0).unwrap()[..]);
        b[0..8].copy_from_slice(&base.to_be_bytes());
        b.freeze()
    }

    fn concat(parts: &[&[u8]]) -> Bytes {
        parts.concat().into()
    }

    /// The fault of issue 11: a short magic-0 message (null key, 3-byte value) at offset 5, then
    /// a valid v2 batch at offset 6. The old decoder failed the whole response ("batch length
    /// ... is below the header size") and never returned the v2 records.
    #[test]
    fn a_magic_0_message_before_a_v2_batch_is_decoded_and_so_is_the_batch() {
        let old = entry(5, 0, 0, 0, None, Some(b"abc"));
        let data = concat(&[&old, &v2_at(6)]);
        let d = decode_batches(&data, &topic(), 0, 5, 1 << 20).unwrap();
        assert!(d.undecodable.is_empty(), "{:?}", d.undecodable);
        assert_eq!(offsets(&d), vec![5, 6, 7, 8]);
        assert_eq!(d.records[0].key, None);
        assert_eq!(d.records[0].value.as_deref(), Some(&b"abc"[..]));
        assert_eq!(d.records[0].timestamp, -1, "magic 0 has no timestamp");
        assert_eq!(d.next_offset, Some(9));
    }

    #[test]
    fn magic_1_messages_carry_their_timestamp_and_type() {
        let create = entry(0, 1, 0, 1234, Some(b"k"), Some(b"v"));
        let append = entry(1, 1, 0x08, 5678, None, None);
        let d = decode_batches(&concat(&[&create, &append]), &topic(), 0, 0, 1 << 20).unwrap();
        assert_eq!(offsets(&d), vec![0, 1]);
        assert_eq!(
            (d.records[0].timestamp, d.records[0].log_append_time),
            (1234, false)
        );
        assert_eq!(
            (d.records[1].timestamp, d.records[1].log_append_time),
            (5678, true)
        );
        assert_eq!(d.records[1].value, None);
    }

    /// A compressed wrapper message as Kafka stores it: inner offsets absolute (magic 0) or
    /// relative with the wrapper at the last inner offset (magic 1, KIP-31).
    fn wrapper(magic: u8, codec: Compression, wrapper_ts: i64, ts_type: u8) -> Bytes {
        // The wrapper sits at offset 12, the last inner message's offset.
        let first = if magic == 0 { 10 } else { 0 };
        let mut inner = BytesMut::new();
        for i in 0..3i64 {
            let value = format!("inner-{i}");
            inner.put_slice(&entry(
                first + i,
                magic,
                0,
                100 + i,
                None,
                Some(value.as_bytes()),
            ));
        }
        let mut compressed = BytesMut::new();
        compression::compress(codec, &inner, &mut compressed).unwrap();
        if magic == 0 && codec == Compression::Lz4 {
            // KAFKA-3160: Kafka 0.8/0.9 computed the descriptor checksum over the magic too.
            compressed[6] = (twox_hash::XxHash32::oneshot(0, &compressed[0..6]) >> 8) as u8;
        }
        let attrs = ts_type | compression_attr(codec);
        entry(12, magic, attrs, wrapper_ts, None, Some(&compressed))
    }

    fn compression_attr(c: Compression) -> u8 {
        match c {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    #[test]
    fn compressed_wrapper_messages_of_both_old_formats_decode_with_kafkas_offsets() {
        for magic in [0u8, 1] {
            for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
                let data = concat(&[&wrapper(magic, codec, 999, 0), &v2_at(13)]);
                let d = decode_batches(&data, &topic(), 0, 11, 1 << 20).unwrap();
                assert!(
                    d.undecodable.is_empty(),
                    "v{magic} {codec:?}: {:?}",
                    d.undecodable
                );
                assert_eq!(offsets(&d), vec![11, 12, 13, 14, 15], "v{magic} {codec:?}");
                assert_eq!(d.records[0].value.as_deref(), Some(&b"inner-1"[..]));
                let want_ts = if magic == 0 { -1 } else { 101 };
                assert_eq!(d.records[0].timestamp, want_ts, "v{magic} {codec:?}");
                assert_eq!(d.first_gap, None, "v{magic} {codec:?}");
            }
        }
    }

    #[test]
    fn a_log_append_time_wrapper_gives_its_time_to_the_inner_messages() {
        let d = decode_batches(
            &wrapper(1, Compression::Gzip, 4242, 0x08),
            &topic(),
            0,
            0,
            1 << 20,
        )
        .unwrap();
        assert_eq!(offsets(&d), vec![10, 11, 12]);
        assert!(d
            .records
            .iter()
            .all(|r| r.timestamp == 4242 && r.log_append_time));
    }

    #[test]
    fn an_undecodable_old_message_is_stepped_over_with_its_raw_bytes() {
        let mut bad = BytesMut::from(&entry(5, 0, 0, 0, None, Some(b"abc"))[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff; // CRC mismatch
        let short_v2 = {
            // A "batch" of magic 2 shorter than the v2 header, at offset 6.
            let mut b = BytesMut::new();
            b.put_i64(6);
            b.put_i32(9);
            b.put_i32(0);
            b.put_u8(2);
            b.put_u32(0);
            b
        };
        let data = concat(&[&bad, &short_v2, &v2_at(7)]);
        let d = decode_batches(&data, &topic(), 0, 5, 1 << 20).unwrap();
        assert_eq!(offsets(&d), vec![7, 8, 9]);
        assert_eq!(d.undecodable.len(), 2);
        assert!(
            d.undecodable[0].error.to_string().contains("CRC"),
            "{}",
            d.undecodable[0].error
        );
        assert_eq!(&d.undecodable[0].raw[..], &bad[..]);
        assert_eq!(
            (d.undecodable[1].base_offset, d.undecodable[1].next_offset),
            (6, 7)
        );
        assert_eq!(d.next_offset, Some(10));
    }

    #[test]
    fn a_negative_size_is_an_error_not_a_loop() {
        let mut b = BytesMut::new();
        b.put_i64(0);
        b.put_i32(-5);
        b.put_slice(&[0u8; 20]);
        assert!(decode_batches(&b.freeze(), &topic(), 0, 0, 1 << 20).is_err());
    }

    // ---- v2 batch header attributes, crafted as a broker stores or rewrites them ----

    /// A v2 batch as a transactional/idempotent producer or a transaction coordinator writes
    /// it: records at offsets `base..`, with the given producer id and attribute bits.
    fn kafka_batch(
        base: i64,
        values: &[&str],
        producer_id: i64,
        transactional: bool,
        control: bool,
    ) -> Bytes {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional,
                control,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                sequence: i as i32,
                timestamp: 1000,
                key: control.then(|| Bytes::from_static(&[0, 0, 0, 0])), // v0, ABORT
                value: if control {
                    Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])) // v0, coordinator epoch 0
                } else {
                    Some(Bytes::copy_from_slice(v.as_bytes()))
                },
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    /// Rewrites the CRC-32C over attributes..end after a header field was changed.
    fn fix_crc(b: &mut BytesMut) {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn attribute_codec_every_codec_is_read() {
        // zstd included: it used to be an UnsupportedCodec error.
        for codec in Codec::ALL {
            let b = encode_batch(&sample(), codec, 0).unwrap();
            assert_eq!(
                i16::from_be_bytes([b[21], b[22]]) & 7,
                codec_attr(codec),
                "{codec:?}"
            );
            let d = decode_batches(&b, &topic(), 0, 0, 1 << 20).unwrap();
            assert_eq!(d.records.len(), 3, "{codec:?}");
        }
        // Codec 5-7 do not exist: stepped over, never garbage.
        let mut b = BytesMut::from(&encode_batch(&sample(), Codec::None, 0).unwrap()[..]);
        b[22] |= 0x07;
        fix_crc(&mut b);
        let d = decode_batches(&b.freeze(), &topic(), 0, 0, 1 << 20).unwrap();
        assert!(d.records.is_empty());
        assert_eq!(d.undecodable.len(), 1);
    }

    fn codec_attr(c: Codec) -> i16 {
        compression_attr(c.to_protocol()) as i16
    }

    #[test]
    fn attribute_log_append_time_gives_every_record_the_brokers_time() {
        // The broker (message.timestamp.type=LogAppendTime) sets the attribute and the max
        // timestamp, and leaves the records' creation-time deltas as they were.
        let mut b = BytesMut::from(&encode_batch(&sample(), Codec::None, 0).unwrap()[..]);
        b[22] |= 0x08;
        b[35..43].copy_from_slice(&777_000i64.to_be_bytes());
        fix_crc(&mut b);
        let d = decode_batches(&b.freeze(), &topic(), 0, 0, 1 << 20).unwrap();
        assert_eq!(d.records.len(), 3);
        for r in &d.records {
            assert_eq!((r.timestamp, r.log_append_time), (777_000, true));
        }
        let plain = decode_batches(
            &encode_batch(&sample(), Codec::None, 0).unwrap(),
            &topic(),
            0,
            0,
            1 << 20,
        )
        .unwrap();
        assert_eq!(plain.records[0].timestamp, 1000);
        assert!(!plain.records[0].log_append_time);
    }

    /// c1 (plain) | txn a1 of producer 7 | abort marker of 7 | c2 (plain), as Apache Kafka
    /// stores "produce c1; begin, produce a1, abort; produce c2", with the response's aborted
    /// transaction list [(7, 1)].
    fn aborted_log() -> (Bytes, ReadCommitted) {
        let data = concat(&[
            &kafka_batch(0, &["c1"], -1, false, false),
            &kafka_batch(1, &["a1"], 7, true, false),
            &kafka_batch(2, &[""], 7, true, true),
            &kafka_batch(3, &["c2"], -1, false, false),
        ]);
        let rc = ReadCommitted {
            aborted: vec![(7, 1)],
            last_stable_offset: 4,
        };
        (data, rc)
    }

    fn values(d: &DecodedRecords) -> Vec<String> {
        d.records
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .collect()
    }

    #[test]
    fn attribute_transactional_aborted_batches_are_dropped_under_read_committed() {
        let (data, rc) = aborted_log();
        let uncommitted = decode_batches(&data, &topic(), 0, 0, 1 << 20).unwrap();
        assert_eq!(values(&uncommitted), ["c1", "a1", "c2"]);
        let committed = decode_fetched(&data, &topic(), 0, 0, 1 << 20, Some(&rc)).unwrap();
        assert_eq!(values(&committed), ["c1", "c2"]);
        assert_eq!(committed.aborted_batches, 1);
        assert_eq!(committed.next_offset, Some(4));
    }

    #[test]
    fn a_later_committed_transaction_of_an_aborting_producer_is_kept() {
        // Producer 7: t1 = [1] aborted (marker at 2), t2 = [3] committed (marker at 4).
        let data = concat(&[
            &kafka_batch(1, &["a1"], 7, true, false),
            &kafka_batch(2, &[""], 7, true, true),
            &kafka_batch(3, &["t2"], 7, true, false),
            &kafka_batch(4, &[""], 7, true, true),
        ]);
        let rc = ReadCommitted {
            aborted: vec![(7, 1)],
            last_stable_offset: 5,
        };
        let d = decode_fetched(&data, &topic(), 0, 1, 1 << 20, Some(&rc)).unwrap();
        assert_eq!(values(&d), ["t2"]);
        assert_eq!(d.next_offset, Some(5));
    }

    #[test]
    fn attribute_control_batches_are_never_records() {
        let (data, rc) = aborted_log();
        for committed in [None, Some(&rc)] {
            let d = decode_fetched(&data, &topic(), 0, 0, 1 << 20, committed).unwrap();
            assert!(d.records.iter().all(|r| r.offset != 2), "{committed:?}");
        }
    }

    #[test]
    fn read_committed_stops_at_the_last_stable_offset() {
        // An open transaction at 1: the LSO is 1; nothing from 1 on is returned or passed.
        let data = concat(&[
            &kafka_batch(0, &["c1"], -1, false, false),
            &kafka_batch(1, &["open"], 9, true, false),
            &kafka_batch(2, &["c2"], -1, false, false),
        ]);
        let rc = ReadCommitted {
            aborted: vec![],
            last_stable_offset: 1,
        };
        let d = decode_fetched(&data, &topic(), 0, 0, 1 << 20, Some(&rc)).unwrap();
        assert_eq!(values(&d), ["c1"]);
        assert_eq!(d.next_offset, Some(1));
    }

    /// A bounded stand-in for the fuzz target in every `cargo test`: random byte mutations of
    /// old-format inputs (with their CRC-32 made valid again, so the mutation reaches the
    /// parser) are records or reported entries, never a panic.
    #[test]
    fn mutated_old_format_messages_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut seeds = vec![concat(&[&entry(5, 0, 0, 0, None, Some(b"abc")), &v2_at(6)])];
        for magic in [0u8, 1] {
            for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
                seeds.push(wrapper(magic, codec, 5, 0));
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..20_000 {
            let mut input = seeds[round % seeds.len()].to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..input.len());
                input[at] = rng.random();
            }
            if input.len() > 16 && input[16] <= 1 {
                let end = (12
                    + i32::from_be_bytes(input[8..12].try_into().unwrap()).max(5) as usize)
                    .min(input.len());
                if end > 16 {
                    let crc = crc32fast::hash(&input[16..end]);
                    input[12..16].copy_from_slice(&crc.to_be_bytes());
                }
            }
            let _ = decode_batches(&Bytes::from(input), &topic(), 0, 0, 1 << 16);
        }
    }

    /// Mutated and truncated v2 batches (their CRC-32C made valid again, so the mutation
    /// reaches the record decoder) are records or a reported entry, never a panic; and the
    /// record decoder's refusals name what was wrong.
    #[test]
    fn mutated_v2_records_never_panic_and_refusals_say_why() {
        use rand::{Rng, SeedableRng};
        let fix_crc = |b: &mut Vec<u8>| {
            if b.len() >= 21 {
                let crc = crc32c::crc32c(&b[21..]);
                b[17..21].copy_from_slice(&crc.to_be_bytes());
            }
        };
        let seed = encode_batch(&sample(), Codec::None, 0).unwrap().to_vec();
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for round in 0..20_000 {
            let mut input = seed.clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(BATCH_HEADER_LEN..input.len());
                input[at] = rng.random();
            }
            if round % 4 == 0 {
                // A batch cut short inside its records, its size field saying so.
                let len = rng.random_range(BATCH_HEADER_LEN..input.len());
                input.truncate(len);
                input[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
            }
            fix_crc(&mut input);
            let _ = decode_batches(&Bytes::from(input), &topic(), 0, 0, 1 << 16);
        }
        // One record, its fields written by hand: each refusal names its field.
        let record = |body: &[u8]| {
            let mut b = seed[..BATCH_HEADER_LEN].to_vec();
            b[57..61].copy_from_slice(&1i32.to_be_bytes());
            b[21..23].copy_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(body);
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            fix_crc(&mut b);
            let decoded = decode_batches(&Bytes::from(b), &topic(), 0, 0, 1 << 16).unwrap();
            match decoded.undecodable.first() {
                Some(u) => Err(u.error.to_string()),
                None => Ok(decoded.records),
            }
        };
        // length 6 (zigzag 12): attributes, deltas 0, key -1 (zigzag 1), value -1, no headers.
        let ok = record(&[12, 0, 0, 0, 1, 1, 0]).expect("a minimal record");
        assert_eq!((ok[0].key.clone(), ok[0].value.clone()), (None, None));
        let cases: [(&[u8], &str); 5] = [
            (
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0, 0, 0],
                "longer than 5 bytes",
            ),
            (&[12, 0, 0, 0, 3, 1, 0], "key: negative length -2"),
            (&[40, 0, 0, 0, 1, 1, 0], "bytes of its length"),
            (&[18, 0, 0, 0, 1, 1, 2, 2, 0xff, 1], "not UTF-8"),
            (&[12, 0, 0, 0, 1, 1, 1], "negative header count"),
        ];
        for (body, why) in cases {
            let err = record(body).expect_err(why);
            assert!(
                err.contains(why) && err.contains("record 0"),
                "{why}: {err}"
            );
        }
    }
}
