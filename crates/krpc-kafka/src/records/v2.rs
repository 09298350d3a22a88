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

use bytes::Bytes;

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

/// Reads `count` records from `body` (the batch's records, inflated) onto the end of
/// `records`. A record that cannot be read fails the whole batch with the reason (the records
/// read before it are left for the caller to drop); bytes after the last record are ignored.
pub(super) fn decode_records(
    batch: &Batch<'_>,
    body: Bytes,
    count: usize,
    records: &mut Vec<ConsumerRecord>,
) -> Result<(), String> {
    // The count is untrusted: reserve no more records than the bytes can hold.
    records.reserve(count.min(body.len() / super::MIN_RECORD_LEN + 1));
    let mut at = 0;
    for i in 0..count {
        let record = read_record(batch, &body, &mut at).map_err(|e| format!("record {i}: {e}"))?;
        records.push(record);
    }
    Ok(())
}

/// A cursor over one record's bytes: `body[at..end]`. Keys and values are slices of `body`
/// (no copy); nothing else allocates but header keys.
struct Cursor<'a> {
    body: &'a Bytes,
    at: usize,
    end: usize,
}

impl Cursor<'_> {
    /// A zigzag varint of at most `max_bytes` bytes (5 for a `VARINT`, 10 for a `VARLONG`), as
    /// Java's `ByteUtils.readVarint`/`readVarlong` read it: a longer one is an error.
    fn zigzag(&mut self, max_bytes: u32, what: &str) -> Result<i64, String> {
        let mut raw: u64 = 0;
        for i in 0..max_bytes {
            if self.at >= self.end {
                return Err(format!("{what}: the varint is cut short"));
            }
            let byte = self.body[self.at];
            self.at += 1;
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(format!("{what}: a varint longer than {max_bytes} bytes"))
    }

    /// A `VARINT`: what does not fit 32 bits is an error.
    fn varint(&mut self, what: &str) -> Result<i32, String> {
        let v = self.zigzag(5, what)?;
        i32::try_from(v).map_err(|_| format!("{what}: {v} is not a 32-bit varint"))
    }

    /// A non-negative `VARINT` length.
    fn len(&mut self, what: &str) -> Result<usize, String> {
        let len = self.varint(what)?;
        usize::try_from(len).map_err(|_| format!("{what}: negative length {len}"))
    }

    /// The next `len` bytes' range, or why not (`what` names them).
    fn skip(&mut self, len: usize, what: &str) -> Result<std::ops::Range<usize>, String> {
        let left = self.end - self.at;
        if len > left {
            return Err(format!("{len} bytes of {what} but {left} left"));
        }
        self.at += len;
        Ok(self.at - len..self.at)
    }

    /// A varint length then that many bytes; -1 is null.
    fn nullable(&mut self, what: &str) -> Result<Option<Bytes>, String> {
        match self.varint(what)? {
            -1 => Ok(None),
            len => match usize::try_from(len) {
                Ok(len) => Ok(Some(self.body.slice(self.skip(len, what)?))),
                Err(_) => Err(format!("{what}: negative length {len}")),
            },
        }
    }
}

/// Reads the record at `*at` in `body`, moving `*at` past it.
fn read_record(batch: &Batch<'_>, body: &Bytes, at: &mut usize) -> Result<ConsumerRecord, String> {
    let mut outer = Cursor {
        body,
        at: *at,
        end: body.len(),
    };
    let size = outer.len("length")?;
    let range = outer.skip(size, "its length")?;
    *at = range.end;
    let mut c = Cursor {
        body,
        at: range.start,
        end: range.end,
    };
    c.skip(1, "attributes")?;
    let timestamp_delta = c.zigzag(10, "timestamp delta")?;
    let offset_delta = c.varint("offset delta")?;
    let key = c.nullable("key")?;
    let value = c.nullable("value")?;
    let header_count = c.varint("header count")?;
    let header_count = usize::try_from(header_count)
        .map_err(|_| format!("negative header count {header_count}"))?;
    // Untrusted as the record count: at most one header per two bytes left.
    let mut headers = Vec::with_capacity(header_count.min((c.end - c.at) / 2));
    for h in 0..header_count {
        let key_len = c.len("header key length")?;
        let key = c.skip(key_len, "a header key")?;
        let key = std::str::from_utf8(&body[key])
            .map_err(|e| format!("header {h}: the key is not UTF-8: {e}"))?
            .to_string();
        let value = c.nullable("header value")?;
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
