//! The call core shared by [`RpcClient`](crate::RpcClient) and [`LegacyClient`](crate::LegacyClient):
//! send a request, wait for its reply within the timeout, bound the calls in flight, and turn
//! the reply into a value or an error. The two clients differ only in their
//! [`ClientCodec`] (and in which topics they read and write).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use krpc_kafka::{ConsumerRecord, Fetcher, Producer};
use tokio::sync::Semaphore;

use super::replies::{spawn_reader, Parsed, Pending, ReaderTask};
use super::CallMeta;
use crate::codec::record::{ClientCodec, Opened, Outgoing};
use crate::envelope::{now_ms, ReplyTo, RequestId};
use crate::error::RpcError;
use crate::service::Metadata;
use crate::trace::{self, TraceContext};

/// One call, in plaintext.
pub(crate) struct CallSpec<'a> {
    /// Service name (for errors).
    pub service: &'a str,
    /// Method name.
    pub method: &'a str,
    /// Request topic.
    pub topic: String,
    /// Positional arguments, msgpack array.
    pub args: Bytes,
    /// Keyword arguments (legacy only).
    pub kwargs: Option<Bytes>,
    /// Routing key.
    pub routing_key: Option<Bytes>,
    /// Caller metadata.
    pub metadata: Metadata,
}

/// Producer, reply reader and codec of one client.
pub(crate) struct CallCore {
    producer: Producer,
    pending: Arc<Pending<ConsumerRecord>>,
    codec: ClientCodec,
    /// Where replies to native calls go (`None`: the legacy format, replies by task id).
    reply_to: Option<ReplyTo>,
    in_flight: Arc<Semaphore>,
    _reader: ReaderTask,
}

impl CallCore {
    /// Starts reading replies with `fetcher` (already positioned) and sending with `producer`.
    pub fn new(
        producer: Producer,
        fetcher: Fetcher,
        codec: ClientCodec,
        reply_to: Option<ReplyTo>,
        max_in_flight: usize,
    ) -> Self {
        // `max_in_flight` was checked by the options' `validate` (1..=MAX_PERMITS).
        let pending = Arc::new(Pending::default());
        let reader_codec = codec.clone();
        let reader = spawn_reader(fetcher, pending.clone(), move |record| {
            match reader_codec.reply_id(record)? {
                Some(id) => Ok(Parsed::Reply(id, record.clone())),
                None => Ok(Parsed::Ignore),
            }
        });
        Self {
            producer,
            pending,
            codec,
            reply_to,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            _reader: reader,
        }
    }

    /// Calls waiting for their reply now.
    pub fn pending_calls(&self) -> usize {
        self.pending.count()
    }

    /// Replies for no call of ours, and records in the reply slot that were not replies.
    pub fn dropped_replies(&self) -> (u64, u64) {
        (
            self.pending.stray.load(Ordering::Relaxed),
            self.pending.malformed.load(Ordering::Relaxed),
        )
    }

    /// Calls and waits at most `timeout` (a permit of `max_in_flight`, the send and the reply
    /// all count against it); the deadline `timeout` from now travels with the request.
    /// Returns the plaintext result and where and how it ran.
    pub async fn call(
        &self,
        spec: CallSpec<'_>,
        timeout: Duration,
    ) -> Result<(Bytes, CallMeta), RpcError> {
        // Tracing (src/trace.rs): the call's span, and the context its request carries. (Its
        // metrics are recorded by the public entry points, around failures before the send.)
        let id = RequestId::random();
        let (span, trace) = trace::client_span(spec.service, spec.method, &spec.topic, id, false);
        trace::in_call_span(span, self.traced_call(id, &trace, spec, timeout)).await
    }

