//! The caller's side: [`RpcClient::call`] and [`RpcClient::notify`].
//!
//! Each client instance reads its own slot (partition) of the shared reply topic by manual
//! assignment, starting at the slot's end offset read before the first call, so no reply is
//! missed and no consumer group or rebalance is involved; replies for other instances sharing
//! the slot are dropped by request id.

mod core;
mod options;
pub(crate) mod replies;

use std::sync::Arc;
use std::time::Duration;

use krpc_kafka::producer::partitioner::partition_for_key;
use krpc_kafka::{FetchConfig, Fetcher, OffsetSpec, Producer, ProducerConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub(crate) use options::{check, check_durations, check_max_in_flight, with_setters};
pub use options::{CallOptions, ClientOptions, NotifyOptions};

pub(crate) use self::core::{CallCore, CallSpec};
use crate::codec;
use crate::codec::record::ClientCodec;
use crate::envelope::{ReplyTo, RequestId};
use crate::error::RpcError;
use crate::naming::{check_service, request_topic};
use crate::topic_setup::{TopicCache, TopicKind};

/// A call's result with where and how it ran.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Response<R> {
    /// The value the handler returned.
    pub value: R,
    /// Timings and origin.
    pub meta: CallMeta,
}

impl<R: DeserializeOwned> Response<R> {
    /// The response of a call whose reply carried `payload` (msgpack), decoded into `R`.
    pub(crate) fn decode(
        service: &str,
        method: &str,
        payload: &[u8],
        meta: CallMeta,
    ) -> Result<Self, RpcError> {
        let value = codec::decode(payload).map_err(|reason| RpcError::Codec {
            context: format!(
                "decoding the result of {service}.{method} (request {})",
                meta.request_id
            ),
            reason,
        })?;
        Ok(Response { value, meta })
    }
}

/// Where and how a call ran.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    kafka: krpc_kafka::KafkaClient,
    core: CallCore,
    reply_to: ReplyTo,
    /// Request topics known to exist (or created, with `create_request_topics`).
    topics: TopicCache,
    options: ClientOptions,
}

/// A client instance; cheap to clone (clones share the reply slot, the connections and the
/// [`ClientOptions::max_in_flight`] bound).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use kafka_rpc::krpc_kafka::{ClientConfig, KafkaClient};
/// use kafka_rpc::{CallOptions, RpcClient, ClientOptions, NotifyOptions};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let kafka = KafkaClient::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let client = RpcClient::connect(kafka, ClientOptions::default()).await?;
/// let options = CallOptions::default().with_timeout(Duration::from_secs(10));
/// let sum = client.call::<_, i64>("Sum", "add", &(1, 2), options).await?;
/// assert_eq!(sum.value, 3);
/// println!("served by {} in {:?}", sum.meta.server_id, sum.meta.elapsed);
/// // A one-way job: stored in Kafka now, run whenever a server of `Sum` is up.
/// client.notify("Sum", "add", &(5, 6), NotifyOptions::default()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<Inner>,
}

impl RpcClient {
    /// Prepares a client: creates the reply topic if needed, takes the slot of `instance_id`,
    /// and reads the slot's end offset before returning, so no reply can be missed.
    ///
    /// Fails with [`RpcError::InvalidArgument`] naming the setting, before touching the
    /// cluster, when `options` does not pass [`ClientOptions::validate`].
    pub async fn connect(
        kafka: krpc_kafka::KafkaClient,
        options: ClientOptions,
    ) -> Result<Self, RpcError> {
        options.validate()?;
        let topics = TopicCache::default();
        let reply_topic = options.reply_topic.clone();
        let partitions = topics
            .ensure_counted(
                &kafka,
                &reply_topic,
                options.topics.reply_partitions,
                options.topics.replication_factor,
                &options.topics.configs(TopicKind::Replies),
            )
            .await?;
        let slot = partition_for_key(options.instance_id.as_bytes(), partitions);
        // A batch in our slot that cannot be decoded must not stop every later reply, and a
        // hole (a broker showing a later reply first) is fetched again, not jumped.
        let fetch = FetchConfig::default()
            .with_max_wait(options.reply_fetch_max_wait)
            .with_skip_undecodable(true)
            .with_hole_wait(crate::server::HOLE_WAIT);
        let mut fetcher = Fetcher::new(kafka.clone(), fetch)
            .map_err(|e| RpcError::kafka("the reply reader's fetch settings", e))?;
        fetcher
            .assign_at(&reply_topic, slot, OffsetSpec::Latest)
            .await
            .map_err(|e| {
                RpcError::kafka(
                    format!("reading the end of reply slot {reply_topic}/{slot}"),
                    e,
                )
            })?;
        let producer = Producer::new(
            kafka.clone(),
            ProducerConfig::default().with_linger(options.linger),
        )
        .map_err(|e| RpcError::kafka("the request producer's settings", e))?;
        let reply_to = ReplyTo {
            topic: reply_topic.clone(),
            partition: slot,
        };
        // The one place this client's record format and sealing are chosen.
        let codec = ClientCodec::Native {
            sealing: options.security.clone(),
        };
        let core = CallCore::new(
            producer,
            fetcher,
            codec,
            Some(reply_to.clone()),
            options.max_in_flight,
        );
        tracing::debug!(instance = %options.instance_id, %reply_topic, slot, "client ready");
        Ok(Self {
            inner: Arc::new(Inner {
                kafka,
                core,
                reply_to,
                topics,
                options,
            }),
        })
    }

