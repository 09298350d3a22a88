//! A completion record: what a server writes to the service's completions topic once a request
//! is answered, so whichever server owns the partition next can tell a redelivered request
//! from a new one, and re-send its reply instead of running it again.
//!
//! A record carries one completion (the layout of every version-1 writer) or, coalesced, many:
//! a server that answers several requests of one partition while the previous completion
//! record of that partition is still being written puts them in one record (wire/WIRE.md,
//! section 8), so the broker stores one record for the lot.

use bytes::Bytes;
use krpc_kafka::{ConsumerRecord, Header, ProducerRecord};

use super::headers::{self as h, header, HeaderError, Headers};
use super::reply::Reply;
use super::request::ReplyTo;

/// Header of a completion: the offset of the request it answers (8-byte big-endian).
pub const REQUEST_OFFSET: &str = "krpc-request-offset";

/// Header of a coalesced completion record: how many completions its value holds (4-byte
/// big-endian unsigned, at least 2). Absent on a record that carries one completion.
pub const COMPLETIONS: &str = "krpc-completions";

/// A finished request: its reply, and where that reply went (`None` for a one-way call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The reply (for a one-way call: its status, with an empty payload).
    pub reply: Reply,
    /// Where the reply was sent.
    pub reply_to: Option<ReplyTo>,
    /// The offset of the request record answered (to tell a redelivery from a replay).
    pub request_offset: Option<i64>,
}

impl Completion {
    /// The record: the reply's headers and value, plus the reply-to and request-offset
    /// headers, keyed by request id.
    pub fn to_record(&self) -> ProducerRecord {
        let mut record = self.reply.to_record();
        record.key = Some(self.reply.id.0.to_vec().into());
        if let Some(r) = &self.reply_to {
            record.headers.push(header(h::REPLY_TOPIC, r.topic.clone()));
            record.headers.push(header(
                h::REPLY_PARTITION,
                r.partition.to_be_bytes().to_vec(),
            ));
        }
        if let Some(o) = self.request_offset {
            record
                .headers
                .push(header(REQUEST_OFFSET, o.to_be_bytes().to_vec()));
        }
        record
    }

    /// Reads a completion; never panics.
    pub fn from_record(record: &ConsumerRecord) -> Result<Self, HeaderError> {
        let reply = Reply::from_record(record)?;
        let hs = Headers(record);
        let reply_to = match hs.text_opt(h::REPLY_TOPIC)? {
            Some(topic) => Some(ReplyTo {
                topic,
                partition: i32::from_be_bytes(hs.fixed::<4>(h::REPLY_PARTITION)?),
            }),
            None => None,
        };
        let request_offset = hs.fixed_opt::<8>(REQUEST_OFFSET)?.map(i64::from_be_bytes);
        Ok(Self {
            reply,
            reply_to,
            request_offset,
        })
    }
}

/// Why a completion record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompletionError {
    /// A completion's headers (of the record, or of one entry of a coalesced record).
    #[error("{0}")]
    Header(#[from] HeaderError),
    /// The value of a coalesced record is not the list of entries its header announces.
    #[error("coalesced completion record: {0}")]
    Coalesced(String),
}

impl Completion {
    /// One record that completes every request of `records` (each the
    /// [`to_record`](Self::to_record) of one completion, all of one partition): the record
    /// itself when there is one, else the coalesced layout: no key, headers `krpc-v` and
    /// `krpc-completions` (the count), value a msgpack array with one entry per completion,
    /// `[key: bin | nil, value: bin | nil, headers: [[name: str, value: bin | nil], ...]]`.
    pub fn coalesce(mut records: Vec<ProducerRecord>) -> ProducerRecord {
        if records.len() == 1 {
            return records.pop().expect("one record");
        }
        let mut out = Vec::with_capacity(records.iter().map(entry_bytes).sum::<usize>() + 8);
        // Writing msgpack to a Vec cannot fail.
        let _ = rmp::encode::write_array_len(&mut out, records.len() as u32);
        for r in &records {
            let _ = rmp::encode::write_array_len(&mut out, 3);
            write_bin_or_nil(&mut out, r.key.as_deref());
            write_bin_or_nil(&mut out, r.value.as_deref());
            let _ = rmp::encode::write_array_len(&mut out, r.headers.len() as u32);
            for hd in &r.headers {
                let _ = rmp::encode::write_array_len(&mut out, 2);
                let _ = rmp::encode::write_str(&mut out, &hd.key);
                write_bin_or_nil(&mut out, hd.value.as_deref());
            }
        }
        ProducerRecord {
            key: None,
            value: Some(out.into()),
            headers: vec![
                header(h::VERSION, vec![h::WIRE_VERSION]),
                header(COMPLETIONS, (records.len() as u32).to_be_bytes().to_vec()),
            ],
            timestamp: None,
        }
    }

    /// The encoded size of `record` as an entry of a coalesced record, near enough to cut
    /// coalesced records to a size (msgpack lengths add at most 5 bytes per field).
    pub fn entry_bytes(record: &ProducerRecord) -> usize {
        entry_bytes(record)
    }

