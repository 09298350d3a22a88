//! The producer: per-partition batching with linger and size limits, a bounded buffer, acks,
//! retries on retriable errors, key partitioning compatible with the Java client, compression.
//!
//! Two parts, as in the Java producer: the batching stage (`accumulator`, Java's
//! `RecordAccumulator`), where `send` puts records into per-partition batches, and one sender
//! task per producer (`sender`, Java's `Sender`) that owns the outbox: it takes the batches
//! that are ready, sends one Produce request per leader, and resolves or retries each batch.
//! Partitions progress independently: a partition without a leader, or with a batch waiting
//! for a retry, holds back only its own batches.
//!
//! Memory is bounded: records queued or in flight hold at most
//! [`ProducerConfig::buffer_memory`] bytes; a `send` finding it full waits up to
//! [`ProducerConfig::max_block`] for space, then fails with [`Error::BufferExhausted`].
//! [`Producer::flush`] waits until everything sent before it is acknowledged or failed;
//! [`Producer::close`] flushes and refuses further sends.
//!
//! Idempotence (KIP-98, on by default as the Java client's `enable.idempotence=true`): with
//! acks=all and a broker that grants a producer id, every batch carries the producer id, epoch
//! and its partition's sequence numbers, and each retry sends the same bytes, so a batch
//! retried after a lost response is stored once and the records of a partition keep their
//! order. One batch per partition is in flight at a time, idempotent or not (Java allows up to
//! 5 with `max.in.flight.requests.per.connection`), so the records of a partition are written
//! in the order they were sent. Without idempotence (acks other than all, the setting off, or a
//! broker without InitProducerId), a batch retried after a lost response may be stored twice.

mod accumulator;
mod idempotence;
mod outcome;
pub mod partitioner;
mod sender;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::client::KafkaClient;
use crate::compression::Codec;
use crate::error::{Error, Result};
use crate::records::ProducerRecord;
use sender::Shared;

/// How many acknowledgements the producer waits for.
/// Java's `acks`; in a config file (feature `serde`) its values: `"all"` or `-1`, `1` or
/// `"leader"`, `0` or `"none"` (numbers as numbers or strings, as Java's properties take them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "AcksValue")
)]
pub enum Acks {
    /// Fire and forget: the broker sends no answer and offsets are unknown (-1).
    #[cfg_attr(feature = "serde", serde(rename = "0", alias = "none"))]
    None,
    /// The leader has written the record.
    #[cfg_attr(feature = "serde", serde(rename = "1", alias = "leader"))]
    Leader,
    /// Every in-sync replica has the record.
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "all", alias = "-1"))]
    All,
}

/// What a config file may write for [`Acks`]: a number or a string.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum AcksValue {
    Number(i64),
    Text(String),
}

#[cfg(feature = "serde")]
impl TryFrom<AcksValue> for Acks {
    type Error = String;

    fn try_from(value: AcksValue) -> std::result::Result<Self, String> {
        let text = match value {
            AcksValue::Number(n) => n.to_string(),
            AcksValue::Text(s) => s,
        };
        match text.as_str() {
            "0" | "none" => Ok(Acks::None),
            "1" | "leader" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(format!(
                "acks must be \"all\" (or -1), 1 (or \"leader\") or 0 (or \"none\"), not {other:?}"
            )),
        }
    }
}

