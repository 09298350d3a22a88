//! The records inside a v2 record batch (magic 2, KIP-98), read straight into
//! [`ConsumerRecord`]s as the Java client's `DefaultRecord.readFrom` reads them. Layout of one
//! record (varints are zigzag-encoded, as in the protocol's `VARINT`/`VARLONG`):
//!
//! ```text
//! length varint | attributes i8 | timestamp delta varlong | offset delta varint
//! | key: varint length (-1 null) + bytes | value: varint length (-1 null) + bytes
//! | header count varint | per header: key varint length + UTF-8, value varint length (-1 null) + bytes
//! ```
//!
//! Written here rather than taken from `kafka-protocol`'s `RecordBatchDecoder`, for two
//! reasons (and its varint readers with it: that crate keeps them private):
//! - Its records keep their headers in a map, which drops every header whose key repeats an
//!   earlier one's; Kafka allows repeated keys (Java's `Headers.add`), and a consumer must see
//!   them all, in order.
//! - It builds an intermediate record per record that was then copied into ours, and checks a
//!   CRC the caller checks anyway: about a third of krpc-kafka's fetch CPU per record in
//!   `wire-bench` (see BENCHMARKS.md).

use std::sync::Arc;

use bytes::{Buf, Bytes};

use super::{ConsumerRecord, Header};

/// Where the records of one batch come from: what each record's deltas are relative to.
pub(super) struct Batch<'a> {
    pub topic: &'a Arc<str>,
    pub partition: i32,
    pub base_offset: i64,
    /// The batch's first timestamp, which each record's timestamp delta adds to.
    pub base_timestamp: i64,
    /// Log append time: every record gets this (the batch's max timestamp, set by the broker)
    /// instead of its own, as the Java consumer gives it.
    pub log_append_time: Option<i64>,
}

/// Reads `count` records from `body` (the batch's records, inflated). A record that cannot be
/// read fails the whole batch with the reason; bytes after the last record are ignored.
pub(super) fn decode_records(
    batch: &Batch<'_>,
    mut body: Bytes,
    count: usize,
) -> Result<Vec<ConsumerRecord>, String> {
    // The count is untrusted: reserve no more records than the bytes can hold.
    let mut records = Vec::with_capacity(count.min(body.len() / super::MIN_RECORD_LEN + 1));
    for i in 0..count {
        let record = read_record(batch, &mut body).map_err(|e| format!("record {i}: {e}"))?;
        records.push(record);
    }
    Ok(records)
}

fn read_record(batch: &Batch<'_>, buf: &mut Bytes) -> Result<ConsumerRecord, String> {
    let size = varint(buf, "length")?;
    let size = usize::try_from(size).map_err(|_| format!("negative length {size}"))?;
    let mut record = take(buf, size, "its length")?;
    let _attributes = take(&mut record, 1, "attributes")?;
    let timestamp_delta = zigzag(&mut record, 10, "timestamp delta")?;
    let offset_delta = varint(&mut record, "offset delta")?;
    let key = nullable(&mut record, "key")?;
    let value = nullable(&mut record, "value")?;
    let header_count = varint(&mut record, "header count")?;
    let header_count = usize::try_from(header_count)
        .map_err(|_| format!("negative header count {header_count}"))?;
    // Untrusted as the record count: at most one header per two bytes left.
    let mut headers = Vec::with_capacity(header_count.min(record.len() / 2));
    for h in 0..header_count {
        let key_len = varint(&mut record, "header key length")?;
        let key_len = usize::try_from(key_len)
            .map_err(|_| format!("header {h}: negative key length {key_len}"))?;
        let key = take(&mut record, key_len, "a header key")?;
        let key = String::from_utf8(key.to_vec())
            .map_err(|e| format!("header {h}: the key is not UTF-8: {e}"))?;
        let value = nullable(&mut record, "header value")?;
        headers.push(Header { key, value });
    }
    // Wrapping, as the Java client adds them: the deltas are untrusted.
    let timestamp = batch
        .log_append_time
        .unwrap_or_else(|| batch.base_timestamp.wrapping_add(timestamp_delta));
    Ok(ConsumerRecord {
        topic: batch.topic.clone(),
        partition: batch.partition,
        offset: batch.base_offset.wrapping_add(offset_delta as i64),
        timestamp,
        log_append_time: batch.log_append_time.is_some(),
        key,
        value,
        headers,
    })
}

/// A zigzag varint of at most `max_bytes` bytes (5 for a `VARINT`, 10 for a `VARLONG`), as
/// Java's `ByteUtils.readVarint`/`readVarlong` read it: a longer one is an error.
fn zigzag(buf: &mut Bytes, max_bytes: u32, what: &str) -> Result<i64, String> {
    let mut raw: u64 = 0;
    for i in 0..max_bytes {
        if !buf.has_remaining() {
            return Err(format!("{what}: the varint is cut short"));
        }
        let byte = buf.get_u8();
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err(format!("{what}: a varint longer than {max_bytes} bytes"))
}

/// A `VARINT`: what does not fit 32 bits is an error.
fn varint(buf: &mut Bytes, what: &str) -> Result<i32, String> {
    let v = zigzag(buf, 5, what)?;
    i32::try_from(v).map_err(|_| format!("{what}: {v} is not a 32-bit varint"))
}

/// `len` bytes of `buf`, or why not (`what` names them).
fn take(buf: &mut Bytes, len: usize, what: &str) -> Result<Bytes, String> {
    if len > buf.len() {
        return Err(format!("{len} bytes of {what} but {} left", buf.len()));
    }
    Ok(buf.split_to(len))
}

/// A varint length then that many bytes; -1 is null.
fn nullable(buf: &mut Bytes, what: &str) -> Result<Option<Bytes>, String> {
    match varint(buf, what)? {
        -1 => Ok(None),
        len => match usize::try_from(len) {
            Ok(len) => take(buf, len, what).map(Some),
            Err(_) => Err(format!("{what}: negative length {len}")),
        },
    }
}
