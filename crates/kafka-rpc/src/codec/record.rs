//! The record codec: the one place where a Kafka record becomes a request or a reply and back,
//! for both sides. Two formats, the native envelope (wire/WIRE.md sections 3 and 4) and the
//! Python kafka-rpc 1.0.8 format (section 12), and payload sealing (section 11) as a wrapper
//! around the native one (the legacy format has its own checksum and cipher instead, inside
//! [`LegacyFormat`]). The server's dispatcher and the clients' call core see only plaintext
//! requests and replies; which format and which sealing is decided here, once, from the
//! options.

use std::time::Duration;

use bytes::Bytes;
use krpc_kafka::{ConsumerRecord, Header, ProducerRecord};

use crate::envelope::{read_metadata, Reply, ReplyTo, Request, RequestId};
use crate::error::HandlerError;
use crate::legacy::{self, LegacyCall, LegacyFormat, LegacyReply, OpenError};
use crate::security::PayloadSecurity;
use crate::service::{Metadata, Service};
use crate::status::StatusCode;

/// What a request record turned out to be, once read (and unsealed).
pub(crate) enum Incoming {
    /// A call to run; its payload is plaintext msgpack arguments.
    Call(Request),
    /// A call answered with this error without running (its keyword arguments do not fit).
    Rejected(Request, HandlerError),
    /// A Python client's handshake: send this record back there.
    Handshake(ReplyTo, ProducerRecord),
}

/// Why a request record is refused without running, with what could be read of it.
#[derive(Debug)]
pub(crate) struct Refused {
    /// What kind of refusal (decides the status and the counter).
    pub kind: RefusedKind,
    /// Why.
    pub reason: String,
    /// The request id, if readable.
    pub id: Option<RequestId>,
    /// Where to answer, if readable.
    pub reply_to: Option<ReplyTo>,
}

/// Kinds of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusedKind {
    /// Not a request of the format (DATA_LOSS, dead-lettered).
    Malformed,
    /// A newer wire version (FAILED_PRECONDITION, dead-lettered).
    UnsupportedVersion,
    /// Fails the integrity check of sealing or of the legacy checksum (UNAUTHENTICATED, not
    /// dead-lettered).
    Unauthentic,
}

impl Refused {
    /// The status the caller is answered with.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            RefusedKind::Malformed => StatusCode::DataLoss,
            RefusedKind::UnsupportedVersion => StatusCode::FailedPrecondition,
            RefusedKind::Unauthentic => StatusCode::Unauthenticated,
        }
    }
}

/// The server's side of the codec.
pub(crate) enum ServerCodec {
    /// kafka-rpc's own envelope, optionally sealed.
    Native {
        /// Payload security: requests must be sealed, OK replies are sealed.
        sealing: Option<PayloadSecurity>,
        /// Oldest sealed request accepted (the dedup window's age, so a replay cannot outlive it).
        replay_window: Duration,
    },
    /// The Python kafka-rpc 1.0.8 format.
    Legacy {
        /// Checksum and cipher.
        format: LegacyFormat,
        /// `krpc_<name>_client`.
        reply_topic: String,
        /// Its partitions (replies go where librdkafka's partitioner would put the task id).
        reply_partitions: i32,
    },
}

impl ServerCodec {
    /// Reads a request record and opens its payload. `service` gives parameter names (Python
    /// keyword arguments); `now_ms` is the pickup time (the replay window). Never panics.
    pub fn read_request(
        &self,
        record: &ConsumerRecord,
        service: &dyn Service,
        now_ms: i64,
    ) -> Result<Incoming, Refused> {
        match self {
            ServerCodec::Native {
                sealing,
                replay_window,
            } => {
                let mut request = Request::from_record(record).map_err(|e| Refused {
                    kind: if e.unsupported_version {
                        RefusedKind::UnsupportedVersion
                    } else {
                        RefusedKind::Malformed
                    },
                    reason: e.reason,
                    id: e.id,
                    reply_to: e.reply_to,
                })?;
                if let Err(reason) = unseal(sealing.as_ref(), *replay_window, &mut request, now_ms)
                {
                    return Err(Refused {
                        kind: RefusedKind::Unauthentic,
                        reason,
                        id: Some(request.id),
                        reply_to: request.reply_to,
                    });
                }
                Ok(Incoming::Call(request))
            }
            ServerCodec::Legacy { format, .. } => self.read_legacy(format, record, service),
        }
    }

