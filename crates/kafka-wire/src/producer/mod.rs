//! The producer: per-partition batching with linger and size limits, acks, retries on
//! retriable errors, key partitioning compatible with the Java client, compression.
//!
//! Idempotence (KIP-98, on by default as the Java client's `enable.idempotence=true`): with
//! acks=all and a broker that grants a producer id, every batch carries the producer id, epoch
//! and its partition's sequence numbers, and each retry sends the same bytes, so a batch
//! retried after a lost response is stored once and the records of a partition keep their
//! order. One batch per partition is in flight at a time (Java allows up to 5 with
//! `max.in.flight.requests.per.connection`). Without idempotence (acks other than all, the
//! setting off, or a broker without InitProducerId), records of one partition in flight at the
//! same time may be reordered or duplicated by a retry.

mod accumulator;
mod idempotence;
pub mod partitioner;
mod sender;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::client::Client;
use crate::compression::Codec;
use crate::error::{Error, Result};
use crate::records::ProducerRecord;
use accumulator::Accumulator;

/// How many acknowledgements the producer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Fire and forget: the broker sends no answer and offsets are unknown (-1).
    None,
    /// The leader has written the record.
    Leader,
    /// Every in-sync replica has the record.
    #[default]
    All,
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

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Acknowledgements to wait for.
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// A batch is sent as soon as it holds this many bytes.
    pub max_batch_bytes: usize,
    /// Largest record accepted; a larger one is refused before anything is sent.
    pub max_record_bytes: usize,
    /// Compression codec of produced batches.
    pub codec: Codec,
    /// How long delivery of a batch may take, retries included.
    pub delivery_timeout: Duration,
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
            max_batch_bytes: 1024 * 1024,
            max_record_bytes: 1024 * 1024,
            codec: Codec::None,
            delivery_timeout: Duration::from_secs(30),
            enable_idempotence: true,
        }
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset, or -1 when unknown: with [`Acks::None`], or when an idempotent retry found the
    /// batch already stored (DUPLICATE_SEQUENCE_NUMBER).
    pub offset: i64,
}

/// The outcome of one `send`, resolved when its batch is acknowledged (or fails).
pub struct Delivery {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl std::future::Future for Delivery {
    type Output = Result<RecordMetadata>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed("producer"))))
    }
}

/// A producer bound to one cluster; cheap to clone.
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use kafka_wire::{Acks, Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};
///
/// # async fn example() -> kafka_wire::Result<()> {
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let config = ProducerConfig {
///     acks: Acks::All,
///     linger: Duration::from_millis(5),
///     ..ProducerConfig::default()
/// };
/// let producer = Producer::new(client, config);
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
    client: Client,
    acc: Arc<Accumulator>,
    round_robin: Arc<AtomicUsize>,
}

impl Producer {
    /// A producer with `config` on `client`.
    pub fn new(client: Client, config: ProducerConfig) -> Self {
        Self {
            acc: Arc::new(Accumulator::new(client.clone(), config)),
            client,
            round_robin: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The settings of this producer.
    pub fn config(&self) -> &ProducerConfig {
        self.acc.config()
    }

    /// Queues `record` for `topic`, choosing the partition from its key (Java-compatible murmur2)
    /// or round-robin for a null key. Resolves once it is queued; await the [`Delivery`] for the ack.
    pub async fn send(&self, topic: &str, record: ProducerRecord) -> Result<Delivery> {
        self.check_size(topic, &record)?;
        let partitions = self.client.partition_count(topic).await?;
        let partition = match &record.key {
            Some(key) => partitioner::partition_for_key(key, partitions),
            None => {
                (self.round_robin.fetch_add(1, Ordering::Relaxed) % partitions.max(1) as usize)
                    as i32
            }
        };
        Ok(self.acc.append(topic, partition, record))
    }

    /// Queues `record` for an explicit `partition` of `topic`.
    pub fn send_to(&self, topic: &str, partition: i32, record: ProducerRecord) -> Result<Delivery> {
        self.check_size(topic, &record)?;
        Ok(self.acc.append(topic, partition, record))
    }

    /// Sends `record` and waits for its acknowledgement.
    pub async fn produce(&self, topic: &str, record: ProducerRecord) -> Result<RecordMetadata> {
        self.send(topic, record).await?.await
    }

    /// Sends every queued batch now and waits until all of them are acknowledged or failed.
    pub async fn flush(&self) {
        self.acc.flush().await;
    }

    fn check_size(&self, topic: &str, record: &ProducerRecord) -> Result<()> {
        let size = record.encoded_size_bound();
        let max = self.acc.config().max_record_bytes;
        if size > max {
            return Err(Error::RecordTooLarge {
                topic: topic.to_string(),
                size,
                max,
            });
        }
        Ok(())
    }
}