impl Acks {
    pub(super) fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Producer settings. Each mirrors a setting of the Java producer, named in its doc, with the
/// same default (Apache Kafka 4.0).
///
/// With the `serde` feature it reads from a config file (see [`crate::config`]).
///
/// `#[non_exhaustive]`: start from [`ProducerConfig::default`] and chain the `with_*` setters.
/// [`Producer::new`] checks it ([`ProducerConfig::validate`]).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use krpc_kafka::{Acks, Codec, ProducerConfig};
///
/// let config = ProducerConfig::default()
///     .with_acks(Acks::All)
///     .with_linger(Duration::from_millis(10))
///     .with_codec(Codec::Zstd)
///     .with_max_batch_bytes(64 * 1024);
/// assert!(config.validate().is_ok());
///
/// // A value the Java producer refuses is refused here too, naming the setting.
/// let bad = ProducerConfig::default().with_max_in_flight_requests_per_connection(0);
/// let err = bad.validate().unwrap_err();
/// assert!(err.to_string().contains("max_in_flight_requests_per_connection"));
/// ```
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ProducerConfig {
    /// Acknowledgements to wait for (Java's `acks`, default `all`).
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent (Java's `linger.ms`: 5 ms
    /// since Apache Kafka 4.0, KIP-1030; 0 before).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub linger: Duration,
    /// A batch is sent as soon as it holds this many bytes; a record larger than this goes in
    /// a batch of its own (Java's `batch.size`, 16 KiB).
    pub max_batch_bytes: usize,
    /// Largest record accepted (a larger one is refused with [`Error::RecordTooLarge`] before
    /// anything is sent), and the most bytes of batches one Produce request carries (a lone
    /// batch may exceed it) (Java's `max.request.size`, 1 MiB).
    pub max_record_bytes: usize,
    /// Bytes of records queued or in flight at most (counted by
    /// [`ProducerRecord::encoded_size_bound`]); a send finding it full waits up to
    /// [`ProducerConfig::max_block`] (Java's `buffer.memory`, 32 MiB).
    pub buffer_memory: usize,
    /// How long a send waits for space in the buffer before it fails with
    /// [`Error::BufferExhausted`] (Java's `max.block.ms`, 60 s; here it bounds the wait for
    /// buffer space only, not metadata lookups, which have their own timeouts).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_block: Duration,
    /// Compression codec of produced batches (Java's `compression.type`, default none). In a
    /// config file also `compression_type` (Java's name) or `compression` (`krpc produce`'s
    /// flag).
    #[cfg_attr(
        feature = "serde",
        serde(alias = "compression_type", alias = "compression")
    )]
    pub codec: Codec,
    /// How long delivery of a batch may take from its first record, lingering and retries
    /// included; a batch still unacknowledged then fails (Java's `delivery.timeout.ms`,
    /// 120 s).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub delivery_timeout: Duration,
    /// Produce requests in flight to one broker at most (Java's
    /// `max.in.flight.requests.per.connection`, 5). Each partition has at most one batch in
    /// flight whatever this is.
    pub max_in_flight_requests_per_connection: usize,
    /// Idempotent produce (Java's `enable.idempotence`, default true): applies with
    /// [`Acks::All`] only (as in Java); when the broker has no InitProducerId or refuses one,
    /// the producer logs a warning and produces without it.
    pub enable_idempotence: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            max_batch_bytes: 16 * 1024,
            max_record_bytes: 1024 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            max_block: Duration::from_secs(60),
            codec: Codec::None,
            delivery_timeout: Duration::from_secs(120),
            max_in_flight_requests_per_connection: 5,
            enable_idempotence: true,
        }
    }
}

crate::config::with_setters! { ProducerConfig {
    /// Sets [`acks`](Self::acks) (Java `acks`).
    with_acks(acks: Acks);
    /// Sets [`linger`](Self::linger) (Java `linger.ms`).
    with_linger(linger: Duration);
    /// Sets [`max_batch_bytes`](Self::max_batch_bytes) (Java `batch.size`).
    with_max_batch_bytes(max_batch_bytes: usize);
    /// Sets [`max_record_bytes`](Self::max_record_bytes) (Java `max.request.size`).
    with_max_record_bytes(max_record_bytes: usize);
    /// Sets [`buffer_memory`](Self::buffer_memory) (Java `buffer.memory`).
    with_buffer_memory(buffer_memory: usize);
    /// Sets [`max_block`](Self::max_block) (Java `max.block.ms`).
    with_max_block(max_block: Duration);
    /// Sets [`codec`](Self::codec) (Java `compression.type`).
    with_codec(codec: Codec);
    /// Sets [`delivery_timeout`](Self::delivery_timeout) (Java `delivery.timeout.ms`).
    with_delivery_timeout(delivery_timeout: Duration);
    /// Sets [`max_in_flight_requests_per_connection`](Self::max_in_flight_requests_per_connection) (Java `max.in.flight.requests.per.connection`).
    with_max_in_flight_requests_per_connection(max_in_flight_requests_per_connection: usize);
    /// Sets [`enable_idempotence`](Self::enable_idempotence) (Java `enable.idempotence`).
    with_enable_idempotence(enable_idempotence: bool);
}}

