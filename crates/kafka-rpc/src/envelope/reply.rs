//! A reply as a record: status and timings in headers, the msgpack result in the value.

use bytes::Bytes;
use krpc_kafka::{ConsumerRecord, ProducerRecord};

use super::headers::{self as h, header, HeaderError, Headers};
use super::request::RequestId;
use crate::status::StatusCode;

/// A reply, decoded or about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The id of the request answered.
    pub id: RequestId,
    /// Outcome.
    pub status: StatusCode,
    /// Error message (empty when OK).
    pub message: String,
    /// Id of the answering server.
    pub server_id: String,
    /// Time the handler ran, µs.
    pub handler_us: u64,
    /// Time the request waited before a server picked it up, ms.
    pub queue_ms: i64,
    /// The msgpack-encoded result (empty unless OK; sealed when `key_id` is set).
    pub payload: Bytes,
    /// The key that sealed the payload (payload security), if sealed.
    pub key_id: Option<u16>,
}

impl Reply {
    /// The associated data a sealed reply binds: request id, status and message.
    pub fn aad(&self) -> bytes::Bytes {
        crate::security::Aad::new("krpc reply v1")
            .field(&self.id.0)
            .field(&self.status.code().to_be_bytes())
            .field(self.message.as_bytes())
            .finish()
    }

    /// The record that carries this reply.
    pub fn to_record(&self) -> ProducerRecord {
        let mut headers = vec![
            header(h::VERSION, vec![h::WIRE_VERSION]),
            header(h::ID, self.id.0.to_vec()),
            header(h::STATUS, self.status.code().to_be_bytes().to_vec()),
            header(h::SERVER, self.server_id.clone()),
            header(h::HANDLER_US, self.handler_us.to_be_bytes().to_vec()),
            header(h::QUEUE_MS, self.queue_ms.to_be_bytes().to_vec()),
        ];
        if self.status != StatusCode::Ok {
            headers.push(header(h::MESSAGE, self.message.clone()));
        }
        if let Some(k) = self.key_id {
            headers.push(header(h::KEY_ID, k.to_be_bytes().to_vec()));
        }
        ProducerRecord {
            key: None,
            value: Some(self.payload.clone()),
            headers,
            timestamp: None,
        }
    }

    /// Reads a reply from a record; never panics, whatever the record holds.
    pub fn from_record(record: &ConsumerRecord) -> Result<Self, HeaderError> {
        let hs = Headers(record);
        let version = hs.fixed::<1>(h::VERSION)?[0];
        if version != h::WIRE_VERSION {
            return Err(HeaderError::Version(version));
        }
        Ok(Reply {
            id: RequestId(hs.fixed::<16>(h::ID)?),
            status: StatusCode::from_code(u16::from_be_bytes(hs.fixed::<2>(h::STATUS)?)),
            message: hs.text_opt(h::MESSAGE)?.unwrap_or_default(),
            server_id: hs.text_opt(h::SERVER)?.unwrap_or_default(),
            handler_us: hs
                .fixed_opt::<8>(h::HANDLER_US)?
                .map_or(0, u64::from_be_bytes),
            queue_ms: hs
                .fixed_opt::<8>(h::QUEUE_MS)?
                .map_or(0, i64::from_be_bytes),
            payload: record.value.clone().unwrap_or_default(),
            key_id: hs.fixed_opt::<2>(h::KEY_ID)?.map(u16::from_be_bytes),
        })
    }
}
