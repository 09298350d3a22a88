//! A call as a record: headers carry the routing, the value carries the msgpack arguments.

use bytes::Bytes;
use krpc_kafka::{ConsumerRecord, ProducerRecord};

use super::headers::{self as h, header, HeaderError, Headers};
use crate::service::{Metadata, METADATA_HEADER_PREFIX};

/// A request id: 16 random bytes, shown as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub [u8; 16]);

impl RequestId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Where the reply goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// Reply topic.
    pub topic: String,
    /// Reply partition (the caller's slot).
    pub partition: i32,
}

/// A call, decoded or about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Unique id of the call (correlation and deduplication).
    pub id: RequestId,
    /// Method name.
    pub method: String,
    /// Where to reply; `None` for a one-way call.
    pub reply_to: Option<ReplyTo>,
    /// Absolute deadline (ms since the epoch), if any.
    pub deadline_ms: Option<i64>,
    /// When the caller sent it (ms since the epoch).
    pub sent_ms: i64,
    /// The msgpack-encoded arguments (sealed when `key_id` is set).
    pub payload: Bytes,
    /// The key that sealed the payload (payload security), if sealed.
    pub key_id: Option<u16>,
    /// Caller metadata (headers `krpc-meta-<name>`, written last, in order).
    pub metadata: Metadata,
}

/// A record that is not a valid request, with what could be read of it (so the server can
/// still reply when it knows where to).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {reason}")]
pub struct RequestError {
    /// What is wrong.
    pub reason: String,
    /// The request id, if it could be read.
    pub id: Option<RequestId>,
    /// Where to reply, if it could be read.
    pub reply_to: Option<ReplyTo>,
    /// Whether the wire version is newer than ours (the reply is FAILED_PRECONDITION).
    pub unsupported_version: bool,
}

impl Request {
    /// The associated data a sealed request binds: id, method, reply address, deadline, sent,
    /// and, when there is any, the caller metadata (name and value of each entry, in order).
    pub fn aad(&self) -> Bytes {
        let reply = self.reply_to.as_ref();
        let mut aad = crate::security::Aad::new("krpc request v1")
            .field(&self.id.0)
            .field(self.method.as_bytes())
            .field(reply.map_or(&b""[..], |r| r.topic.as_bytes()))
            .field(&reply.map_or(-1, |r| r.partition).to_be_bytes())
            .field(&self.deadline_ms.unwrap_or(i64::MIN).to_be_bytes())
            .field(&self.sent_ms.to_be_bytes());
        if !self.metadata.is_empty() {
            aad = aad.field(b"krpc-meta");
            for (name, value) in self.metadata.iter() {
                aad = aad.field(name.as_bytes()).field(value);
            }
        }
        aad.finish()
    }

    /// The record that carries this request, keyed by the caller's routing key.
    pub fn to_record(&self, routing_key: Option<Bytes>) -> ProducerRecord {
        let mut headers = vec![
            header(h::VERSION, vec![h::WIRE_VERSION]),
            header(h::ID, self.id.0.to_vec()),
            header(h::METHOD, self.method.clone()),
            header(h::SENT, self.sent_ms.to_be_bytes().to_vec()),
        ];
        if let Some(r) = &self.reply_to {
            headers.push(header(h::REPLY_TOPIC, r.topic.clone()));
            headers.push(header(
                h::REPLY_PARTITION,
                r.partition.to_be_bytes().to_vec(),
            ));
        }
        if let Some(d) = self.deadline_ms {
            headers.push(header(h::DEADLINE, d.to_be_bytes().to_vec()));
        }
        if let Some(k) = self.key_id {
            headers.push(header(h::KEY_ID, k.to_be_bytes().to_vec()));
        }
        for (name, value) in self.metadata.iter() {
            headers.push(header(
                &format!("{METADATA_HEADER_PREFIX}{name}"),
                value.clone(),
            ));
        }
        ProducerRecord {
            key: routing_key,
            value: Some(self.payload.clone()),
            headers,
            timestamp: Some(self.sent_ms),
        }
    }

    /// Reads a request from a record; never panics, whatever the record holds.
    pub fn from_record(record: &ConsumerRecord) -> Result<Self, RequestError> {
        let hs = Headers(record);
        let id = hs.fixed::<16>(h::ID).ok().map(RequestId);
        let reply_to = read_reply_to(&hs).ok().flatten();
        let fail = |reason: String, unsupported_version: bool| RequestError {
            reason,
            id,
            reply_to: reply_to.clone(),
            unsupported_version,
        };
        let version = hs
            .fixed::<1>(h::VERSION)
            .map_err(|e| fail(e.to_string(), false))?[0];
        if version != h::WIRE_VERSION {
            return Err(fail(
                format!(
                    "wire version {version} is not supported (this server speaks {})",
                    h::WIRE_VERSION
                ),
                version > h::WIRE_VERSION,
            ));
        }
        let parse = || -> Result<Request, HeaderError> {
            Ok(Request {
                id: RequestId(hs.fixed::<16>(h::ID)?),
                method: hs.text(h::METHOD)?,
                reply_to: read_reply_to(&hs)?,
                deadline_ms: hs.fixed_opt::<8>(h::DEADLINE)?.map(i64::from_be_bytes),
                sent_ms: hs.fixed::<8>(h::SENT).map(i64::from_be_bytes)?,
                payload: record.value.clone().unwrap_or_default(),
                key_id: hs.fixed_opt::<2>(h::KEY_ID)?.map(u16::from_be_bytes),
                metadata: read_metadata(record),
            })
        };
        parse().map_err(|e| fail(e.to_string(), false))
    }
}

/// The caller metadata of a request record: every header named `krpc-meta-<name>` with a
/// non-empty name and a non-null value, the first of a repeated name winning (WIRE.md 3.1).
pub fn read_metadata(record: &ConsumerRecord) -> Metadata {
    let mut m = Metadata::new();
    for hd in &record.headers {
        let (Some(name), Some(value)) = (hd.key.strip_prefix(METADATA_HEADER_PREFIX), &hd.value)
        else {
            continue;
        };
        if !name.is_empty() && m.get(name).is_none() {
            m.insert(name, value.clone());
        }
    }
    m
}

fn read_reply_to(hs: &Headers<'_>) -> Result<Option<ReplyTo>, HeaderError> {
    let Some(topic) = hs.text_opt(h::REPLY_TOPIC)? else {
        return Ok(None);
    };
    let partition = i32::from_be_bytes(hs.fixed::<4>(h::REPLY_PARTITION)?);
    Ok(Some(ReplyTo { topic, partition }))
}