impl ProducerConfig {
    /// Checks every setting, as [`Producer::new`] does: at least one request in flight (as
    /// the Java producer's `max.in.flight.requests.per.connection` validator), and non-zero
    /// record size, buffer and delivery timeout (with zero, every send would fail).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the setting and its value.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check(self.max_in_flight_requests_per_connection >= 1, || {
            format!(
                "ProducerConfig::max_in_flight_requests_per_connection \
                 (max.in.flight.requests.per.connection) must be >= 1, got {}",
                self.max_in_flight_requests_per_connection
            )
        })?;
        check(self.max_record_bytes > 0, || {
            "ProducerConfig::max_record_bytes (max.request.size) must be > 0, got 0".into()
        })?;
        check(self.buffer_memory > 0, || {
            "ProducerConfig::buffer_memory (buffer.memory) must be > 0, got 0".into()
        })?;
        check(!self.delivery_timeout.is_zero(), || {
            "ProducerConfig::delivery_timeout (delivery.timeout.ms) must be > 0, got 0s".into()
        })?;
        crate::config::check_durations(
            "ProducerConfig",
            &[
                ("linger", Some(self.linger), true),
                ("max_block", Some(self.max_block), true),
                ("delivery_timeout", Some(self.delivery_timeout), false),
            ],
        )
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordMetadata {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset, or -1 when unknown: with [`Acks::None`], or when an idempotent retry found the
    /// batch already stored (DUPLICATE_SEQUENCE_NUMBER).
    pub offset: i64,
}

/// What a batch's records learn when it is resolved: its topic, partition and base offset (-1
/// when unknown), or why it failed.
type BatchOutcome = (Arc<str>, i32, Result<i64>);

/// The outcome of one `send`, resolved when its batch is acknowledged (or fails).
///
/// The records of a batch share one outcome (a batch is acknowledged or fails as a whole):
/// each delivery gets it with its record's place in the batch, and resolves to the batch's
/// base offset plus that place.
pub struct Delivery {
    outcome: outcome::Listener<BatchOutcome>,
    /// The record's offset delta in its batch.
    index: i64,
}

impl std::future::Future for Delivery {
    type Output = Result<RecordMetadata>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let index = self.index;
        self.outcome.poll(cx).map(|r| {
            // The batch dropped unresolved (a forced close, the sender task gone).
            let (topic, partition, base) = r.ok_or(Error::Closed("producer"))?;
            Ok(RecordMetadata {
                topic,
                partition,
                offset: match base? {
                    base if base < 0 => -1,
                    base => base + index,
                },
            })
        })
    }
}

/// A producer bound to one cluster; cheap to clone (clones share the buffer and the sender).
///
/// When the last clone is dropped, what was sent is still delivered (the sender sends it at
/// once and then stops); [`Producer::close`] also waits for it.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use krpc_kafka::{Acks, KafkaClient, ClientConfig, Producer, ProducerConfig, ProducerRecord};
///
/// # async fn example() -> krpc_kafka::Result<()> {
/// let client = KafkaClient::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let config = ProducerConfig::default()
///     .with_acks(Acks::All)
///     .with_linger(Duration::from_millis(5));
/// let producer = Producer::new(client, config)?;
/// // Waits for the broker's acknowledgement of this one record.
/// let stored = producer
///     .produce("events", ProducerRecord::value("hello").with_key("user-1"))
///     .await?;
/// println!("stored at {}/{}", stored.partition, stored.offset);
/// // Or queue many and wait for each delivery later.
/// let delivery = producer.send("events", ProducerRecord::value("again")).await?;
/// delivery.await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
    round_robin: Arc<AtomicUsize>,
}

