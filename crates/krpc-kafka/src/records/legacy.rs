//! Old-format message sets: magic 0 (Kafka 0.8-0.9) and magic 1 (0.10, KIP-32 timestamps),
//! including compressed wrapper messages, read as the Java client's `AbstractLegacyRecordBatch`
//! reads them.
//!
//! A 0.11+ broker hands these out unchanged when a producer wrote them with an old Produce
//! version or the topic has an old `message.format.version`. Layout of one entry (after its
//! offset and size):
//!
//! ```text
//! crc u32 (CRC-32 of magic..end) | magic i8 | attributes i8 | [timestamp i64, magic 1 only]
//! | key: i32 length (-1 null) + bytes | value: i32 length (-1 null) + bytes
//! ```
//!
//! Attributes: bits 0-2 codec (gzip 1, snappy 2, lz4 3; zstd is never valid here), bit 3 the
//! timestamp type (magic 1: log append time). A compressed message's value is a compressed
//! message set whose inner offsets are absolute (magic 0) or relative to the wrapper, whose own
//! offset is that of the last inner message (magic 1, KIP-31).
//!
//! Hand-written: no Rust crate decodes the legacy format (kafka-protocol 0.18 stops at it).

use bytes::Bytes;
use kafka_protocol::records::Compression;

use crate::compression;

/// One message read from an old-format message set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LegacyMessage {
    pub offset: i64,
    /// -1 (Java's `NO_TIMESTAMP`) for magic 0.
    pub timestamp: i64,
    pub log_append_time: bool,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// Why one legacy entry could not be read.
#[derive(Debug)]
pub(crate) enum LegacyError {
    Malformed(String),
}

/// Size of a magic-0 message body (crc, magic, attributes, key length, value length).
const MIN_V0: usize = 14;
/// The same for magic 1 (plus the timestamp).
const MIN_V1: usize = 22;

/// Decodes the message `body` (everything after the entry's offset and size) found at shallow
/// offset `offset`. A compressed wrapper yields its inner messages; no inner set may inflate
/// past `max_inflated` bytes.
pub(crate) fn decode_entry(
    offset: i64,
    body: &Bytes,
    max_inflated: usize,
) -> Result<Vec<LegacyMessage>, LegacyError> {
    let (wrapper, codec, _) = decode_message(offset, body)?;
    if codec == 0 {
        return Ok(vec![wrapper]);
    }
    let compression = match compression::from_attribute(codec) {
        Some(Compression::Zstd) => {
            return Err(LegacyError::Malformed(
                "zstd is not allowed in message format v0/v1".into(),
            ))
        }
        Some(c) => c,
        None => return Err(LegacyError::Malformed(format!("unknown codec {codec}"))),
    };
    let magic = body[4];
    let value = wrapper
        .value
        .clone()
        .ok_or_else(|| LegacyError::Malformed("compressed message with a null value".into()))?;
    let fixed;
    let compressed: &[u8] = if compression == Compression::Lz4 && magic == 0 {
        fixed = fix_kafka_3160_lz4_header(&value);
        &fixed
    } else {
        &value
    };
    let inflated = compression::decompress(compression, compressed, max_inflated)
        .map_err(|e| LegacyError::Malformed(e.to_string()))?;
    let mut cursor = 0;
    let mut inner = Vec::new();
    while cursor < inflated.len() {
        let head = inflated
            .get(cursor..cursor + 12)
            .ok_or_else(|| LegacyError::Malformed("truncated inner message header".into()))?;
        let inner_offset = i64::from_be_bytes(head[0..8].try_into().expect("8 bytes"));
        let size = i32::from_be_bytes(head[8..12].try_into().expect("4 bytes"));
        let size = usize::try_from(size)
            .map_err(|_| LegacyError::Malformed(format!("inner message size {size}")))?;
        let start = cursor + 12;
        let end = start
            .checked_add(size)
            .filter(|&end| end <= inflated.len())
            .ok_or_else(|| LegacyError::Malformed("truncated inner message".into()))?;
        let (msg, inner_codec, _) = decode_message(inner_offset, &inflated.slice(start..end))?;
        if inner_codec != 0 {
            return Err(LegacyError::Malformed(
                "a compressed message nested in a compressed message".into(),
            ));
        }
        inner.push(msg);
        cursor = end;
    }
    let Some(last) = inner.last().map(|m| m.offset) else {
        return Err(LegacyError::Malformed(
            "compressed message with no inner messages".into(),
        ));
    };
    if magic > 0 {
        // KIP-31: inner offsets are relative; the wrapper carries the last one's absolute offset.
        let base = offset.wrapping_sub(last);
        for m in &mut inner {
            m.offset = base.wrapping_add(m.offset);
            if wrapper.log_append_time {
                // The broker stamps only the wrapper; Java gives its time to every inner record.
                m.timestamp = wrapper.timestamp;
                m.log_append_time = true;
            }
        }
    }
    Ok(inner)
}

