//! The caller's side: [`Client::call`] and [`Client::notify`].
//!
//! Each client instance reads its own slot (partition) of the shared reply topic by manual
//! assignment, starting at the slot's end offset read before the first call, so no reply is
//! missed and no consumer group or rebalance is involved; replies for other instances sharing
//! the slot are dropped by request id.

mod options;
pub(crate) mod replies;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_wire::producer::partitioner::partition_for_key;
use kafka_wire::{FetchConfig, Fetcher, OffsetSpec, Producer, ProducerConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use options::{CallOptions, ClientOptions, NotifyOptions};

use crate::codec;
use crate::envelope::{now_ms, ReplyTo, Request, RequestId};
use crate::error::RpcError;
use crate::naming::{check_service, request_topic};
use crate::status::StatusCode;
use crate::topics::TopicCache;
use replies::{Parsed, Pending};

/// A call's result with where and how it ran.
#[derive(Debug, Clone)]
pub struct Response<R> {
    /// The value the handler returned.
    pub value: R,
    /// Timings and origin.
    pub meta: CallMeta,
}

/// Where and how a call ran.
#[derive(Debug, Clone)]
pub struct CallMeta {
    /// The call's id.
    pub request_id: RequestId,
    /// From the call to its reply, as the caller measured it.
    pub elapsed: Duration,
    /// Time the handler ran.
    pub server_time: Duration,
    /// Time the request waited before a server picked it up (clocks of caller and server).
    pub queue_wait: Duration,
    /// The server that answered.
    pub server_id: String,
}

struct Inner {
    kafka: kafka_wire::Client,
    producer: Producer,
    pending: Arc<Pending<crate::envelope::Reply>>,
    reply_to: ReplyTo,
    topics: TopicCache,
    options: ClientOptions,
    _reader: replies::ReaderTask,
}

/// A client instance; cheap to clone (clones share the reply slot and the connections).
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use kafka_rpc::kafka_wire::{Client as Kafka, ClientConfig};
/// use kafka_rpc::{CallOptions, Client, ClientOptions, NotifyOptions};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let kafka = Kafka::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let client = Client::connect(kafka, ClientOptions::default()).await?;
/// let options = CallOptions::default().timeout(Duration::from_secs(10));
/// let sum = client.call::<_, i64>("Sum", "add", &(1, 2), options).await?;
/// assert_eq!(sum.value, 3);
/// println!("served by {} in {:?}", sum.meta.server_id, sum.meta.elapsed);
/// // A one-way job: stored in Kafka now, run whenever a server of `Sum` is up.
/// client.notify("Sum", "add", &(5, 6), NotifyOptions::default()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Prepares a client: creates the reply topic if needed, takes the slot of `instance_id`,
    /// and reads the slot's end offset before returning, so no reply can be missed.
    pub async fn connect(
        kafka: kafka_wire::Client,
        options: ClientOptions,
    ) -> Result<Self, RpcError> {
        let topics = TopicCache::default();
        let reply_topic = options.reply_topic.clone();
        let partitions = topics
            .ensure_counted(
                &kafka,
                &reply_topic,
                options.topics.reply_partitions,
                options.topics.replication_factor,
            )
            .await?;
        let slot = partition_for_key(options.instance_id.as_bytes(), partitions);
        // A batch in our slot that cannot be decoded must not stop every later reply, and a
        // hole (a broker showing a later reply first) is fetched again, not jumped.
        let fetch = FetchConfig {
            max_wait: options.reply_fetch_max_wait,
            skip_undecodable: true,
            hole_wait: Some(crate::server::HOLE_WAIT),
            ..FetchConfig::default()
        };
        let mut fetcher = Fetcher::new(kafka.clone(), fetch);
        fetcher
            .assign_at(&reply_topic, slot, OffsetSpec::Latest)
            .await
            .map_err(|e| {
                RpcError::kafka(
                    format!("reading the end of reply slot {reply_topic}/{slot}"),
                    e,
                )
            })?;
        let pending = Arc::new(Pending::default());
        let reader = replies::spawn_reader(fetcher, pending.clone(), |record| {
            crate::envelope::Reply::from_record(record)
                .map(|r| Parsed::Reply(r.id, r))
                .map_err(|e| e.to_string())
        });
        let producer = Producer::new(
            kafka.clone(),
            ProducerConfig {
                linger: options.linger,
                ..ProducerConfig::default()
            },
        );
        tracing::debug!(instance = %options.instance_id, %reply_topic, slot, "client ready");
        Ok(Self {
            inner: Arc::new(Inner {
                kafka,
                producer,
                pending,
                reply_to: ReplyTo {
                    topic: reply_topic,
                    partition: slot,
                },
                topics,
                options,
                _reader: reader,
            }),
        })
    }

    /// Where this client's replies arrive.
    pub fn reply_to(&self) -> &ReplyTo {
        &self.inner.reply_to
    }

    /// Calls waiting for their reply now.
    pub fn pending_calls(&self) -> usize {
        self.inner.pending.count()
    }

    /// Replies received for no call of ours, and records in our slot that were not replies.
    pub fn dropped_replies(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.inner.pending.stray.load(Relaxed),
            self.inner.pending.malformed.load(Relaxed),
        )
    }

    /// Calls `service.method(args)` and waits for its result. `args` is a tuple of the
    /// positional arguments: `(a, b)`, or `(x,)` for one.
    pub async fn call<A, R>(
        &self,
        service: &str,
        method: &str,
        args: &A,
        options: CallOptions,
    ) -> Result<Response<R>, RpcError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let started = Instant::now();
        let timeout = options
            .timeout
            .unwrap_or(self.inner.options.default_timeout);
        let request = self.request(service, method, args, Some(timeout), true)?;
        let id = request.id;
        let (reply, _guard) = self.inner.pending.register(id);
        let stored = std::sync::atomic::AtomicBool::new(false);
        let timed_out = || RpcError::Timeout {
            service: service.into(),
            method: method.into(),
            request_id: id.to_string(),
            timeout,
            stored: stored.load(std::sync::atomic::Ordering::Relaxed),
        };
        let reply = tokio::time::timeout(timeout, async {
            self.send(service, &request, options.routing_key).await?;
            stored.store(true, std::sync::atomic::Ordering::Relaxed);
            reply.await.map_err(|_| RpcError::Closed)
        })
        .await
        .map_err(|_| timed_out())??;
        if reply.status != StatusCode::Ok {
            return Err(RpcError::Status {
                service: service.into(),
                method: method.into(),
                request_id: id.to_string(),
                code: reply.status,
                message: reply.message,
            });
        }
        let payload = self.open_reply(service, method, &reply)?;
        let value = codec::decode(&payload).map_err(|reason| RpcError::Codec {
            context: format!("decoding the result of {service}.{method} (request {id})"),
            reason,
        })?;
        let meta = CallMeta {
            request_id: id,
            elapsed: started.elapsed(),
            server_time: Duration::from_micros(reply.handler_us),
            queue_wait: Duration::from_millis(reply.queue_ms.max(0) as u64),
            server_id: reply.server_id,
        };
        Ok(Response { value, meta })
    }

    /// The reply's payload, opened when payload security is on (an unsealed result is refused).
    fn open_reply(
        &self,
        service: &str,
        method: &str,
        reply: &crate::envelope::Reply,
    ) -> Result<bytes::Bytes, RpcError> {
        let refuse = |message: String| RpcError::Status {
            service: service.into(),
            method: method.into(),
            request_id: reply.id.to_string(),
            code: StatusCode::Unauthenticated,
            message,
        };
        match (&self.inner.options.security, reply.key_id) {
            (None, None) => Ok(reply.payload.clone()),
            (Some(security), Some(key_id)) => security
                .open(key_id, &reply.aad(), &reply.payload)
                .map_err(|e| {
                    refuse(format!(
                        "the reply from {} failed authentication: {e}",
                        reply.server_id
                    ))
                }),
            (Some(_), None) => Err(refuse(format!(
                "the reply from {} is not sealed; payload security requires it",
                reply.server_id
            ))),
            (None, Some(_)) => Err(refuse(
                "the reply is sealed but this client has no payload key".into(),
            )),
        }
    }

    /// Sends a one-way call (a job): returns once Kafka has stored it. It runs when a server of
    /// `service` is up, however long that takes, unless `options.deadline` passes first.
    pub async fn notify<A: Serialize + ?Sized>(
        &self,
        service: &str,
        method: &str,
        args: &A,
        options: NotifyOptions,
    ) -> Result<RequestId, RpcError> {
        let request = self.request(service, method, args, options.deadline, false)?;
        self.send(service, &request, options.routing_key).await?;
        Ok(request.id)
    }

    fn request<A: Serialize + ?Sized>(
        &self,
        service: &str,
        method: &str,
        args: &A,
        budget: Option<Duration>,
        reply: bool,
    ) -> Result<Request, RpcError> {
        check_service(service).map_err(RpcError::InvalidArgument)?;
        if method.is_empty() {
            return Err(RpcError::InvalidArgument("the method name is empty".into()));
        }
        let payload = codec::encode_args(args).map_err(|reason| RpcError::Codec {
            context: format!("encoding the arguments of {service}.{method}"),
            reason,
        })?;
        let sent_ms = now_ms();
        let mut request = Request {
            id: RequestId::random(),
            method: method.to_string(),
            reply_to: reply.then(|| self.inner.reply_to.clone()),
            deadline_ms: budget
                .map(|b| sent_ms.saturating_add(b.as_millis().min(i64::MAX as u128) as i64)),
            sent_ms,
            payload,
            key_id: None,
        };
        if let Some(security) = &self.inner.options.security {
            let (key_id, sealed) = security.seal(&request.aad(), &request.payload);
            request.payload = sealed;
            request.key_id = Some(key_id);
        }
        Ok(request)
    }

    async fn send(
        &self,
        service: &str,
        request: &Request,
        routing_key: Option<bytes::Bytes>,
    ) -> Result<(), RpcError> {
        let inner = &self.inner;
        let topic = request_topic(service);
        let t = &inner.options.topics;
        inner
            .topics
            .ensure(
                &inner.kafka,
                &topic,
                t.request_partitions,
                t.replication_factor,
            )
            .await?;
        let context = || {
            format!(
                "sending {service}.{} (request {})",
                request.method, request.id
            )
        };
        let delivery = inner
            .producer
            .send(&topic, request.to_record(routing_key))
            .await
            .map_err(|e| RpcError::kafka(context(), e))?;
        delivery.await.map_err(|e| RpcError::kafka(context(), e))?;
        Ok(())
    }
}