    /// Where this client's replies arrive.
    pub fn reply_to(&self) -> &ReplyTo {
        &self.inner.reply_to
    }

    /// Calls waiting for their reply now.
    pub fn pending_calls(&self) -> usize {
        self.inner.core.pending_calls()
    }

    /// Replies received for no call of ours, and records in our slot that were not replies.
    pub fn dropped_replies(&self) -> (u64, u64) {
        self.inner.core.dropped_replies()
    }

    /// Calls `service.method(args)` and waits for its result. `args` is a tuple of the
    /// positional arguments: `(a, b)`, or `(x,)` for one.
    ///
    /// Errors: [`RpcError::UnknownService`] if the service has no request topic (unless
    /// [`ClientOptions::create_request_topics`]), [`RpcError::Timeout`] (code
    /// DEADLINE_EXCEEDED) if no reply comes within the timeout (waiting for room under
    /// [`ClientOptions::max_in_flight`] included), [`RpcError::Status`] for an error reply.
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
        // Measured here (src/metrics.rs), so a call refused before it is sent (an unknown
        // service, arguments that do not encode) and a result that does not decode count too.
        crate::metrics::ClientCall::measure(service, method, async move {
            options.validate()?;
            let timeout = options
                .timeout
                .unwrap_or(self.inner.options.default_timeout);
            let spec = self
                .prepare(service, method, args, options.routing_key, options.metadata)
                .await?;
            let (payload, meta) = self.inner.core.call(spec, timeout).await?;
            Response::decode(service, method, &payload, meta)
        })
        .await
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
        let result = async {
            options.validate()?;
            let spec = self
                .prepare(service, method, args, options.routing_key, options.metadata)
                .await?;
            self.inner.core.notify(spec, options.deadline).await
        }
        .await;
        // A failure counts in the errors (src/metrics.rs), refusals before the send included.
        if let Err(e) = &result {
            crate::metrics::client_one_way_failed(service, method, e);
        }
        result
    }

    /// Checks the call, encodes its arguments and checks that the service exists (its
    /// request topic): the call to send.
    async fn prepare<'a, A: Serialize + ?Sized>(
        &self,
        service: &'a str,
        method: &'a str,
        args: &A,
        routing_key: Option<bytes::Bytes>,
        metadata: crate::service::Metadata,
    ) -> Result<CallSpec<'a>, RpcError> {
        let topic = self.request_topic(service, method, &metadata).await?;
        Ok(CallSpec {
            service,
            method,
            topic,
            args: encode_args(service, method, args)?,
            kwargs: None,
            routing_key,
            metadata,
        })
    }

    /// Checks the call and that the service exists (its request topic); returns the topic.
    async fn request_topic(
        &self,
        service: &str,
        method: &str,
        metadata: &crate::service::Metadata,
    ) -> Result<String, RpcError> {
        check_service(service).map_err(RpcError::InvalidArgument)?;
        if method.is_empty() {
            return Err(RpcError::InvalidArgument("the method name is empty".into()));
        }
        metadata.check().map_err(RpcError::InvalidArgument)?;
        let topic = request_topic(service);
        if self.inner.topics.known(&topic) {
            return Ok(topic);
        }
        // Boxed: the first call of a service looks its topic up (or creates it), a large
        // future that, inline, would grow every call in flight.
        Box::pin(self.look_up_request_topic(service, topic)).await
    }

    /// The first call of `service`: checks (or creates) its request `topic` and remembers it.
    async fn look_up_request_topic(
        &self,
        service: &str,
        topic: String,
    ) -> Result<String, RpcError> {
        let inner = &self.inner;
        if inner.options.create_request_topics {
            let t = &inner.options.topics;
            inner
                .topics
                .ensure(
                    &inner.kafka,
                    &topic,
                    t.request_partitions,
                    t.replication_factor,
                    &t.configs(TopicKind::Requests),
                )
                .await?;
            return Ok(topic);
        }
        match inner.kafka.partition_count(&topic).await {
            Ok(_) => {
                inner.topics.remember(&topic);
                Ok(topic)
            }
            Err(krpc_kafka::Error::UnknownTopic { .. }) => Err(RpcError::UnknownService {
                service: service.into(),
                topic,
            }),
            Err(e) => Err(RpcError::kafka(format!("looking up {topic}"), e)),
        }
    }
}

fn encode_args<A: Serialize + ?Sized>(
    service: &str,
    method: &str,
    args: &A,
) -> Result<bytes::Bytes, RpcError> {
    codec::encode_args(args).map_err(|reason| RpcError::Codec {
        context: format!("encoding the arguments of {service}.{method}"),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns (a future), without calling it.
    fn returned_size<A, R>(_: &impl Fn(A) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every call in flight is a future of this size (`krpc bench` with 10,000 in flight held
    /// 10,000 of them): the metrics and span wrappers are combinators (as `async fn`s each
    /// doubled it), and the first call's topic lookup and the producer's metadata round trip
    /// are boxed. It was 13,864 bytes (debug build).
    #[test]
    fn a_call_future_is_small() {
        static ARGS: (i32,) = (1,);
        let call =
            |c: &'static RpcClient| c.call::<_, i32>("s", "m", &ARGS, CallOptions::default());
        let size = returned_size(&call);
        assert!(size <= 4096, "RpcClient::call's future is {size} bytes");
    }
}
