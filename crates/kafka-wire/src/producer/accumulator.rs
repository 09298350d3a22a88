//! Per-partition batches: filled by `append`, sent when full, when their linger expires, or on
//! flush; each sent with retries and its outcome handed to every record's `Delivery`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::sync::{oneshot, watch};

use super::idempotence::{self, Idempotence, OnError};
use super::{sender, Acks, Delivery, ProducerConfig, RecordMetadata};
use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::records::{encode_stamped_batch, ProducerRecord};

type Waiter = oneshot::Sender<Result<RecordMetadata>>;

#[derive(Default)]
pub(super) struct OpenBatch {
    generation: u64,
    pub records: Vec<ProducerRecord>,
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
    /// Batches ready to send; the sender task drains them a round at a time.
    outbox: Mutex<Vec<Ready>>,
    /// Whether a sender task is running.
    sending: AtomicBool,
    /// Producer id and sequences (idempotence).
    idem: Idempotence,
}

pub(super) struct Ready {
    pub topic: Arc<str>,
    pub partition: i32,
    pub batch: OpenBatch,
    /// The batch as first encoded: every retry sends these same bytes (same sequence).
    pub encoded: Option<Encoded>,
    /// Times the batch was stamped again after UNKNOWN_PRODUCER_ID.
    pub restamps: u8,
}

impl Ready {
    fn new(topic: Arc<str>, partition: i32, batch: OpenBatch) -> Self {
        Self {
            topic,
            partition,
            batch,
            encoded: None,
            restamps: 0,
        }
    }
}

/// An encoded batch, and the generation of the producer id it was stamped with.
pub(super) struct Encoded {
    bytes: Bytes,
    generation: Option<u64>,
}

