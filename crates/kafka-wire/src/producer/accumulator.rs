//! Per-partition batches: filled by `append`, sent when full, when their linger expires, or on
//! flush; each sent with retries and its outcome handed to every record's `Delivery`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{oneshot, watch};

use super::{Delivery, ProducerConfig, RecordMetadata};
use crate::backoff::Backoff;
use crate::client::{Client, Lane};
use crate::error::{check_code, Error, Result};
use crate::records::{encode_batch, ProducerRecord};

type Waiter = oneshot::Sender<Result<RecordMetadata>>;

#[derive(Default)]
struct OpenBatch {
    generation: u64,
    records: Vec<ProducerRecord>,
    waiters: Vec<Waiter>,
    bytes: usize,
}

#[derive(Default)]
struct State {
    /// Open batches by topic, then partition.
    open: HashMap<String, HashMap<i32, OpenBatch>>,
    next_generation: u64,
}

pub(super) struct Accumulator {
    client: Client,
    config: ProducerConfig,
    state: Mutex<State>,
    in_flight: watch::Sender<usize>,
}

struct Ready {
    topic: Arc<str>,
    partition: i32,
    batch: OpenBatch,
}

impl Accumulator {
    pub(super) fn new(client: Client, config: ProducerConfig) -> Self {
        Self {
            client,
            config,
            state: Mutex::new(State::default()),
            in_flight: watch::channel(0).0,
        }
    }

    pub(super) fn config(&self) -> &ProducerConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `record` to the open batch of `topic`/`partition`, sending batches that are full.
    pub(super) fn append(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
        record: ProducerRecord,
    ) -> Delivery {
        let (tx, rx) = oneshot::channel();
        let size = record.encoded_size_bound();
        let mut ready = Vec::new();
        let mut linger_generation = None;
        {
            let mut state = self.lock();
            let generation = state.next_generation;
            let topic_batches = match state.open.get_mut(topic) {
                Some(t) => t,
                None => state.open.entry(topic.to_string()).or_default(),
            };
            let open = topic_batches.entry(partition).or_default();
            if !open.records.is_empty() && open.bytes + size > self.config.max_batch_bytes {
                ready.push(std::mem::take(open));
            }
            if open.records.is_empty() {
                open.generation = generation;
                linger_generation = Some(generation);
            }
            open.records.push(record);
            open.waiters.push(tx);
            open.bytes += size;
            if open.bytes >= self.config.max_batch_bytes {
                ready.push(std::mem::take(open));
                linger_generation = None;
            }
            state.next_generation += 1;
        }
        let topic: Arc<str> = Arc::from(topic);
        for batch in ready {
            self.spawn_delivery(Ready {
                topic: topic.clone(),
                partition,
                batch,
            });
        }
        if let Some(generation) = linger_generation {
            let me = self.clone();
            tokio::spawn(async move {
                if me.config.linger.is_zero() {
                    // No timer (its granularity is a millisecond): just let the records appended
                    // in this same turn of the scheduler join the batch.
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(me.config.linger).await;
                }
                let batch = {
                    let mut state = me.lock();
                    let open = state
                        .open
                        .get_mut(&*topic)
                        .and_then(|t| t.get_mut(&partition));
                    match open {
                        Some(open) if open.generation == generation && !open.records.is_empty() => {
                            std::mem::take(open)
                        }
                        _ => return,
                    }
                };
                me.spawn_delivery(Ready {
                    topic,
                    partition,
                    batch,
                });
            });
        }
        Delivery { rx }
    }

    /// Sends every open batch and waits for all deliveries in flight.
    pub(super) async fn flush(self: &Arc<Self>) {
        let ready: Vec<Ready> = {
            let mut state = self.lock();
            let mut ready = Vec::new();
            for (topic, parts) in state.open.iter_mut() {
                let topic: Arc<str> = Arc::from(topic.as_str());
                for (&partition, open) in parts.iter_mut() {
                    if !open.records.is_empty() {
                        ready.push(Ready {
                            topic: topic.clone(),
                            partition,
                            batch: std::mem::take(open),
                        });
                    }
                }
            }
            ready
        };
        for r in ready {
            self.spawn_delivery(r);
        }
        let mut rx = self.in_flight.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    fn spawn_delivery(self: &Arc<Self>, ready: Ready) {
        self.in_flight.send_modify(|n| *n += 1);
        let me = self.clone();
        tokio::spawn(async move {
            let Ready {
                topic,
                partition,
                batch,
            } = ready;
            let outcome = me.produce_batch(&topic, partition, &batch.records).await;
            for (i, waiter) in batch.waiters.into_iter().enumerate() {
                let _ = waiter.send(outcome.clone().map(|base| RecordMetadata {
                    topic: topic.clone(),
                    partition,
                    offset: if base < 0 { -1 } else { base + i as i64 },
                }));
            }
            me.in_flight.send_modify(|n| *n -= 1);
        });
    }

    /// Encodes and sends one batch with retries; returns its base offset (-1 with acks=0).
    async fn produce_batch(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProducerRecord],
    ) -> Result<i64> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let bytes =
            encode_batch(records, self.config.codec, now_ms).map_err(|e| Error::Encode {
                api: ApiKey::Produce,
                reason: format!("{topic}/{partition}: {e:#}"),
            })?;
        let cfg = self.client.config();
        let mut backoff = Backoff::new(
            cfg.retry_backoff,
            cfg.retry_backoff_max,
            self.config.delivery_timeout,
        );
        loop {
            match self.produce_once(topic, partition, bytes.clone()).await {
                Err(e) if e.is_retriable() => {
                    tracing::debug!(topic, partition, error = %e, "produce failed, retrying");
                    if e.invalidates_metadata() {
                        self.client.invalidate_topic(topic);
                    }
                    if !backoff.wait().await {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    async fn produce_once(&self, topic: &str, partition: i32, records: Bytes) -> Result<i64> {
        let conn = self.client.leader(topic, partition, Lane::Default).await?;
        let timeout = self.client.config().request_timeout;
        let req = ProduceRequest::default()
            .with_acks(self.config.acks.wire())
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        if self.config.acks == super::Acks::None {
            conn.send_no_response(&req)?;
            return Ok(-1);
        }
        let resp = conn.send(&req).await?;
        let p = resp
            .responses
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| Error::Malformed {
                broker: conn.broker().to_string(),
                what: "Produce response".into(),
                reason: format!("no result for {topic}/{partition}"),
            })?;
        check_code(p.error_code, conn.broker(), ApiKey::Produce, || {
            let msg = p
                .error_message
                .as_ref()
                .map(|m| format!(": {}", m.as_str()));
            format!(" {topic}/{partition}{}", msg.unwrap_or_default())
        })?;
        Ok(p.base_offset)
    }
}
