//! A v2 record batch built as its records are appended (as the Java producer's
//! `MemoryRecordsBuilder`): each record is encoded into the batch's buffer when it is sent, and
//! sending the batch only fills in the 61-byte header (and compresses, with a codec).
//!
//! Hand-written rather than `kafka-protocol`'s `RecordBatchEncoder` (which the decoder still
//! uses), because that encoder takes the whole batch at once as its own `Record`s: the producer
//! kept every `ProducerRecord` until the batch was sent, then converted each one (a clone of
//! its key and value, which allocates for a `Bytes` made from a `Vec`, and an `IndexMap` of its
//! headers), encoded them into a growing scratch buffer and copied that into the batch. Here a
//! record costs its bytes in the buffer and nothing else. The output is the same bytes as that
//! encoder's for records whose timestamps do not decrease and whose header keys do not repeat
//! (test `builder_writes_the_bytes_kafka_protocol_writes`); otherwise the base timestamp is the
//! first record's and later deltas may be negative, as the Java producer writes them, and a
//! repeated header key is written each time it is given, as Java and librdkafka write it
//! (that encoder's map of headers kept one).

use bytes::{BufMut, Bytes, BytesMut};

use super::{ProducerRecord, ProducerStamp, BATCH_HEADER_LEN};
use crate::compression::{self, Codec};

/// The records of one batch, encoded as they are appended, and the header fields they fix.
pub(crate) struct BatchBuilder {
    /// [`BATCH_HEADER_LEN`] bytes for the header, then the records (uncompressed).
    buf: Buf,
    count: i32,
    /// The first record's timestamp (timestamp deltas are from it).
    base_timestamp: i64,
    max_timestamp: i64,
}

enum Buf {
    /// Still taking records.
    Open(BytesMut),
    /// Encoded once; kept for a re-encoding under another stamp.
    Sealed(Bytes),
}