/// The producer's shared state; dropping the last handle closes the producer.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        // No one can send any more: send what is queued now, then the sender stops.
        self.0.close_stage();
        self.0.wake.notify_one();
    }
}

impl Producer {
    /// A producer with `config` on `client`. The sender task starts with the first send
    /// (inside a tokio runtime).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the setting when `config` does not pass
    /// [`ProducerConfig::validate`].
    pub fn new(client: KafkaClient, config: ProducerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            handle: Arc::new(Handle(Arc::new(Shared::new(client, config)))),
            // A random first partition, as the Java client's default partitioner had (before
            // 2.4; the sticky partitioner since picks a random partition per batch): short-lived
            // producers (a CLI call, a cron job) would otherwise all write to partition 0.
            round_robin: Arc::new(AtomicUsize::new(rand::random::<u32>() as usize)),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.0
    }

    /// The settings of this producer.
    pub fn config(&self) -> &ProducerConfig {
        &self.shared().config
    }

    /// How many turns the sender task's loop has taken (each after a wake, a timer or an
    /// answer it awaited): for tests of what wakes it. Not a stable API.
    #[cfg(feature = "unstable-internals")]
    #[doc(hidden)]
    pub fn sender_turns(&self) -> u64 {
        self.shared().turns.load(Ordering::Relaxed)
    }

    /// Queues `record` for `topic`, choosing the partition from its key (Java-compatible murmur2)
    /// or round-robin for a null key (from a random partition for each new producer). Resolves once it is queued; await the [`Delivery`] for the ack.
    ///
    /// Errors: [`Error::RecordTooLarge`] (over `max_record_bytes` or the whole buffer),
    /// [`Error::BufferExhausted`] (no buffer space within `max_block`), [`Error::Closed`]
    /// (after [`Producer::close`]), and metadata errors (unknown topic...).
    pub async fn send(&self, topic: &str, record: ProducerRecord) -> Result<Delivery> {
        let size = self.check_size(topic, &record)?;
        self.check_open()?;
        let partitions = self.shared().client.partition_count(topic).await?;
        let partition = match &record.key {
            Some(key) => partitioner::partition_for_key(key, partitions),
            None => {
                (self.round_robin.fetch_add(1, Ordering::Relaxed) % partitions.max(1) as usize)
                    as i32
            }
        };
        self.enqueue(topic, partition, record, size).await
    }

    /// Queues `record` for an explicit `partition` of `topic`. Resolves once it is queued
    /// (waiting up to `max_block` for buffer space); errors as [`Producer::send`].
    pub async fn send_to(
        &self,
        topic: &str,
        partition: i32,
        record: ProducerRecord,
    ) -> Result<Delivery> {
        let size = self.check_size(topic, &record)?;
        self.check_open()?;
        self.enqueue(topic, partition, record, size).await
    }

    /// Queues `record` for `partition` of `topic` without waiting: `Ok(Ok(delivery))` when it
    /// is queued, `Ok(Err(record))` (the record given back) when the buffer has no room for it
    /// now (`buffer.memory`; [`send_to`](Self::send_to) waits up to `max_block` for room);
    /// errors as [`Producer::send`] otherwise. For callers that hold many sends at once: no
    /// future is kept while the record waits for its acknowledgement but the [`Delivery`].
    pub fn try_send_to(
        &self,
        topic: &str,
        partition: i32,
        record: ProducerRecord,
    ) -> Result<std::result::Result<Delivery, ProducerRecord>> {
        let size = self.check_size(topic, &record)?;
        self.check_open()?;
        if !self.shared().pool.try_reserve(size) {
            return Ok(Err(record));
        }
        self.append_reserved(topic, partition, record, size).map(Ok)
    }

    /// Sends `record` and waits for its acknowledgement.
    pub async fn produce(&self, topic: &str, record: ProducerRecord) -> Result<RecordMetadata> {
        self.send(topic, record).await?.await
    }