    /// Every completion `record` carries: one for the single layout, the announced count for
    /// a coalesced one. Never panics; an entry that cannot be read fails the whole record
    /// (its writer wrote it whole, so a bad entry means a bad record).
    pub fn read_all(record: &ConsumerRecord) -> Result<Vec<Self>, CompletionError> {
        let Some(count) = Self::coalesced_count(record)? else {
            return Ok(vec![Self::from_record(record)?]);
        };
        let value = record.value.clone().unwrap_or_default();
        let mut rd = Reader { all: &value, at: 0 };
        let n = rd.array_len("the list of entries")?;
        if n != count {
            return Err(CompletionError::Coalesced(format!(
                "header {COMPLETIONS} says {count} entries, the value holds {n}"
            )));
        }
        // Each entry takes at least 4 bytes, so a count the value cannot hold allocates nothing.
        if n as usize > value.len() / 4 {
            return Err(CompletionError::Coalesced(format!(
                "{n} entries cannot fit in {} bytes",
                value.len()
            )));
        }
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let entry = rd
                .entry()
                .map_err(|e| CompletionError::Coalesced(format!("entry {i} of {n}: {e}")))?;
            let entry = ConsumerRecord {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                timestamp: record.timestamp,
                log_append_time: record.log_append_time,
                key: entry.0,
                value: entry.1,
                headers: entry.2,
            };
            out.push(Self::from_record(&entry)?);
        }
        if rd.at != value.len() {
            return Err(CompletionError::Coalesced(format!(
                "{} bytes after the last entry",
                value.len() - rd.at
            )));
        }
        Ok(out)
    }

    /// How many requests `record` completes, from its headers alone (the value is not read):
    /// 1 for the single layout, the `krpc-completions` count for a coalesced record.
    pub fn count(record: &ConsumerRecord) -> Result<usize, CompletionError> {
        Ok(Self::coalesced_count(record)?.map_or(1, |n| n as usize))
    }

    /// The `krpc-completions` count of a coalesced record; `None` for the single layout.
    fn coalesced_count(record: &ConsumerRecord) -> Result<Option<u32>, CompletionError> {
        let hs = Headers(record);
        let Some(count) = hs.fixed_opt::<4>(COMPLETIONS)?.map(u32::from_be_bytes) else {
            return Ok(None);
        };
        let version = hs.fixed::<1>(h::VERSION)?[0];
        if version != h::WIRE_VERSION {
            return Err(HeaderError::Version(version).into());
        }
        if count < 2 {
            return Err(CompletionError::Coalesced(format!(
                "header {COMPLETIONS} says {count}; a coalesced record holds at least 2"
            )));
        }
        Ok(Some(count))
    }
}

fn entry_bytes(r: &ProducerRecord) -> usize {
    let field = |b: Option<&Bytes>| b.map_or(1, |b| b.len() + 5);
    8 + field(r.key.as_ref())
        + field(r.value.as_ref())
        + r.headers
            .iter()
            .map(|hd| 6 + hd.key.len() + field(hd.value.as_ref()))
            .sum::<usize>()
}

fn write_bin_or_nil(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    // Writing msgpack to a Vec cannot fail.
    match bytes {
        Some(b) => {
            let _ = rmp::encode::write_bin(out, b);
        }
        None => {
            let _ = rmp::encode::write_nil(out);
        }
    }
}

/// Reads the msgpack of a coalesced value, slicing byte strings out of it without copying.
/// Hand-written over `rmp`'s primitives (rather than a `serde` model) for that zero-copy
/// slicing, and so that no declared length allocates before its bytes are seen.
struct Reader<'a> {
    all: &'a Bytes,
    at: usize,
}

type Entry = (Option<Bytes>, Option<Bytes>, Vec<Header>);

