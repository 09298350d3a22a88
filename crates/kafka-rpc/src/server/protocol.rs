//! The wire formats a server speaks: the native envelope (wire/WIRE.md), or the Python
//! kafka-rpc 1.0.8 format (legacy). Everything else a server does (dedup, commit after reply,
//! dead letters, counters) is the same for both.

use bytes::Bytes;
use kafka_wire::{ConsumerRecord, Header, ProducerRecord};

use crate::envelope::{Reply, ReplyTo, Request, RequestError, RequestId};
use crate::error::HandlerError;
use crate::legacy::{self, LegacyCall, LegacyFormat, LegacyReply, OpenError};
use crate::status::StatusCode;

/// What a request record turned out to be.
pub(crate) enum Decoded {
    /// A call to run.
    Call(Request),
    /// A call answered with this error without running (its keyword arguments do not fit).
    Rejected(Request, HandlerError),
    /// A record failing the format's integrity check: refused, never run.
    Unauthentic {
        id: RequestId,
        reply_to: ReplyTo,
        reason: String,
    },
    /// A Python client's handshake: send this record back.
    Handshake(ReplyTo, ProducerRecord),
}

/// The format of a server's requests and replies.
pub(crate) enum Protocol {
    /// kafka-rpc's own envelope.
    Native,
    /// The Python kafka-rpc 1.0.8 format.
    Legacy(LegacyServing),
}

/// What a legacy server needs to read requests and address replies.
pub(crate) struct LegacyServing {
    pub format: LegacyFormat,
    /// `krpc_<name>_client`.
    pub reply_topic: String,
    pub reply_partitions: i32,
    /// The service, asked for parameter names to place keyword arguments.
    pub service: std::sync::Arc<dyn crate::service::Service>,
}

impl Protocol {
    /// Reads a request record; never panics, whatever it holds.
    pub fn decode(&self, record: &ConsumerRecord) -> Result<Decoded, RequestError> {
        match self {
            Protocol::Native => Request::from_record(record).map(Decoded::Call),
            Protocol::Legacy(l) => l.decode(record),
        }
    }

    /// Where a reply to `record` would go, as far as its routing tells (for a record refused
    /// before decoding, an oversize one): native headers or the legacy key; the value is not read.
    pub fn reply_address(&self, record: &ConsumerRecord) -> (Option<RequestId>, Option<ReplyTo>) {
        match self {
            Protocol::Native => match Request::from_record(record) {
                Ok(r) => (Some(r.id), r.reply_to),
                Err(e) => (e.id, e.reply_to),
            },
            Protocol::Legacy(l) => match l.address(record.key.as_deref()) {
                Some((id, to)) => (Some(id), Some(to)),
                None => (None, None),
            },
        }
    }

    /// The record that carries `reply`.
    pub fn reply_record(&self, reply: &Reply) -> ProducerRecord {
        match self {
            Protocol::Native => reply.to_record(),
            Protocol::Legacy(l) => l.reply_record(reply),
        }
    }
}

impl LegacyServing {
    fn reply_to(&self, key: &[u8]) -> ReplyTo {
        ReplyTo {
            topic: self.reply_topic.clone(),
            partition: legacy::reply_partition(key, self.reply_partitions),
        }
    }

    /// The task id a key holds and where its reply goes.
    fn address(&self, key: Option<&[u8]>) -> Option<(RequestId, ReplyTo)> {
        let key = key?;
        Some((legacy::task_id(key)?, self.reply_to(key)))
    }

    fn decode(&self, record: &ConsumerRecord) -> Result<Decoded, RequestError> {
        let fail =
            |reason: String, id: Option<RequestId>, reply_to: Option<ReplyTo>| RequestError {
                reason,
                id,
                reply_to,
                unsupported_version: false,
            };
        let Some(key) = record.key.as_deref() else {
            return Err(fail("the record has no key (a task id)".into(), None, None));
        };
        if key == legacy::HANDSHAKE {
            let (value, header) = (Bytes::from_static(legacy::HANDSHAKE), null_checksum());
            let answer = ProducerRecord {
                key: Some(value.clone()),
                value: Some(value),
                headers: vec![header],
                timestamp: None,
            };
            return Ok(Decoded::Handshake(self.reply_to(key), answer));
        }
        let Some((id, reply_to)) = self.address(Some(key)) else {
            return Err(fail(
                format!(
                    "the key {:?} is not a task id (32 hex digits)",
                    String::from_utf8_lossy(&key[..key.len().min(64)])
                ),
                None,
                None,
            ));
        };
        let value = record.value.as_deref().unwrap_or_default();
        let plain = match self.format.open(value, &record.headers) {
            Ok(p) => p,
            Err(OpenError::Checksum { found, expected }) => {
                return Ok(Decoded::Unauthentic {
                    id,
                    reply_to,
                    reason: format!(
                        "checksum mismatch (header {found:?}, value {expected:?}): refused"
                    ),
                })
            }
            Err(OpenError::Malformed(reason)) => {
                return Err(fail(reason, Some(id), Some(reply_to)))
            }
        };
        let call =
            LegacyCall::decode(&plain).map_err(|r| fail(r, Some(id), Some(reply_to.clone())))?;
        let mut request = Request {
            id,
            method: call.method.clone(),
            reply_to: Some(reply_to),
            deadline_ms: None,
            sent_ms: record.timestamp,
            payload: Bytes::new(),
            key_id: None,
            metadata: crate::envelope::read_metadata(record),
        };
        let params = self.service.parameters(&call.method);
        match call.positional(params.as_deref()) {
            Ok(args) => {
                request.payload = args;
                Ok(Decoded::Call(request))
            }
            Err(reason) => Ok(Decoded::Rejected(
                request,
                HandlerError::new(StatusCode::InvalidArgument, reason),
            )),
        }
    }

    fn reply_record(&self, reply: &Reply) -> ProducerRecord {
        let failed = reply.status != StatusCode::Ok;
        let class = legacy::pickle::exception_class(reply.status);
        let body = LegacyReply {
            ret: if failed { Bytes::new() } else { reply.payload.clone() },
            tact_time: reply.queue_ms.max(0) as f64 / 1e3 + reply.handler_us as f64 / 1e6,
            server_id: reply.server_id.clone(),
            time: legacy::now_text(),
            exception: failed.then(|| Bytes::from(legacy::pickle::exception(class, &reply.message))),
            traceback: failed.then(|| {
                format!(
                    "Traceback (most recent call last):\n  kafka-rpc (Rust) server {}, status {}\n{class}: {}\n",
                    reply.server_id, reply.status, reply.message
                )
            }),
        };
        let (value, header) = self.format.seal(&body.encode());
        ProducerRecord {
            key: Some(Bytes::from(reply.id.to_string())),
            value: Some(value),
            headers: vec![header],
            timestamp: None,
        }
    }
}

/// A `checksum` header with no value, as the Python package sends with its handshake.
fn null_checksum() -> Header {
    Header {
        key: "checksum".into(),
        value: None,
    }
}