impl BatchBuilder {
    /// An empty batch whose buffer first holds `capacity` bytes of records (it grows beyond).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self::with_buffer(
            BytesMut::with_capacity(BATCH_HEADER_LEN + capacity),
            capacity,
        )
    }

    /// An empty batch in `buf` (a finished batch's, from [`BatchBuilder::into_buffer`]): its
    /// contents are dropped and it is grown to hold `capacity` bytes of records if smaller.
    pub(crate) fn with_buffer(mut buf: BytesMut, capacity: usize) -> Self {
        buf.clear();
        buf.reserve(BATCH_HEADER_LEN + capacity);
        buf.put_bytes(0, BATCH_HEADER_LEN);
        Self {
            buf: Buf::Open(buf),
            count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
        }
    }

    /// The batch's buffer, for [`BatchBuilder::with_buffer`], unless something else still
    /// holds its bytes (a request frame being written, a clone of the encoded batch).
    pub(crate) fn into_buffer(self) -> Option<BytesMut> {
        match self.buf {
            Buf::Open(buf) => Some(buf),
            Buf::Sealed(bytes) => bytes.try_into_mut().ok(),
        }
    }

    /// Where the batch's bytes are (tests: a buffer reused is the same memory).
    #[cfg(test)]
    pub(crate) fn buffer_addr(&self) -> usize {
        match &self.buf {
            Buf::Open(buf) => buf.as_ptr() as usize,
            Buf::Sealed(bytes) => bytes.as_ptr() as usize,
        }
    }

    /// The capacity of the batch's buffer while it is open; the length of its bytes once
    /// sealed (tests).
    #[cfg(test)]
    pub(crate) fn capacity_for_tests(&self) -> usize {
        match &self.buf {
            Buf::Open(buf) => buf.capacity(),
            Buf::Sealed(bytes) => bytes.len(),
        }
    }

    /// Records appended.
    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    /// Appends `record` (its timestamp, or `now_ms` when it has none, in ms since the epoch).
    /// Fails, appending nothing, on a key, value, header or record over `i32::MAX` bytes, or
    /// a batch already sealed by [`BatchBuilder::encode`] or holding `i32::MAX` records.
    pub(crate) fn push(
        &mut self,
        record: &ProducerRecord,
        now_ms: impl FnOnce() -> i64,
    ) -> anyhow::Result<()> {
        let Buf::Open(buf) = &mut self.buf else {
            anyhow::bail!("the batch was already encoded");
        };
        if self.count == i32::MAX {
            anyhow::bail!("a batch holds at most {} records", i32::MAX);
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        if self.count == 0 {
            self.base_timestamp = timestamp;
        }
        let timestamp_delta = timestamp.wrapping_sub(self.base_timestamp);
        let offset_delta = self.count;
        // Every header as given, a repeated key too (Java's `Headers.add`, librdkafka).
        let len32 = |n: usize, what: &str| -> anyhow::Result<i32> {
            i32::try_from(n).map_err(|_| anyhow::anyhow!("record {what} of {n} bytes is too large"))
        };
        let opt_len = |b: &Option<Bytes>, what: &str| -> anyhow::Result<i32> {
            b.as_ref().map_or(Ok(-1), |b| len32(b.len(), what))
        };
        let key_len = opt_len(&record.key, "key")?;
        let value_len = opt_len(&record.value, "value")?;
        let mut body = 1 // attributes
            + varlong_size(timestamp_delta)
            + varint_size(offset_delta)
            + varint_size(key_len)
            + key_len.max(0) as usize
            + varint_size(value_len)
            + value_len.max(0) as usize;
        for h in &record.headers {
            let k = len32(h.key.len(), "header key")?;
            let v = opt_len(&h.value, "header value")?;
            body += varint_size(k) + k as usize + varint_size(v) + v.max(0) as usize;
        }
        let header_count = len32(record.headers.len(), "header count")?;
        body += varint_size(header_count);
        let body = len32(body, "")?;

        buf.reserve(varint_size(body) + body as usize);
        put_varint(buf, body);
        buf.put_u8(0);
        put_varlong(buf, timestamp_delta);
        put_varint(buf, offset_delta);
        put_varint(buf, key_len);
        if let Some(k) = &record.key {
            buf.put_slice(k);
        }
        put_varint(buf, value_len);
        if let Some(v) = &record.value {
            buf.put_slice(v);
        }
        put_varint(buf, header_count);
        for h in &record.headers {
            put_varint(buf, h.key.len() as i32);
            buf.put_slice(h.key.as_bytes());
            match &h.value {
                Some(v) => {
                    put_varint(buf, v.len() as i32);
                    buf.put_slice(v);
                }
                None => put_varint(buf, -1),
            }
        }
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        Ok(())
    }

    /// The batch (base offset 0) with `codec`, stamped with a producer id, epoch and base
    /// sequence when `stamp` is given (idempotent produce). Seals the batch: no record can be
    /// appended after. With no codec the first encoding takes the buffer as it is (no copy);
    /// encoding again (a new stamp) copies it. Empty when no record was appended.
    pub(crate) fn encode(
        &mut self,
        codec: Codec,
        stamp: Option<ProducerStamp>,
    ) -> anyhow::Result<Bytes> {
        if self.count == 0 {
            return Ok(Bytes::new());
        }
        if let Some(s) = stamp {
            if s.base_sequence < 0
                || (s.base_sequence as i64) + (self.count as i64) > i32::MAX as i64
            {
                anyhow::bail!(
                    "base sequence {} cannot hold {} records",
                    s.base_sequence,
                    self.count
                );
            }
        }
        let mut out = match (codec, &mut self.buf) {
            (Codec::None, Buf::Open(buf)) => std::mem::take(buf),
            (Codec::None, Buf::Sealed(raw)) => BytesMut::from(&raw[..]),
            (_, Buf::Open(buf)) => {
                self.buf = Buf::Sealed(std::mem::take(buf).freeze());
                return self.encode(codec, stamp);
            }
            (_, Buf::Sealed(raw)) => {
                let mut out = BytesMut::with_capacity(raw.len() / 2 + BATCH_HEADER_LEN);
                out.put_bytes(0, BATCH_HEADER_LEN);
                compression::compress(codec.to_protocol(), &raw[BATCH_HEADER_LEN..], &mut out)?;
                out
            }
        };
        self.write_header(&mut out, codec, stamp)?;
        let out = out.freeze();
        if codec == Codec::None {
            self.buf = Buf::Sealed(out.clone());
        }
        Ok(out)
    }

    /// Fills the first [`BATCH_HEADER_LEN`] bytes of `batch` (KIP-98 layout), its CRC last.
    fn write_header(
        &self,
        batch: &mut [u8],
        codec: Codec,
        stamp: Option<ProducerStamp>,
    ) -> anyhow::Result<()> {
        let length = i32::try_from(batch.len() - 12)
            .map_err(|_| anyhow::anyhow!("a batch of {} bytes is too large", batch.len()))?;
        let mut h = &mut batch[..BATCH_HEADER_LEN];
        h.put_i64(0); // base offset
        h.put_i32(length);
        h.put_i32(-1); // partition leader epoch
        h.put_i8(2); // magic
        h.put_u32(0); // CRC, below
        h.put_i16(codec.to_protocol() as i16); // attributes: the codec; create time
        h.put_i32(self.count - 1); // last offset delta
        h.put_i64(self.base_timestamp);
        h.put_i64(self.max_timestamp);
        h.put_i64(stamp.map_or(-1, |s| s.producer_id));
        h.put_i16(stamp.map_or(-1, |s| s.producer_epoch));
        h.put_i32(stamp.map_or(-1, |s| s.base_sequence));
        h.put_i32(self.count);
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(())
    }
}

fn zigzag32(n: i32) -> u32 {
    ((n << 1) ^ (n >> 31)) as u32
}

fn zigzag64(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn varint_size(n: i32) -> usize {
    let bits = 32 - zigzag32(n).leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

fn varlong_size(n: i64) -> usize {
    let bits = 64 - zigzag64(n).leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

fn put_unsigned(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// A zigzag varint (the record format's signed `varint`).
fn put_varint(buf: &mut BytesMut, n: i32) {
    put_unsigned(buf, zigzag32(n) as u64);
}

/// A zigzag varlong.
fn put_varlong(buf: &mut BytesMut, n: i64) {
    put_unsigned(buf, zigzag64(n));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_sizes_match_what_is_written() {
        for n in [0, 1, -1, 63, 64, -64, -65, 8191, 8192, i32::MAX, i32::MIN] {
            let mut b = BytesMut::new();
            put_varint(&mut b, n);
            assert_eq!(b.len(), varint_size(n), "{n}");
        }
        for n in [0, 1, -1, 1 << 40, -(1 << 40), i64::MAX, i64::MIN] {
            let mut b = BytesMut::new();
            put_varlong(&mut b, n);
            assert_eq!(b.len(), varlong_size(n), "{n}");
        }
    }
}