impl Reader<'_> {
    fn rest(&self) -> &[u8] {
        &self.all[self.at..]
    }

    fn array_len(&mut self, what: &str) -> Result<u32, CompletionError> {
        let mut rd = self.rest();
        let before = rd.len();
        let n = rmp::decode::read_array_len(&mut rd)
            .map_err(|e| CompletionError::Coalesced(format!("{what} is not an array: {e}")))?;
        self.at += before - rd.len();
        Ok(n)
    }

    fn bin_or_nil(&mut self, what: &str) -> Result<Option<Bytes>, CompletionError> {
        if self.rest().first() == Some(&0xc0) {
            self.at += 1;
            return Ok(None);
        }
        let mut rd = self.rest();
        let before = rd.len();
        let len = rmp::decode::read_bin_len(&mut rd)
            .map_err(|e| CompletionError::Coalesced(format!("{what} is not bytes: {e}")))?
            as usize;
        let start = self.at + (before - rd.len());
        if len > self.all.len() - start {
            return Err(CompletionError::Coalesced(format!(
                "{what} of {len} bytes runs past the value's end"
            )));
        }
        self.at = start + len;
        Ok(Some(self.all.slice(start..start + len)))
    }

    fn text(&mut self, what: &str) -> Result<String, CompletionError> {
        let mut rd = self.rest();
        let before = rd.len();
        let len = rmp::decode::read_str_len(&mut rd)
            .map_err(|e| CompletionError::Coalesced(format!("{what} is not a string: {e}")))?
            as usize;
        let start = self.at + (before - rd.len());
        let bytes = self
            .all
            .get(start..start.saturating_add(len))
            .ok_or_else(|| {
                CompletionError::Coalesced(format!(
                    "{what} of {len} bytes runs past the value's end"
                ))
            })?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| CompletionError::Coalesced(format!("{what} is not UTF-8")))?
            .to_string();
        self.at = start + len;
        Ok(text)
    }

    fn entry(&mut self) -> Result<Entry, CompletionError> {
        let fields = self.array_len("the entry")?;
        if fields != 3 {
            return Err(CompletionError::Coalesced(format!(
                "the entry has {fields} fields, expected 3 (key, value, headers)"
            )));
        }
        let key = self.bin_or_nil("the key")?;
        let value = self.bin_or_nil("the value")?;
        let n = self.array_len("the headers")?;
        // Each header takes at least 3 bytes.
        let mut headers = Vec::with_capacity((n as usize).min(self.rest().len() / 3));
        for _ in 0..n {
            if self.array_len("a header")? != 2 {
                return Err(CompletionError::Coalesced(
                    "a header is not a [name, value] pair".into(),
                ));
            }
            let key = self.text("a header name")?;
            let value = self.bin_or_nil("a header value")?;
            headers.push(Header { key, value });
        }
        Ok((key, value, headers))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::envelope::RequestId;
    use crate::status::StatusCode;

    fn completion(id: u8, to: bool) -> Completion {
        let ok = id & 1 == 0;
        Completion {
            reply: Reply {
                id: RequestId([id; 16]),
                status: if ok {
                    StatusCode::Ok
                } else {
                    StatusCode::InvalidArgument
                },
                message: if ok {
                    String::new()
                } else {
                    format!("bad {id}")
                },
                server_id: "s1".into(),
                handler_us: u64::from(id) * 10,
                queue_ms: i64::from(id),
                payload: Bytes::from(vec![id; usize::from(id)]),
                key_id: (id == 4).then_some(7),
            },
            reply_to: to.then(|| ReplyTo {
                topic: "krpc.replies".into(),
                partition: i32::from(id),
            }),
            request_offset: Some(i64::from(id) * 100),
        }
    }

    fn received(r: ProducerRecord) -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from("krpc.Svc.completed"),
            partition: 3,
            offset: 42,
            timestamp: 1_700_000_000_000,
            log_append_time: false,
            key: r.key,
            value: r.value,
            headers: r.headers,
        }
    }

    #[test]
    fn one_completion_keeps_the_single_layout_and_many_read_back_whole_and_in_order() {
        let one = completion(2, true);
        let record = Completion::coalesce(vec![one.to_record()]);
        assert_eq!(
            record.key.as_deref(),
            Some(&[2u8; 16][..]),
            "keyed by request id"
        );
        assert!(record.headers.iter().all(|h| h.key != COMPLETIONS));
        let back = received(record);
        assert_eq!(Completion::count(&back), Ok(1));
        assert_eq!(Completion::read_all(&back), Ok(vec![one]));

        let many: Vec<Completion> = (0..7).map(|i| completion(i, i != 3)).collect();
        let record = Completion::coalesce(many.iter().map(Completion::to_record).collect());
        assert_eq!(record.key, None);
        let back = received(record);
        assert_eq!(Completion::count(&back), Ok(7));
        assert_eq!(Completion::read_all(&back), Ok(many));
    }

    #[test]
    fn a_damaged_coalesced_record_is_an_error_never_a_panic_or_a_short_list() {
        let many: Vec<ProducerRecord> = (0..3).map(|i| completion(i, true).to_record()).collect();
        let good = received(Completion::coalesce(many));
        let value = good.value.clone().unwrap();
        let with = |value: Option<Bytes>, count: u32| {
            let mut r = good.clone();
            r.value = value;
            for hd in &mut r.headers {
                if hd.key == COMPLETIONS {
                    hd.value = Some(count.to_be_bytes().to_vec().into());
                }
            }
            r
        };
        // Every truncation of the value.
        for cut in 0..value.len() {
            let r = with(Some(value.slice(..cut)), 3);
            assert!(Completion::read_all(&r).is_err(), "cut at {cut}");
        }
        // A count that disagrees with the value, a count below 2, trailing bytes, no value.
        assert!(Completion::read_all(&with(Some(value.clone()), 4)).is_err());
        assert!(Completion::read_all(&with(Some(value.clone()), 1)).is_err());
        let mut longer = value.to_vec();
        longer.push(0);
        assert!(Completion::read_all(&with(Some(longer.into()), 3)).is_err());
        assert!(Completion::read_all(&with(None, 3)).is_err());
        // A huge declared array allocates nothing and fails.
        let huge = Bytes::from_static(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
        assert!(Completion::read_all(&with(Some(huge), u32::MAX)).is_err());
        // Flipping any byte never panics.
        for i in 0..value.len() {
            let mut v = value.to_vec();
            v[i] ^= 0xff;
            let _ = Completion::read_all(&with(Some(v.into()), 3));
        }
    }
}
