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
use crate::client::{
    check, check_max_in_flight, with_setters, CallCore, CallOptions, CallSpec, Response,
};
use crate::codec;
use crate::codec::record::ClientCodec;
use crate::error::RpcError;
use crate::topic_setup::{TopicCache, TopicKind, TopicOptions};

/// Settings of a [`LegacyClient`].
///
/// `#[non_exhaustive]`: start from [`LegacyClientOptions::new`] and chain the `with_*` setters;
/// [`LegacyClient::connect`] checks it ([`LegacyClientOptions::validate`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
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

    /// Checks every setting, as [`LegacyClient::connect`] does before touching the cluster: a
    /// valid Python `topic_name`, a non-zero default timeout, at least one partition, and
    /// `max_in_flight` within 1..=[`tokio::sync::Semaphore::MAX_PERMITS`].
    ///
    /// # Errors
    ///
    /// [`RpcError::InvalidArgument`] naming the setting and its value.
    pub fn validate(&self) -> Result<(), RpcError> {
        check_name(&self.name)
            .map_err(|e| RpcError::InvalidArgument(format!("LegacyClientOptions::name: {e}")))?;
        crate::client::check_durations(
            "LegacyClientOptions",
            &[
                ("default_timeout", Some(self.default_timeout), false),
                (
                    "reply_fetch_max_wait",
                    Some(self.reply_fetch_max_wait),
                    true,
                ),
            ],
        )?;
        check(self.partitions >= 1, || {
            format!(
                "LegacyClientOptions::partitions must be >= 1, got {}",
                self.partitions
            )
        })?;
        check_max_in_flight("LegacyClientOptions", self.max_in_flight)
    }
}

with_setters! { LegacyClientOptions {
    /// Sets [`name`](Self::name) (the Python `topic_name`).
    with_name(name: into String);
    /// Sets [`format`](Self::format).
    with_format(format: LegacyFormat);
    /// Sets [`default_timeout`](Self::default_timeout).
    with_default_timeout(default_timeout: Duration);
    /// Sets [`reply_fetch_max_wait`](Self::reply_fetch_max_wait) (Java `fetch.max.wait.ms`).
    with_reply_fetch_max_wait(reply_fetch_max_wait: Duration);
    /// Sets [`partitions`](Self::partitions).
    with_partitions(partitions: i32);
    /// Sets [`max_in_flight`](Self::max_in_flight).
    with_max_in_flight(max_in_flight: usize);
}}

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
    ///
    /// Fails with [`RpcError::InvalidArgument`] naming the setting, before touching the
    /// cluster, when `options` does not pass [`LegacyClientOptions::validate`].
    pub async fn connect(
        kafka: krpc_kafka::KafkaClient,
        options: LegacyClientOptions,
    ) -> Result<Self, RpcError> {
        options.validate()?;
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
            FetchConfig::default()
                .with_max_wait(options.reply_fetch_max_wait)
                .with_skip_undecodable(true)
                .with_hole_wait(crate::server::HOLE_WAIT),
        )
        .map_err(|e| RpcError::kafka("the reply reader's fetch settings", e))?;
        // Every partition's end in one ListOffsets request per leader.
        let all: Vec<i32> = (0..partitions).collect();
        let ends = kafka
            .list_offsets(&reply_topic, &all, OffsetSpec::Latest)
            .await
            .map_err(|e| RpcError::kafka(format!("reading the end of {reply_topic}"), e))?;
        for (p, end) in ends {
            fetcher.assign(&reply_topic, p, end);
        }
        let producer = Producer::new(kafka, ProducerConfig::default().with_linger(Duration::ZERO))
            .map_err(|e| RpcError::kafka("the request producer's settings", e))?;
        // The one place this client's record format is chosen.
        let codec = ClientCodec::Legacy(options.format.clone());
        let core = CallCore::new(producer, fetcher, codec, None, options.max_in_flight);
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
            options.validate()?;
            let timeout = options.timeout.unwrap_or(inner.options.default_timeout);
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
