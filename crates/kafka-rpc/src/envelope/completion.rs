//! A completion record: what a server writes to the service's completions topic once a request
//! is answered, so whichever server owns the partition next can tell a redelivered request
//! from a new one, and re-send its reply instead of running it again.

use krpc_kafka::{ConsumerRecord, ProducerRecord};

use super::headers::{self as h, header, HeaderError, Headers};
use super::reply::Reply;
use super::request::ReplyTo;

/// Header of a completion: the offset of the request it answers (8-byte big-endian).
pub const REQUEST_OFFSET: &str = "krpc-request-offset";

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