    /// Where a reply to `record` would go, as far as its routing tells, the value unread (for
    /// a record refused before decoding: an oversize one).
    pub fn reply_address(&self, record: &ConsumerRecord) -> (Option<RequestId>, Option<ReplyTo>) {
        match self {
            ServerCodec::Native { .. } => match Request::from_record(record) {
                Ok(r) => (Some(r.id), r.reply_to),
                Err(e) => (e.id, e.reply_to),
            },
            ServerCodec::Legacy { .. } => match self.legacy_address(record.key.as_deref()) {
                Some((id, to)) => (Some(id), Some(to)),
                None => (None, None),
            },
        }
    }

    /// The reply to request `id`: `outcome` is the plaintext result or a status; an OK result,
    /// and a typed service's error value ([`HandlerError::details`]), are sealed when payload
    /// security is on (a refusal, which has no value, never is: the caller may lack the key).
    pub fn reply(
        &self,
        id: RequestId,
        outcome: Result<Bytes, HandlerError>,
        server_id: &str,
        handler_us: u64,
        queue_ms: i64,
    ) -> Reply {
        let (status, message, payload) = match outcome {
            Ok(payload) => (StatusCode::Ok, String::new(), payload),
            // A typed service's own error value travels as the value of the error reply.
            Err(e) => (e.code, e.message, e.details.unwrap_or_default()),
        };
        let mut reply = Reply {
            id,
            status,
            message,
            server_id: server_id.to_string(),
            handler_us,
            queue_ms,
            payload,
            key_id: None,
        };
        if let (
            ServerCodec::Native {
                sealing: Some(security),
                ..
            },
            true,
        ) = (
            self,
            reply.status == StatusCode::Ok || !reply.payload.is_empty(),
        ) {
            let (key_id, sealed) = security.seal(&reply.aad(), &reply.payload);
            reply.payload = sealed;
            reply.key_id = Some(key_id);
        }
        reply
    }

    /// The record that carries `reply` (already sealed by [`reply`](Self::reply)).
    pub fn reply_record(&self, reply: &Reply) -> ProducerRecord {
        match self {
            ServerCodec::Native { .. } => reply.to_record(),
            ServerCodec::Legacy { format, .. } => legacy_reply_record(format, reply),
        }
    }

    fn legacy_reply_to(&self, key: &[u8]) -> ReplyTo {
        match self {
            ServerCodec::Legacy {
                reply_topic,
                reply_partitions,
                ..
            } => ReplyTo {
                topic: reply_topic.clone(),
                partition: legacy::reply_partition(key, *reply_partitions),
            },
            ServerCodec::Native { .. } => unreachable!("only called for the legacy format"),
        }
    }

    /// The task id a legacy key holds and where its reply goes.
    fn legacy_address(&self, key: Option<&[u8]>) -> Option<(RequestId, ReplyTo)> {
        let key = key?;
        Some((legacy::task_id(key)?, self.legacy_reply_to(key)))
    }