    /// Sends every queued batch now (without waiting for its linger) and waits until every
    /// record sent before this call is acknowledged or failed (Java's `flush`). Records sent
    /// while it waits are not waited for. Each record's outcome is in its [`Delivery`].
    pub async fn flush(&self) {
        let shared = self.shared();
        let (mark, mut low) = {
            let mut stage = shared.stage();
            (stage.begin_flush(), stage.low())
        };
        shared.wake.notify_one();
        let _ = low.wait_for(|l| *l >= mark).await;
    }

    /// Closes the producer (Java's `close`): refuses further sends ([`Error::Closed`]), sends
    /// what is queued at once and waits until all of it is acknowledged or failed, for as long
    /// as that takes (each batch is bounded by `delivery_timeout`). Affects every clone.
    pub async fn close(&self) {
        let shared = self.shared();
        let (mark, mut low) = (shared.close_stage(), shared.stage().low());
        shared.wake.notify_one();
        let _ = low.wait_for(|l| *l >= mark).await;
    }

    /// [`Producer::close`] waiting at most `timeout` (Java's `close(Duration)`): what is not
    /// acknowledged by then fails ([`Error::Closed`] for each record still queued or in
    /// flight), and the call returns [`Error::CloseTimeout`] saying how many batches.
    pub async fn close_timeout(&self, timeout: Duration) -> Result<()> {
        if tokio::time::timeout(timeout, self.close()).await.is_ok() {
            return Ok(());
        }
        let shared = self.shared();
        let unfinished = shared.stage().unfinished();
        if unfinished == 0 {
            return Ok(());
        }
        shared.abort(&Error::Closed("producer"));
        Err(Error::CloseTimeout {
            unfinished,
            after: timeout,
        })
    }

    /// Fails a send at once after a close (without the lock: `append` checks again under it).
    fn check_open(&self) -> Result<()> {
        if self.shared().is_closed() {
            return Err(Error::Closed("producer"));
        }
        Ok(())
    }

    /// Reserves the record's bytes in the buffer and appends it to its partition's batch.
    async fn enqueue(
        &self,
        topic: &str,
        partition: i32,
        record: ProducerRecord,
        size: usize,
    ) -> Result<Delivery> {
        let shared = self.shared();
        let max_block = shared.config.max_block;
        // While a send waits for space every batch is ready: the sender, woken, sends the
        // lingering ones (as the Java producer does when its buffer is exhausted).
        let reserved = shared
            .pool
            .reserve(size, max_block, || shared.wake.notify_one())
            .await;
        if !reserved {
            return Err(Error::BufferExhausted {
                topic: topic.to_string(),
                size,
                buffer_memory: shared.pool.total(),
                max_block,
            });
        }
        self.append_reserved(topic, partition, record, size)
    }

    /// Appends `record` (its `size` bytes already reserved in the buffer) to its partition's
    /// batch; gives the bytes back if it cannot.
    fn append_reserved(
        &self,
        topic: &str,
        partition: i32,
        record: ProducerRecord,
        size: usize,
    ) -> Result<Delivery> {
        let shared = self.shared();
        let appended = shared.stage().append(
            topic,
            partition,
            &record,
            size,
            tokio::time::Instant::now,
            now_ms,
        );
        // The record is in its batch's bytes now; its own buffers go (outside the lock).
        drop(record);
        match appended {
            Ok((a, delivery)) => {
                if a.wake && shared.send_now_if_idle() {
                    shared.wake.notify_one();
                }
                shared.ensure_sender();
                Ok(delivery)
            }
            Err(e) => {
                shared.pool.release(size);
                Err(e)
            }
        }
    }

    /// The record's size as the buffer counts it, or [`Error::RecordTooLarge`] when it is over
    /// `max_record_bytes` or the whole buffer.
    fn check_size(&self, topic: &str, record: &ProducerRecord) -> Result<usize> {
        let size = record.encoded_size_bound();
        let config = self.config();
        let max = config.max_record_bytes.min(config.buffer_memory);
        if size > max {
            return Err(Error::RecordTooLarge {
                topic: topic.to_string(),
                size,
                max,
            });
        }
        Ok(size)
    }
}