    /// [`call`](Self::call) as request `id`, carrying `trace`.
    async fn traced_call(
        &self,
        id: RequestId,
        trace: &TraceContext,
        spec: CallSpec<'_>,
        timeout: Duration,
    ) -> Result<(Bytes, CallMeta), RpcError> {
        let started = Instant::now();
        let stored = AtomicBool::new(false);
        let service = spec.service;
        let method = spec.method;
        let topic = spec.topic.as_str();
        let timed_out = |stored: bool| RpcError::Timeout {
            service: service.into(),
            method: method.into(),
            request_id: id.to_string(),
            timeout,
            stored,
        };
        let sent_ms = now_ms();
        let outgoing = Outgoing {
            id,
            method: method.to_string(),
            args: spec.args,
            kwargs: spec.kwargs,
            reply_to: self.reply_to.clone(),
            deadline_ms: Some(
                sent_ms.saturating_add(timeout.as_millis().min(i64::MAX as u128) as i64),
            ),
            sent_ms,
            metadata: spec.metadata,
            routing_key: spec.routing_key,
        };
        let mut record = self.encode(outgoing, service, method)?;
        record.headers.extend(trace.to_headers());
        let record = tokio::time::timeout(timeout, async {
            // tarpc's max in-flight requests: wait (within the timeout) for room.
            let _permit = self
                .in_flight
                .acquire()
                .await
                .map_err(|_| RpcError::Closed)?;
            let (reply, _guard) = self.pending.register(id);
            self.send(topic, record, || {
                format!("sending {service}.{method} (request {id})")
            })
            .await?;
            stored.store(true, Ordering::Relaxed);
            reply.await.map_err(|_| RpcError::Closed)
        })
        .await
        .map_err(|_| timed_out(stored.load(Ordering::Relaxed)))??;
        let status = |code, message, details| RpcError::Status {
            service: service.into(),
            method: method.into(),
            request_id: id.to_string(),
            code,
            message,
            details,
        };
        match self.codec.open_reply(&record) {
            Opened::Value {
                payload,
                server_id,
                server_time,
                queue_wait,
            } => Ok((
                payload,
                CallMeta {
                    request_id: id,
                    elapsed: started.elapsed(),
                    server_time,
                    queue_wait,
                    server_id,
                },
            )),
            Opened::Status(code, message) => Err(status(code, message, None)),
            Opened::Failed(code, message, details) => {
                Err(status(code, message, Some(details.to_vec().into())))
            }
            Opened::Remote {
                exception,
                traceback,
            } => Err(RpcError::Remote {
                service: service.into(),
                method: method.into(),
                request_id: id.to_string(),
                exception,
                traceback,
            }),
        }
    }

    /// Sends a one-way call; returns once Kafka has stored it. `deadline`: after it no server
    /// starts it.
    pub async fn notify(
        &self,
        spec: CallSpec<'_>,
        deadline: Option<Duration>,
    ) -> Result<RequestId, RpcError> {
        let id = RequestId::random();
        let (span, trace) = trace::client_span(spec.service, spec.method, &spec.topic, id, true);
        trace::in_call_span(span, self.traced_notify(id, &trace, spec, deadline)).await
    }

    /// [`notify`](Self::notify) as request `id`, carrying `trace`.
    async fn traced_notify(
        &self,
        id: RequestId,
        trace: &TraceContext,
        spec: CallSpec<'_>,
        deadline: Option<Duration>,
    ) -> Result<RequestId, RpcError> {
        let sent_ms = now_ms();
        let (service, method) = (spec.service, spec.method);
        let outgoing = Outgoing {
            id,
            method: method.to_string(),
            args: spec.args,
            kwargs: spec.kwargs,
            reply_to: None,
            deadline_ms: deadline
                .map(|b| sent_ms.saturating_add(b.as_millis().min(i64::MAX as u128) as i64)),
            sent_ms,
            metadata: spec.metadata,
            routing_key: spec.routing_key,
        };
        let mut record = self.encode(outgoing, service, method)?;
        record.headers.extend(trace.to_headers());
        self.send(&spec.topic, record, || {
            format!("sending {service}.{method} (request {id})")
        })
        .await?;
        crate::metrics::client_one_way(service, method);
        Ok(id)
    }

    /// The request record of `outgoing`, in this client's format.
    fn encode(
        &self,
        outgoing: Outgoing,
        service: &str,
        method: &str,
    ) -> Result<krpc_kafka::ProducerRecord, RpcError> {
        self.codec
            .request_record(outgoing)
            .map_err(|reason| RpcError::Codec {
                context: format!("encoding the request of {service}.{method}"),
                reason,
            })
    }

    async fn send(
        &self,
        topic: &str,
        record: krpc_kafka::ProducerRecord,
        context: impl Fn() -> String,
    ) -> Result<(), RpcError> {
        let delivery = self
            .producer
            .send(topic, record)
            .await
            .map_err(|e| RpcError::kafka(context(), e))?;
        let stored = delivery.await.map_err(|e| RpcError::kafka(context(), e))?;
        trace::record_position(stored.partition, stored.offset);
        Ok(())
    }
}