    fn read_legacy(
        &self,
        format: &LegacyFormat,
        record: &ConsumerRecord,
        service: &dyn Service,
    ) -> Result<Incoming, Refused> {
        let fail =
            |kind, reason: String, id: Option<RequestId>, reply_to: Option<ReplyTo>| Refused {
                kind,
                reason,
                id,
                reply_to,
            };
        let Some(key) = record.key.as_deref() else {
            return Err(fail(
                RefusedKind::Malformed,
                "the record has no key (a task id)".into(),
                None,
                None,
            ));
        };
        if key == legacy::HANDSHAKE {
            let value = Bytes::from_static(legacy::HANDSHAKE);
            let answer = ProducerRecord {
                key: Some(value.clone()),
                value: Some(value),
                // A `checksum` header with no value, as the Python package sends.
                headers: vec![Header {
                    key: "checksum".into(),
                    value: None,
                }],
                timestamp: None,
            };
            return Ok(Incoming::Handshake(self.legacy_reply_to(key), answer));
        }
        let Some((id, reply_to)) = self.legacy_address(Some(key)) else {
            return Err(fail(
                RefusedKind::Malformed,
                format!(
                    "the key {:?} is not a task id (32 hex digits)",
                    String::from_utf8_lossy(&key[..key.len().min(64)])
                ),
                None,
                None,
            ));
        };
        let value = record.value.as_deref().unwrap_or_default();
        let plain = match format.open(value, &record.headers) {
            Ok(p) => p,
            Err(OpenError::Checksum { found, expected }) => {
                return Err(fail(
                    RefusedKind::Unauthentic,
                    format!("checksum mismatch (header {found:?}, value {expected:?}): refused"),
                    Some(id),
                    Some(reply_to),
                ))
            }
            Err(OpenError::Malformed(reason)) => {
                return Err(fail(
                    RefusedKind::Malformed,
                    reason,
                    Some(id),
                    Some(reply_to),
                ))
            }
        };
        let call = LegacyCall::decode(&plain)
            .map_err(|r| fail(RefusedKind::Malformed, r, Some(id), Some(reply_to.clone())))?;
        let mut request = Request {
            id,
            method: call.method.clone(),
            reply_to: Some(reply_to),
            deadline_ms: None,
            sent_ms: record.timestamp,
            payload: Bytes::new(),
            key_id: None,
            metadata: read_metadata(record),
        };
        let params = service.parameters(&call.method);
        match call.positional(params.as_deref()) {
            Ok(args) => {
                request.payload = args;
                Ok(Incoming::Call(request))
            }
            Err(reason) => Ok(Incoming::Rejected(
                request,
                HandlerError::new(StatusCode::InvalidArgument, reason),
            )),
        }
    }
}