/// Now in ms since the epoch: the timestamp of a record sent without one (Java's producer
/// takes `time.milliseconds()` in `send`).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientConfig;

    /// A delivery is handed to other tasks and awaited there, as the oneshot receiver it
    /// replaced was.
    #[test]
    fn deliveries_are_send_sync_and_unpin() {
        fn check<T: Send + Sync + Unpin + 'static>() {}
        check::<Delivery>();
    }

    /// A send's future is held by every task awaiting a send (an RPC call in flight holds
    /// one through its whole send): the rare paths (a metadata round trip, a wait for buffer
    /// space) are boxed, so it stays small. It was 1,888 bytes (debug build), most of it the
    /// metadata request inlined through `partition_count`.
    #[test]
    fn a_send_future_is_small() {
        let client = KafkaClient::unconnected(ClientConfig::new("127.0.0.1:9"));
        let p = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
        let send = std::mem::size_of_val(&p.send("t", ProducerRecord::value("x")));
        let send_to = std::mem::size_of_val(&p.send_to("t", 0, ProducerRecord::value("x")));
        let lookup = std::mem::size_of_val(&client.partition_count("t"));
        assert!(send <= 1024, "Producer::send's future is {send} bytes");
        assert!(
            send_to <= 1024,
            "Producer::send_to's future is {send_to} bytes"
        );
        assert!(
            lookup <= 512,
            "KafkaClient::partition_count's future is {lookup} bytes"
        );
    }

    /// Every new producer used to start its round-robin at partition 0, so every `krpc call`
    /// process (and any short-lived producer) wrote its one record to partition 0.
    #[test]
    fn new_producers_start_their_round_robin_at_random_partitions() {
        let client = KafkaClient::unconnected(ClientConfig::new("127.0.0.1:9"));
        let starts: std::collections::HashSet<usize> = (0..20)
            .map(|_| {
                Producer::new(client.clone(), ProducerConfig::default())
                    .expect("default config")
                    .round_robin
                    .load(Ordering::Relaxed)
                    % 16
            })
            .collect();
        assert!(starts.len() > 1, "all 20 started at {starts:?}");
    }

    /// A setting the Java producer refuses fails `Producer::new` (it used to be accepted and
    /// clamped to 1 by the sender), with a message naming the setting and the value; so do
    /// the sizes with which every send would fail.
    #[test]
    fn producer_new_refuses_bad_settings_naming_them() {
        let client = KafkaClient::unconnected(ClientConfig::new("127.0.0.1:9"));
        let cases = [
            (
                ProducerConfig::default().with_max_in_flight_requests_per_connection(0),
                "ProducerConfig::max_in_flight_requests_per_connection",
            ),
            (
                ProducerConfig::default().with_max_record_bytes(0),
                "ProducerConfig::max_record_bytes",
            ),
            (
                ProducerConfig::default().with_buffer_memory(0),
                "ProducerConfig::buffer_memory",
            ),
            (
                ProducerConfig::default().with_delivery_timeout(Duration::ZERO),
                "ProducerConfig::delivery_timeout",
            ),
        ];
        for (config, setting) in cases {
            match Producer::new(client.clone(), config) {
                Err(Error::InvalidArgument(m)) => {
                    assert!(m.contains(setting) && m.contains("got 0"), "{m}")
                }
                Err(e) => panic!("{setting}: wrong error {e}"),
                Ok(_) => panic!("{setting}: accepted"),
            }
        }
        // Longer than i32::MAX ms: used to panic the sender task (`created + timeout`), after
        // which every send failed with Closed.
        match Producer::new(
            client.clone(),
            ProducerConfig::default().with_delivery_timeout(Duration::MAX),
        ) {
            Err(Error::InvalidArgument(m)) => assert!(
                m.contains("ProducerConfig::delivery_timeout") && m.contains("at most"),
                "{m}"
            ),
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("Duration::MAX accepted"),
        }
        assert!(ProducerConfig::default().validate().is_ok());
    }
}