/// Parses one message body; returns it, its codec, and the number of bytes read.
fn decode_message(offset: i64, body: &Bytes) -> Result<(LegacyMessage, u8, usize), LegacyError> {
    let malformed = |s: String| LegacyError::Malformed(s);
    if body.len() < MIN_V0 {
        return Err(malformed(format!(
            "message of {} bytes is below the minimum of {MIN_V0}",
            body.len()
        )));
    }
    let magic = body[4];
    let min = match magic {
        0 => MIN_V0,
        1 => MIN_V1,
        other => return Err(malformed(format!("magic {other} in a legacy message set"))),
    };
    if body.len() < min {
        return Err(malformed(format!(
            "magic-{magic} message of {} bytes is below the minimum of {min}",
            body.len()
        )));
    }
    let stored = u32::from_be_bytes(body[0..4].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(&body[4..]);
    if stored != computed {
        return Err(malformed(format!(
            "CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )));
    }
    let attributes = body[5];
    let mut pos = 6;
    let timestamp = if magic == 1 {
        pos += 8;
        i64::from_be_bytes(body[6..14].try_into().expect("8 bytes"))
    } else {
        -1
    };
    let mut bytes_field = |what: &str| -> Result<Option<Bytes>, LegacyError> {
        let len_bytes = body
            .get(pos..pos + 4)
            .ok_or_else(|| malformed(format!("truncated {what} length")))?;
        let len = i32::from_be_bytes(len_bytes.try_into().expect("4 bytes"));
        pos += 4;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| malformed(format!("{what} length {len}")))?;
        let end = pos
            .checked_add(len)
            .filter(|&end| end <= body.len())
            .ok_or_else(|| malformed(format!("{what} of {len} bytes overruns the message")))?;
        let out = body.slice(pos..end);
        pos = end;
        Ok(Some(out))
    };
    let key = bytes_field("key")?;
    let value = bytes_field("value")?;
    if pos != body.len() {
        return Err(malformed(format!(
            "{} bytes after the value",
            body.len() - pos
        )));
    }
    let message = LegacyMessage {
        offset,
        timestamp,
        log_append_time: magic == 1 && attributes & 0x08 != 0,
        key,
        value,
    };
    Ok((message, attributes & 0x07, pos))
}

/// Kafka before 0.10 wrote the lz4 frame descriptor checksum over the magic number too
/// (KAFKA-3160); Java ignores that byte for magic 0. lz4_flex checks it, so rewrite it to the
/// checksum of the descriptor as the lz4 frame format defines it.
fn fix_kafka_3160_lz4_header(frame: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    // magic (4) | FLG | BD | [content size (8) if FLG bit 3] | [dict id (4) if FLG bit 0] | HC
    if out.len() < 7 {
        return out; // the decoder reports the truncation
    }
    let flg = out[4];
    let desc_end = 6 + if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 };
    if out.len() > desc_end {
        let hc = (twox_hash::XxHash32::oneshot(0, &out[4..desc_end]) >> 8) as u8;
        out[desc_end] = hc;
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    /// One legacy entry (offset, size, message) as a broker stores it.
    pub(crate) fn entry(
        offset: i64,
        magic: u8,
        attributes: u8,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Bytes {
        let mut body = BytesMut::new();
        body.put_u8(magic);
        body.put_u8(attributes);
        if magic == 1 {
            body.put_i64(timestamp);
        }
        for field in [key, value] {
            match field {
                None => body.put_i32(-1),
                Some(b) => {
                    body.put_i32(b.len() as i32);
                    body.put_slice(b);
                }
            }
        }
        let mut out = BytesMut::new();
        out.put_i64(offset);
        out.put_i32(body.len() as i32 + 4);
        out.put_u32(crc32fast::hash(&body));
        out.put_slice(&body);
        out.freeze()
    }

    #[test]
    fn kafka_3160_header_checksum_is_repaired() {
        let mut good = BytesMut::new();
        compression::compress(Compression::Lz4, b"legacy lz4 payload", &mut good).unwrap();
        let mut broken = good.to_vec();
        // What Kafka 0.8/0.9 wrote: the checksum over magic + descriptor.
        broken[6] = (twox_hash::XxHash32::oneshot(0, &broken[0..6]) >> 8) as u8;
        assert!(compression::decompress(Compression::Lz4, &broken, 1000).is_err());
        let fixed = fix_kafka_3160_lz4_header(&broken);
        assert_eq!(
            &compression::decompress(Compression::Lz4, &fixed, 1000).unwrap()[..],
            b"legacy lz4 payload"
        );
    }
}