/// What to do with a batch after an attempt.
pub(super) enum Decision {
    /// Hand this outcome to its records.
    Done(Result<i64>),
    /// Send it again (after a backoff), for this reason.
    Retry(Error),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Accumulator {
    pub(super) fn new(client: Client, config: ProducerConfig) -> Self {
        Self {
            client,
            state: Mutex::new(State::default()),
            in_flight: watch::channel(0).0,
            outbox: Mutex::new(Vec::new()),
            sending: AtomicBool::new(false),
            idem: Idempotence::new(config.enable_idempotence && config.acks == Acks::All),
            config,
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
            self.spawn_delivery(Ready::new(topic.clone(), partition, batch));
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
                me.spawn_delivery(Ready::new(topic, partition, batch));
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
                        ready.push(Ready::new(topic.clone(), partition, std::mem::take(open)));
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

    /// Queues a full or lingered batch for the sender, starting the sender if it is idle.
    fn spawn_delivery(self: &Arc<Self>, ready: Ready) {
        self.in_flight.send_modify(|n| *n += 1);
        lock(&self.outbox).push(ready);
        if !self.sending.swap(true, Ordering::SeqCst) {
            let me = self.clone();
            tokio::spawn(async move { me.send_rounds().await });
        }
    }

    /// Sends rounds until the outbox stays empty. Each round takes every ready batch and sends
    /// one Produce request per leader holding all of them; batches that become ready while a
    /// round is in flight go together in the next one.
    async fn send_rounds(self: Arc<Self>) {
        loop {
            let round = std::mem::take(&mut *lock(&self.outbox));
            if round.is_empty() {
                self.sending.store(false, Ordering::SeqCst);
                // A batch queued between the take and the store would be stranded: look again.
                if lock(&self.outbox).is_empty() || self.sending.swap(true, Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            sender::send_round(&self, round).await;
        }
    }

    /// Hands a batch's outcome to each of its records' `Delivery`.
    pub(super) fn resolve(&self, ready: Ready, outcome: Result<i64>) {
        let Ready {
            topic,
            partition,
            batch,
            ..
        } = ready;
        for (i, waiter) in batch.waiters.into_iter().enumerate() {
            let _ = waiter.send(outcome.clone().map(|base| RecordMetadata {
                topic: topic.clone(),
                partition,
                offset: if base < 0 { -1 } else { base + i as i64 },
            }));
        }
        self.in_flight.send_modify(|n| *n -= 1);
    }

    /// Sends batches on their own, with retries (after their round failed in a retriable way).
    /// With idempotence the retries are awaited, so the round (and the next batch of the same
    /// partition) waits for them: one batch per partition in flight keeps sequences in order.
    /// Without, each retry runs on its own task.
    pub(super) async fn retry(self: &Arc<Self>, readies: Vec<Ready>) {
        if self.idem.enabled() {
            futures::future::join_all(readies.into_iter().map(|r| self.clone().retry_now(r))).await;
        } else {
            for ready in readies {
                tokio::spawn(self.clone().retry_now(ready));
            }
        }
    }

    async fn retry_now(self: Arc<Self>, mut ready: Ready) {
        let cfg = self.client.config();
        let mut backoff = Backoff::new(
            cfg.retry_backoff,
            cfg.retry_backoff_max,
            self.config.delivery_timeout,
        );
        loop {
            let outcome = self.attempt(&mut ready).await;
            match self.decide(&mut ready, outcome).await {
                Decision::Done(outcome) => return self.resolve(ready, outcome),
                Decision::Retry(e) => {
                    tracing::debug!(topic = %ready.topic, partition = ready.partition, error = %e, "produce failed, retrying");
                    if !backoff.wait().await {
                        // Out of time: a stamped batch that may be missing resets the id.
                        if let Some(g) = ready.encoded.as_ref().and_then(|e| e.generation) {
                            self.idem.reset(g, &e).await;
                        }
                        return self.resolve(ready, Err(e));
                    }
                }
            }
        }
    }

    /// One attempt to send `ready` to its leader.
    async fn attempt(&self, ready: &mut Ready) -> Result<i64> {
        let bytes = self.prepare(ready).await?;
        let addr = self
            .client
            .leader_addr(&ready.topic, ready.partition)
            .await?;
        let batch = [(ready.topic.clone(), ready.partition, bytes)];
        sender::produce_to(&self.client, &self.config, &addr, &batch)
            .await?
            .remove(0)
    }

    /// Decides what an attempt's outcome means for `ready`: the Java producer's handling of
    /// the idempotence errors (see [`idempotence::on_error`]), retries of retriable errors.
    /// A stamped batch that fails for good resets the producer id, so the sequence gap it
    /// leaves cannot fail the batches after it.
    pub(super) async fn decide(&self, ready: &mut Ready, outcome: Result<i64>) -> Decision {
        let e = match outcome {
            Ok(base) => return Decision::Done(Ok(base)),
            Err(e) => e,
        };
        let generation = ready.encoded.as_ref().and_then(|e| e.generation);
        if let Some(g) = generation {
            match idempotence::on_error(&e) {
                // Stored by an earlier attempt; its offset is unknown here.
                OnError::Written => return Decision::Done(Ok(-1)),
                OnError::Restamp if ready.restamps < 3 => {
                    self.idem.reset(g, &e).await;
                    ready.encoded = None;
                    ready.restamps += 1;
                    return Decision::Retry(e);
                }
                _ => {}
            }
        }
        if e.is_retriable() && idempotence::on_error(&e) == OnError::Other {
            if e.invalidates_metadata() {
                self.client.invalidate_topic(&ready.topic);
            }
            return Decision::Retry(e);
        }
        if let Some(g) = generation {
            self.idem.reset(g, &e).await;
        }
        Decision::Done(Err(e))
    }

    /// Puts a batch back for the next round.
    pub(super) fn requeue(&self, ready: Ready) {
        lock(&self.outbox).push(ready);
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// The bytes of `ready`: encoded (and stamped, with idempotence) on first use, the same
    /// bytes on every retry.
    pub(super) async fn prepare(&self, ready: &mut Ready) -> Result<Bytes> {
        if let Some(e) = &ready.encoded {
            return Ok(e.bytes.clone());
        }
        let stamp = self
            .idem
            .stamp(
                &self.client,
                &ready.topic,
                ready.partition,
                ready.batch.records.len(),
            )
            .await?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let bytes = encode_stamped_batch(
            &ready.batch.records,
            self.config.codec,
            now_ms,
            stamp.map(|(s, _)| s),
        )
        .map_err(|e| Error::Encode {
            api: ApiKey::Produce,
            reason: format!("{}/{}: {e:#}", ready.topic, ready.partition),
        })?;
        ready.encoded = Some(Encoded {
            bytes: bytes.clone(),
            generation: stamp.map(|(_, g)| g),
        });
        Ok(bytes)
    }
}
