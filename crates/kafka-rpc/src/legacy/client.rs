//! [`LegacyClient`]: calls a Python kafka-rpc 1.0.8 `KRPCServer` (or our server in legacy mode).
//!
//! It reads every partition of `krpc_<name>_client` by manual assignment from the end offsets
//! read before the first call, so it joins no consumer group (a Python client's group `krpc` is
//! never rebalanced by it) and misses no reply; replies to other callers are dropped by task id.

use std::sync::Arc;
use std::time::Duration;

use krpc_kafka::{FetchConfig, Fetcher, OffsetSpec, Producer, ProducerConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::message::LegacyFormat;
use super::names::{check_name, client_topic, server_topic, PYTHON_PARTITIONS};
use crate::client::{CallCore, CallOptions, CallSpec, Response};
use crate::codec;
use crate::codec::record::ClientCodec;
use crate::error::RpcError;
use crate::topic_setup::{TopicCache, TopicKind, TopicOptions};

/// Settings of a [`LegacyClient`].
#[derive(Debug, Clone)]
pub struct LegacyClientOptions {
    /// The service: the Python `topic_name`.
    pub name: String,
    /// Checksum and encryption settings; they must match the server's.
    pub format: LegacyFormat,
    /// Timeout of a call that sets none (the Python client's 10 s).
    pub default_timeout: Duration,
    /// Fetch max wait of the reply reader (`fetch.max.wait.ms`, default 500 ms; see
    /// [`crate::ClientOptions::reply_fetch_max_wait`] for why the test harness sets 10 ms).
    pub reply_fetch_max_wait: Duration,
    /// Partitions of the two topics if we create them (the Python server's 64).
    pub partitions: i32,
    /// Most calls waiting for their reply at once (see
    /// [`ClientOptions::max_in_flight`](crate::ClientOptions::max_in_flight)); default 1000.
    pub max_in_flight: usize,
}

impl LegacyClientOptions {
    /// Settings for calling the legacy service `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            format: LegacyFormat::default(),
            default_timeout: super::PYTHON_TIMEOUT,
            reply_fetch_max_wait: Duration::from_millis(500),
            partitions: PYTHON_PARTITIONS,
            max_in_flight: 1000,
        }
    }
}

/// A caller of one legacy service; cheap to clone.
/// # Examples
///
/// Calling a service of the Python kafka-rpc 1.0.8 (its `topic_name` is `"Calculator"`):
///
/// ```no_run
/// use kafka_rpc::krpc_kafka::{ClientConfig, KafkaClient};
/// use kafka_rpc::{CallOptions, LegacyClient, LegacyClientOptions};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let kafka = KafkaClient::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let calculator = LegacyClient::connect(kafka, LegacyClientOptions::new("Calculator")).await?;
/// let sum = calculator
///     .call::<_, i64>("add", &(1, 2), CallOptions::default())
///     .await?;
/// println!("{}", sum.value);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LegacyClient {
    inner: Arc<Inner>,
}

struct Inner {
    core: CallCore,
    options: LegacyClientOptions,
    request_topic: String,
}

impl LegacyClient {
    /// Creates the service's topics if missing (the Python format has no way to tell a
    /// service from its topics, and a Python client creates nothing: the topics are made here
    /// so a Rust caller may start before the Python server) and starts reading replies from
    /// their current end, before returning, so no reply can be missed.
    pub async fn connect(
        kafka: krpc_kafka::KafkaClient,
        options: LegacyClientOptions,
    ) -> Result<Self, RpcError> {
        check_name(&options.name).map_err(RpcError::InvalidArgument)?;
        let (request_topic, reply_topic) =
            (server_topic(&options.name), client_topic(&options.name));
        let topics = TopicCache::default();
        // The retention kafka-rpc gives its own kinds of topic (TopicOptions' defaults).
        let retention = TopicOptions::default();
        topics
            .ensure(
                &kafka,
                &request_topic,
                options.partitions,
                -1,
                &retention.configs(TopicKind::Requests),
            )
            .await?;
        let partitions = topics
            .ensure_counted(
                &kafka,
                &reply_topic,
                options.partitions,
                -1,
                &retention.configs(TopicKind::Replies),
            )
            .await?;
        let mut fetcher = Fetcher::new(
            kafka.clone(),
            FetchConfig {
                max_wait: options.reply_fetch_max_wait,
                skip_undecodable: true,
                hole_wait: Some(crate::server::HOLE_WAIT),
                ..FetchConfig::default()
            },
        );
        // Every partition's end in one ListOffsets request per leader.
        let all: Vec<i32> = (0..partitions).collect();
        let ends = kafka
            .list_offsets(&reply_topic, &all, OffsetSpec::Latest)
            .await
            .map_err(|e| RpcError::kafka(format!("reading the end of {reply_topic}"), e))?;
        for (p, end) in ends {
            fetcher.assign(&reply_topic, p, end);
        }
        let producer = Producer::new(
            kafka,
            ProducerConfig {
                linger: Duration::ZERO,
                ..ProducerConfig::default()
            },
        );
        // The one place this client's record format is chosen.
        let codec = ClientCodec::Legacy(options.format.clone());
        let core = CallCore::new(producer, fetcher, codec, None, options.max_in_flight)?;
        Ok(Self {
            inner: Arc::new(Inner {
                core,
                options,
                request_topic,
            }),
        })
    }

    /// Calls `method(*args)`; `args` is a tuple of the positional arguments.
    pub async fn call<A, R>(
        &self,
        method: &str,
        args: &A,
        options: CallOptions,
    ) -> Result<Response<R>, RpcError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.call_kw(method, args, &NoKwargs {}, options).await
    }

    /// Calls `method(*args, **kwargs)`; `kwargs` must serialize as a map (a struct or a map).
    /// The options' routing key is not used (the Python format keys records by task id); its
    /// metadata rides as `krpc-meta-` headers, which a Python server ignores.
    pub async fn call_kw<A, K, R>(
        &self,
        method: &str,
        args: &A,
        kwargs: &K,
        options: CallOptions,
    ) -> Result<Response<R>, RpcError>
    where
        A: Serialize + ?Sized,
        K: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        // Measured here (src/metrics.rs), failures before the send and after the reply included.
        let inner = &self.inner;
        let service = inner.options.name.as_str();
        crate::metrics::ClientCall::measure(service, method, async move {
            let timeout = options.timeout.unwrap_or(inner.options.default_timeout);
            options
                .metadata
                .check()
                .map_err(RpcError::InvalidArgument)?;
            let codec_error = |reason: String| RpcError::Codec {
                context: format!("encoding the arguments of {service}.{method}"),
                reason,
            };
            let args = codec::encode_args(args).map_err(codec_error)?;
            let kwargs = codec::encode(kwargs).map_err(codec_error)?;
            let spec = CallSpec {
                service,
                method,
                topic: inner.request_topic.clone(),
                args,
                kwargs: Some(kwargs),
                routing_key: None,
                metadata: options.metadata,
            };
            let (payload, meta) = inner.core.call(spec, timeout).await?;
            Response::decode(service, method, &payload, meta)
        })
        .await
    }

    /// Calls waiting for their reply now.
    pub fn pending_calls(&self) -> usize {
        self.inner.core.pending_calls()
    }
}

/// No keyword arguments: serializes as the empty map.
#[derive(Serialize)]
struct NoKwargs {}