/// With payload security: checks age and seal and replaces the payload with its plaintext.
/// Without: refuses a sealed request.
fn unseal(
    sealing: Option<&PayloadSecurity>,
    replay_window: Duration,
    request: &mut Request,
    now_ms: i64,
) -> Result<(), String> {
    let Some(security) = sealing else {
        return match request.key_id {
            Some(_) => Err("the request is sealed but this server has no payload key".into()),
            None => Ok(()),
        };
    };
    let Some(key_id) = request.key_id else {
        return Err("this service requires sealed requests (payload security)".into());
    };
    let age = now_ms - request.sent_ms;
    if age > replay_window.as_millis() as i64 {
        return Err(format!(
            "the request was sent {age} ms ago, beyond the replay window of {replay_window:?}"
        ));
    }
    request.payload = security
        .open(key_id, &request.aad(), &request.payload)
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn legacy_reply_record(format: &LegacyFormat, reply: &Reply) -> ProducerRecord {
    let failed = reply.status != StatusCode::Ok;
    let class = legacy::pickle::exception_class(reply.status);
    let body = LegacyReply {
        ret: if failed {
            Bytes::new()
        } else {
            reply.payload.clone()
        },
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
    let (value, header) = format.seal(&body.encode());
    ProducerRecord {
        key: Some(Bytes::from(reply.id.to_string())),
        value: Some(value),
        headers: vec![header],
        timestamp: None,
    }
}

/// A call about to be sent, in plaintext.
pub(crate) struct Outgoing {
    /// Its id.
    pub id: RequestId,
    /// Method name.
    pub method: String,
    /// Positional arguments, msgpack array.
    pub args: Bytes,
    /// Keyword arguments, msgpack map (the legacy format only).
    pub kwargs: Option<Bytes>,
    /// Where the reply goes; `None`: one-way.
    pub reply_to: Option<ReplyTo>,
    /// Absolute deadline, ms since the epoch.
    pub deadline_ms: Option<i64>,
    /// Now, ms since the epoch.
    pub sent_ms: i64,
    /// Caller metadata.
    pub metadata: Metadata,
    /// Routing key.
    pub routing_key: Option<Bytes>,
}

/// A reply as the caller reads it, opened.
pub(crate) enum Opened {
    /// The result (plaintext msgpack) and where and how it ran.
    Value {
        /// Result.
        payload: Bytes,
        /// Server id.
        server_id: String,
        /// Handler time.
        server_time: Duration,
        /// Queue wait.
        queue_wait: Duration,
    },
    /// An error status (native), or a refusal of the reply itself (seal, checksum, garbage).
    Status(StatusCode, String),
    /// An error status carrying a typed service's error value (plaintext msgpack; wire/WIRE.md
    /// section 4).
    Failed(StatusCode, String, Bytes),
    /// A Python server's exception.
    Remote {
        /// Last line of its traceback.
        exception: String,
        /// The traceback.
        traceback: String,
    },
}

/// The caller's side of the codec.
#[derive(Debug, Clone)]
pub(crate) enum ClientCodec {
    /// kafka-rpc's envelope, optionally sealed.
    Native {
        /// Payload security: seal requests, require sealed OK replies.
        sealing: Option<PayloadSecurity>,
    },
    /// The Python kafka-rpc 1.0.8 format.
    Legacy(LegacyFormat),
}

impl ClientCodec {
    /// The request record of `call`.
    pub fn request_record(&self, call: Outgoing) -> Result<ProducerRecord, String> {
        match self {
            ClientCodec::Native { sealing } => {
                if call.kwargs.is_some() {
                    return Err("keyword arguments exist only in the Python 1.0.8 format".into());
                }
                let mut request = Request {
                    id: call.id,
                    method: call.method,
                    reply_to: call.reply_to,
                    deadline_ms: call.deadline_ms,
                    sent_ms: call.sent_ms,
                    payload: call.args,
                    key_id: None,
                    metadata: call.metadata,
                };
                if let Some(security) = sealing {
                    let (key_id, sealed) = security.seal(&request.aad(), &request.payload);
                    request.payload = sealed;
                    request.key_id = Some(key_id);
                }
                Ok(request.to_record(call.routing_key))
            }
            ClientCodec::Legacy(format) => {
                let kwargs = call.kwargs.unwrap_or_else(|| Bytes::from_static(&[0x80]));
                let value = LegacyCall::encode(&call.method, &call.args, &kwargs)?;
                let (value, checksum) = format.seal(&value);
                let mut headers = vec![checksum];
                // Metadata rides as extra headers after `checksum` (the Python server reads
                // the first header only); our legacy server hands it to the handler.
                for (name, v) in call.metadata.iter() {
                    headers.push(Header::new(
                        format!("{}{name}", crate::service::METADATA_HEADER_PREFIX),
                        v.clone(),
                    ));
                }
                Ok(ProducerRecord {
                    key: Some(Bytes::from(call.id.to_string())),
                    value: Some(value),
                    headers,
                    timestamp: None,
                })
            }
        }
    }

    /// Which call a record of the reply topic answers (`Ok(None)`: a record for nobody, a
    /// legacy handshake answer); the record is opened later by the waiting call.
    pub fn reply_id(&self, record: &ConsumerRecord) -> Result<Option<RequestId>, String> {
        match self {
            ClientCodec::Native { .. } => Reply::from_record(record)
                .map(|r| Some(r.id))
                .map_err(|e| e.to_string()),
            ClientCodec::Legacy(_) => match record.key.as_deref() {
                Some(legacy::HANDSHAKE) => Ok(None),
                Some(key) => match legacy::task_id(key) {
                    Some(id) => Ok(Some(id)),
                    None => Err(format!(
                        "the key {:?} is not a task id",
                        String::from_utf8_lossy(&key[..key.len().min(64)])
                    )),
                },
                None => Err("a record with no key".into()),
            },
        }
    }

    /// Opens the reply record of a call.
    pub fn open_reply(&self, record: &ConsumerRecord) -> Opened {
        match self {
            ClientCodec::Native { sealing } => {
                let reply = match Reply::from_record(record) {
                    Ok(r) => r,
                    Err(e) => {
                        return Opened::Status(
                            StatusCode::DataLoss,
                            format!("the reply cannot be read: {e}"),
                        )
                    }
                };
                let failed = reply.status != StatusCode::Ok;
                if failed && reply.payload.is_empty() {
                    return Opened::Status(reply.status, reply.message);
                }
                let payload = match (sealing, reply.key_id) {
                    (None, None) => reply.payload.clone(),
                    (Some(security), Some(key_id)) => {
                        match security.open(key_id, &reply.aad(), &reply.payload) {
                            Ok(p) => p,
                            Err(e) => {
                                return Opened::Status(
                                    StatusCode::Unauthenticated,
                                    format!(
                                        "the reply from {} failed authentication: {e}",
                                        reply.server_id
                                    ),
                                )
                            }
                        }
                    }
                    (Some(_), None) => {
                        return Opened::Status(
                            StatusCode::Unauthenticated,
                            format!(
                                "the reply from {} is not sealed; payload security requires it",
                                reply.server_id
                            ),
                        )
                    }
                    (None, Some(_)) => {
                        return Opened::Status(
                            StatusCode::Unauthenticated,
                            "the reply is sealed but this client has no payload key".into(),
                        )
                    }
                };
                if failed {
                    return Opened::Failed(reply.status, reply.message, payload);
                }
                Opened::Value {
                    payload,
                    server_id: reply.server_id,
                    server_time: Duration::from_micros(reply.handler_us),
                    queue_wait: Duration::from_millis(reply.queue_ms.max(0) as u64),
                }
            }
            ClientCodec::Legacy(format) => {
                let value = record.value.as_deref().unwrap_or_default();
                let plain = match format.open(value, &record.headers) {
                    Ok(p) => p,
                    Err(e @ OpenError::Checksum { .. }) => {
                        return Opened::Status(
                            StatusCode::Unauthenticated,
                            format!("the reply failed its check: {e}"),
                        )
                    }
                    Err(OpenError::Malformed(reason)) => {
                        return Opened::Status(
                            StatusCode::DataLoss,
                            format!("the reply cannot be read: {reason}"),
                        )
                    }
                };
                let reply = match LegacyReply::decode(&plain) {
                    Ok(r) => r,
                    Err(reason) => {
                        return Opened::Status(
                            StatusCode::DataLoss,
                            format!("the reply cannot be read: {reason}"),
                        )
                    }
                };
                if reply.exception.is_some() || reply.traceback.is_some() {
                    return Opened::Remote {
                        exception: reply.exception_line(),
                        traceback: reply.traceback.clone().unwrap_or_default(),
                    };
                }
                Opened::Value {
                    payload: reply.ret,
                    server_id: reply.server_id,
                    server_time: Duration::from_secs_f64(reply.tact_time.clamp(0.0, 1e9)),
                    queue_wait: Duration::ZERO,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Methods;

    fn consumer(r: ProducerRecord) -> ConsumerRecord {
        ConsumerRecord {
            topic: "krpc.Svc.requests".into(),
            partition: 0,
            offset: 0,
            timestamp: r.timestamp.unwrap_or(0),
            log_append_time: false,
            key: r.key,
            value: r.value,
            headers: r.headers,
        }
    }

    fn outgoing(metadata: Metadata) -> Outgoing {
        Outgoing {
            id: RequestId([3; 16]),
            method: "add".into(),
            args: crate::codec::encode_args(&(1, 2)).unwrap(),
            kwargs: None,
            reply_to: Some(ReplyTo {
                topic: "krpc.replies".into(),
                partition: 1,
            }),
            deadline_ms: None,
            sent_ms: crate::envelope::now_ms(),
            metadata,
            routing_key: None,
        }
    }

    #[test]
    fn sealed_requests_bind_their_metadata() {
        let key = PayloadSecurity::new(1, "correct horse battery").unwrap();
        let client = ClientCodec::Native {
            sealing: Some(key.clone()),
        };
        let server = ServerCodec::Native {
            sealing: Some(key),
            replay_window: Duration::from_secs(600),
        };
        let now = crate::envelope::now_ms();
        let service = Methods::new();
        let record = client
            .request_record(outgoing(Metadata::new().with("tenant", "acme")))
            .unwrap();
        match server.read_request(&consumer(record.clone()), &service, now) {
            Ok(Incoming::Call(r)) => {
                assert_eq!(r.metadata.get_str("tenant"), Some("acme"));
                assert_eq!(
                    crate::codec::decode::<(i64, i64)>(&r.payload).unwrap(),
                    (1, 2)
                );
            }
            _ => panic!("a sealed request with metadata opens"),
        }
        // Changing, adding or removing an entry fails the seal.
        let edits: [fn(&mut ProducerRecord); 3] = [
            |r| r.headers.last_mut().unwrap().value = Some(Bytes::from_static(b"evil")),
            |r| r.headers.push(Header::new("krpc-meta-role", "admin")),
            |r| {
                r.headers.pop();
            },
        ];
        for edit in edits {
            let mut forged = record.clone();
            edit(&mut forged);
            match server.read_request(&consumer(forged), &service, now) {
                Err(refused) => assert_eq!(refused.kind, RefusedKind::Unauthentic),
                Ok(_) => panic!("a request with edited metadata was accepted"),
            }
        }
    }

    #[test]
    fn one_codec_reads_what_the_other_side_wrote_in_both_formats() {
        let service = Methods::new();
        let now = crate::envelope::now_ms();
        for (client, server) in [
            (
                ClientCodec::Native { sealing: None },
                ServerCodec::Native {
                    sealing: None,
                    replay_window: Duration::from_secs(600),
                },
            ),
            (
                ClientCodec::Legacy(LegacyFormat {
                    verify: true,
                    cipher: None,
                }),
                ServerCodec::Legacy {
                    format: LegacyFormat {
                        verify: true,
                        cipher: None,
                    },
                    reply_topic: "krpc_svc_client".into(),
                    reply_partitions: 64,
                },
            ),
        ] {
            let record = client
                .request_record(outgoing(Metadata::new().with("trace", "t1")))
                .unwrap();
            let Ok(Incoming::Call(request)) = server.read_request(&consumer(record), &service, now)
            else {
                panic!("the request reads back");
            };
            assert_eq!(request.id, RequestId([3; 16]));
            assert_eq!(request.method, "add");
            assert_eq!(request.metadata.get_str("trace"), Some("t1"));
            let reply = server.reply(
                request.id,
                Ok(crate::codec::encode(&3i64).unwrap()),
                "s1",
                5,
                0,
            );
            let back = consumer(server.reply_record(&reply));
            assert_eq!(client.reply_id(&back).unwrap(), Some(request.id));
            match client.open_reply(&back) {
                Opened::Value {
                    payload, server_id, ..
                } => {
                    assert_eq!(crate::codec::decode::<i64>(&payload).unwrap(), 3);
                    assert_eq!(server_id, "s1");
                }
                _ => panic!("the reply opens"),
            }
        }
    }
}
