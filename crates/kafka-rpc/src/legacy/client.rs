//! [`LegacyClient`]: calls a Python kafka-rpc 1.0.8 `KRPCServer` (or our server in legacy mode).
//!
//! It reads every partition of `krpc_<name>_client` by manual assignment from the end offsets
//! read before the first call, so it joins no consumer group (a Python client's group `krpc` is
//! never rebalanced by it) and misses no reply; replies to other callers are dropped by task id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_wire::{
    ConsumerRecord, FetchConfig, Fetcher, OffsetSpec, Producer, ProducerConfig, ProducerRecord,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::message::{LegacyCall, LegacyFormat, LegacyReply, OpenError};
use super::names::{check_name, client_topic, server_topic, HANDSHAKE, PYTHON_PARTITIONS};
use crate::client::replies::{spawn_reader, Parsed, Pending, ReaderTask};
use crate::client::{CallMeta, CallOptions, Response};
use crate::codec;
use crate::envelope::RequestId;
use crate::error::RpcError;
use crate::status::StatusCode;
use crate::topics::TopicCache;

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
        }
    }
}

struct Inner {
    producer: Producer,
    pending: Arc<Pending<ConsumerRecord>>,
    options: LegacyClientOptions,
    request_topic: String,
    _reader: ReaderTask,
}

/// A caller of one legacy service; cheap to clone.
/// # Examples
///
/// Calling a service of the Python kafka-rpc 1.0.8 (its `topic_name` is `"Calculator"`):
///
/// ```no_run
/// use kafka_rpc::kafka_wire::{Client, ClientConfig};
/// use kafka_rpc::{CallOptions, LegacyClient, LegacyClientOptions};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let kafka = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
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

impl LegacyClient {
    /// Creates the service's topics if missing and starts reading replies from their current
    /// end, before returning, so no reply can be missed.
    pub async fn connect(
        kafka: kafka_wire::Client,
        options: LegacyClientOptions,
    ) -> Result<Self, RpcError> {
        check_name(&options.name).map_err(RpcError::InvalidArgument)?;
        let (request_topic, reply_topic) =
            (server_topic(&options.name), client_topic(&options.name));
        let topics = TopicCache::default();
        topics
            .ensure(&kafka, &request_topic, options.partitions, -1)
            .await?;
        let partitions = topics
            .ensure_counted(&kafka, &reply_topic, options.partitions, -1)
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
        let pending = Arc::new(Pending::default());
        let reader = spawn_reader(fetcher, pending.clone(), parse_reply);
        let producer = Producer::new(
            kafka,
            ProducerConfig {
                linger: Duration::ZERO,
                ..ProducerConfig::default()
            },
        );
        Ok(Self {
            inner: Arc::new(Inner {
                producer,
                pending,
                options,
                request_topic,
                _reader: reader,
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
        let inner = &self.inner;
        let service = inner.options.name.as_str();
        let started = Instant::now();
        let timeout = options.timeout.unwrap_or(inner.options.default_timeout);
        let codec_error = |reason: String| RpcError::Codec {
            context: format!("encoding the arguments of {service}.{method}"),
            reason,
        };
        let args = codec::encode_args(args).map_err(codec_error)?;
        let kwargs = codec::encode(kwargs).map_err(codec_error)?;
        let value = LegacyCall::encode(method, &args, &kwargs).map_err(codec_error)?;
        let id = RequestId::random();
        let (value, checksum) = inner.options.format.seal(&value);
        let record = ProducerRecord {
            key: Some(Bytes::from(id.to_string())),
            value: Some(value),
            headers: vec![checksum],
            timestamp: None,
        };
        let (reply, _guard) = inner.pending.register(id);
        let stored = std::sync::atomic::AtomicBool::new(false);
        let context = || format!("sending {service}.{method} (request {id})");
        let record = tokio::time::timeout(timeout, async {
            let delivery = inner
                .producer
                .send(&inner.request_topic, record)
                .await
                .map_err(|e| RpcError::kafka(context(), e))?;
            delivery.await.map_err(|e| RpcError::kafka(context(), e))?;
            stored.store(true, std::sync::atomic::Ordering::Relaxed);
            reply.await.map_err(|_| RpcError::Closed)
        })
        .await
        .map_err(|_| RpcError::Timeout {
            service: service.into(),
            method: method.into(),
            request_id: id.to_string(),
            timeout,
            stored: stored.load(std::sync::atomic::Ordering::Relaxed),
        })??;
        let status = |code: StatusCode, message: String| RpcError::Status {
            service: service.into(),
            method: method.into(),
            request_id: id.to_string(),
            code,
            message,
        };
        let value = record.value.as_deref().unwrap_or_default();
        let plain = inner
            .options
            .format
            .open(value, &record.headers)
            .map_err(|e| match e {
                OpenError::Checksum { .. } => status(
                    StatusCode::Unauthenticated,
                    format!("the reply failed its check: {e}"),
                ),
                OpenError::Malformed(reason) => status(
                    StatusCode::DataLoss,
                    format!("the reply cannot be read: {reason}"),
                ),
            })?;
        let reply = LegacyReply::decode(&plain).map_err(|reason| {
            status(
                StatusCode::DataLoss,
                format!("the reply cannot be read: {reason}"),
            )
        })?;
        if reply.exception.is_some() || reply.traceback.is_some() {
            return Err(RpcError::Remote {
                service: service.into(),
                method: method.into(),
                request_id: id.to_string(),
                exception: reply.exception_line(),
                traceback: reply.traceback.clone().unwrap_or_default(),
            });
        }
        let value = codec::decode(&reply.ret).map_err(|reason| RpcError::Codec {
            context: format!("decoding the result of {service}.{method} (request {id})"),
            reason,
        })?;
        Ok(Response {
            value,
            meta: CallMeta {
                request_id: id,
                elapsed: started.elapsed(),
                server_time: Duration::from_secs_f64(reply.tact_time.clamp(0.0, 1e9)),
                queue_wait: Duration::ZERO,
                server_id: reply.server_id,
            },
        })
    }

    /// Calls waiting for their reply now.
    pub fn pending_calls(&self) -> usize {
        self.inner.pending.count()
    }
}

/// No keyword arguments: serializes as the empty map.
#[derive(Serialize)]
struct NoKwargs {}

/// A record of the reply topic: a reply (its key a task id), a handshake answer, or junk.
fn parse_reply(record: &ConsumerRecord) -> Result<Parsed<ConsumerRecord>, String> {
    match record.key.as_deref() {
        Some(HANDSHAKE) => Ok(Parsed::Ignore),
        Some(key) => match super::task_id(key) {
            Some(id) => Ok(Parsed::Reply(id, record.clone())),
            None => Err(format!(
                "the key {:?} is not a task id",
                String::from_utf8_lossy(&key[..key.len().min(64)])
            )),
        },
        None => Err("a record with no key".into()),
    }
}
