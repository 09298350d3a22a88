//! Running one request: size check, envelope, deadline, dedup window, handler, reply and
//! completion record, dead letter for poison; then its offset is marked finished so the commit
//! can move past it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_wire::{ConsumerRecord, GroupCommitter, Producer};
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit};

use super::dead_letter::dead_letter;
use super::dedup::{Seen, Window};
use super::progress::Progress;
use super::protocol::{Decoded, Protocol};
use super::stats::Counters;
use crate::envelope::{now_ms, Completion, Reply, ReplyTo, Request, RequestId};
use crate::error::{HandlerError, RpcError};
use crate::status::StatusCode;

/// What every request task shares.
pub(super) struct Dispatcher {
    pub producer: Producer,
    pub service: Arc<dyn crate::service::Service>,
    pub service_name: String,
    pub counters: Arc<Counters>,
    pub server_id: String,
    /// The wire format of requests and replies.
    pub protocol: Protocol,
    pub completions_topic: String,
    pub dead_letter_topic: String,
    pub max_request_bytes: usize,
    /// Dedup window size and age.
    pub dedup_limits: (usize, Duration),
    /// Payload security, if the service requires sealed requests.
    pub security: Option<crate::security::PayloadSecurity>,
    pub windows: Mutex<HashMap<i32, Window>>,
    pub progress: Mutex<Progress>,
    pub finished: Notify,
    /// Per routing key, the completion signal of the last request dispatched with it.
    pub keyed: Mutex<HashMap<Bytes, (u64, oneshot::Receiver<()>)>>,
    pub next_seq: std::sync::atomic::AtomicU64,
    /// Partitions of the completion and dead-letter topics (the fewer of the two). A request
    /// partition at or above it (the request topic grew and they could not follow) has no
    /// side partition to write to: refused at once, not queued for a partition that does not
    /// exist (which would hold up the replies behind it in the shared producer).
    pub side_partitions: std::sync::atomic::AtomicI32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dispatcher {
    pub fn progress(&self) -> MutexGuard<'_, Progress> {
        lock(&self.progress)
    }

    pub fn windows(&self) -> MutexGuard<'_, HashMap<i32, Window>> {
        lock(&self.windows)
    }

    /// Starts `record` in a task of its own, holding `permit` until it is done. Requests with
    /// the same routing key (record key) run one at a time, in offset order.
    pub fn start(self: &Arc<Self>, record: ConsumerRecord, permit: OwnedSemaphorePermit) {
        Counters::bump(&self.counters.received);
        self.progress()
            .started(&record.topic, record.partition, record.offset);
        let (done, done_rx) = oneshot::channel::<()>();
        let seq = self
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let previous = record.key.as_ref().and_then(|k| {
            lock(&self.keyed)
                .insert(k.clone(), (seq, done_rx))
                .map(|(_, rx)| rx)
        });
        let me = self.clone();
        tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await; // resolves (as an error) when the previous one drops its sender
            }
            me.handle(&record).await;
            drop(done);
            if let Some(k) = &record.key {
                let mut keyed = lock(&me.keyed);
                if keyed.get(k).is_some_and(|(s, _)| *s == seq) {
                    keyed.remove(k);
                }
            }
            me.progress()
                .finished(&record.topic, record.partition, record.offset);
            me.finished.notify_waiters();
            drop(permit);
        });
    }

    /// Waits (at most `timeout`) until no request is running.
    pub async fn drain(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.finished.notified();
            let running = self.progress().in_flight(None);
            if running == 0 {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(running, "requests still running after the drain timeout; their offsets stay uncommitted");
                return;
            }
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    /// Commits what may be committed; a failure is counted and retried at the next commit.
    pub async fn commit(&self, consumer: &GroupCommitter) {
        let offsets = self.progress().to_commit();
        if offsets.is_empty() {
            return;
        }
        match consumer.commit(&offsets).await {
            Ok(()) => self.progress().committed(&offsets),
            Err(e) => {
                Counters::bump(&self.counters.commit_failures);
                tracing::warn!(error = %e, "offset commit failed; will retry");
            }
        }
    }

    async fn handle(&self, record: &ConsumerRecord) {
        let picked_up = now_ms();
        let size = record.value.as_ref().map_or(0, Bytes::len)
            + record
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
                .sum::<usize>();
        if size > self.max_request_bytes {
            Counters::bump(&self.counters.oversize);
            let reason = format!(
                "request of {size} bytes exceeds the limit of {} bytes",
                self.max_request_bytes
            );
            let (id, reply_to) = self.protocol.reply_address(record);
            self.refuse(record, id, reply_to, StatusCode::ResourceExhausted, reason)
                .await;
            return;
        }
        let decoded = match self.protocol.decode(record) {
            Ok(d) => d,
            Err(e) => {
                Counters::bump(&self.counters.malformed);
                let code = if e.unsupported_version {
                    StatusCode::FailedPrecondition
                } else {
                    StatusCode::DataLoss
                };
                self.refuse(record, e.id, e.reply_to, code, e.reason).await;
                return;
            }
        };
        let (mut request, rejected) = match decoded {
            Decoded::Call(r) => (r, None),
            Decoded::Rejected(r, why) => (r, Some(why)),
            Decoded::Unauthentic {
                id,
                reply_to,
                reason,
            } => {
                self.refuse_unauthentic(record, id, Some(&reply_to), reason)
                    .await;
                return;
            }
            Decoded::Handshake(to, answer) => {
                Counters::bump(&self.counters.handshakes);
                if let Err(e) = self.produce(&to.topic, to.partition, answer).await {
                    Counters::bump(&self.counters.reply_failures);
                    tracing::warn!(topic = %to.topic, error = %e, "handshake not answered");
                }
                return;
            }
        };
        if request.deadline_ms.is_some_and(|d| d < picked_up) {
            Counters::bump(&self.counters.expired);
            tracing::debug!(id = %request.id, offset = record.offset, partition = record.partition, method = %request.method, "deadline passed before pickup; not run");
            return;
        }
        if let Err(reason) = self.unseal(&mut request, picked_up) {
            self.refuse_unauthentic(record, request.id, request.reply_to.as_ref(), reason)
                .await;
            return;
        }
        let seen = self
            .windows()
            .entry(record.partition)
            .or_default()
            .check_and_start(request.id, record.offset, self.dedup_limits);
        // A request id seen before is never run again and never refused: a copy at another
        // offset is a producer's retry or a replay of the same sealed bytes (a changed copy
        // fails the seal, which covers the id), and refusing it could reach the caller before
        // the result of the first copy.
        match seen {
            Seen::New => {}
            Seen::Running(at) => {
                Counters::bump(&self.counters.deduplicated);
                tracing::debug!(id = %request.id, offset = record.offset, first = at, partition = record.partition, "already running; not started again (its reply comes from the first copy)");
                return;
            }
            Seen::Done(done) => {
                Counters::bump(&self.counters.deduplicated);
                tracing::debug!(id = %request.id, offset = record.offset, first = ?done.request_offset, partition = record.partition, "already answered; reply re-sent");
                if let Some(to) = &request.reply_to {
                    self.send_reply(&done.reply, to).await;
                }
                return;
            }
        }
        let queue_ms = (picked_up - request.sent_ms).max(0);
        let started = Instant::now();
        let outcome = match rejected {
            Some(why) => Err(why),
            None => {
                let ctx =
                    crate::service::RequestContext::builder(request.id, request.method.clone())
                        .service(self.service_name.clone())
                        .deadline_ms(request.deadline_ms)
                        .sent_ms(request.sent_ms)
                        .routing_key(record.key.clone())
                        .metadata(request.metadata.clone())
                        .server_id(self.server_id.clone())
                        .one_way(request.reply_to.is_none())
                        .position(record.partition, record.offset)
                        .build();
                self.service
                    .call(ctx, &request.method, request.payload.clone())
                    .await
            }
        };
        let handler_us = started.elapsed().as_micros() as u64;
        self.count_outcome(&outcome);
        let panicked = matches!(&outcome, Err(e) if e.code == StatusCode::Internal);
        let reply = self.reply_for(request.id, outcome, handler_us, queue_ms);
        if panicked {
            self.send_dead_letter(record, &format!("the handler panicked: {}", reply.message))
                .await;
        }
        let completion = Completion {
            reply,
            reply_to: request.reply_to.clone(),
            request_offset: Some(record.offset),
        };
        let to_completions = self.produce(
            &self.completions_topic,
            record.partition,
            completion.to_record(),
        );
        let to_caller = async {
            match &request.reply_to {
                Some(to) => self.send_reply(&completion.reply, to).await,
                None => Counters::bump(&self.counters.one_way),
            }
        };
        let (logged, ()) = tokio::join!(to_completions, to_caller);
        if let Err(e) = logged {
            tracing::warn!(id = %request.id, error = %e, "completion record not written; a redelivery would run again");
        }
        self.windows()
            .entry(record.partition)
            .or_default()
            .complete(completion, Instant::now(), self.dedup_limits);
    }

    /// With payload security: checks age and seal and replaces the payload with its plaintext.
    fn unseal(&self, request: &mut Request, now_ms: i64) -> Result<(), String> {
        let Some(security) = &self.security else {
            return match request.key_id {
                Some(_) => Err("the request is sealed but this server has no payload key".into()),
                None => Ok(()),
            };
        };
        let Some(key_id) = request.key_id else {
            return Err("this service requires sealed requests (payload security)".into());
        };
        let age = now_ms - request.sent_ms;
        if age > self.dedup_limits.1.as_millis() as i64 {
            return Err(format!(
                "the request was sent {age} ms ago, beyond the replay window of {:?}",
                self.dedup_limits.1
            ));
        }
        request.payload = security
            .open(key_id, &request.aad(), &request.payload)
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Refuses a request that fails the integrity check of payload security or of the legacy
    /// format: counted, logged, answered UNAUTHENTICATED where it wants a reply, never run.
    async fn refuse_unauthentic(
        &self,
        record: &ConsumerRecord,
        id: RequestId,
        reply_to: Option<&ReplyTo>,
        reason: String,
    ) {
        Counters::bump(&self.counters.auth_failures);
        tracing::warn!(%id, offset = record.offset, partition = record.partition, %reason, "refused: not authentic");
        self.answer_refusal(id, reply_to, StatusCode::Unauthenticated, reason)
            .await;
    }

    /// Answers a refused request with `code` where it wants a reply.
    async fn answer_refusal(
        &self,
        id: RequestId,
        reply_to: Option<&ReplyTo>,
        code: StatusCode,
        reason: String,
    ) {
        if let Some(to) = reply_to {
            let mut reply = self.reply_for(id, Err(HandlerError::new(code, reason)), 0, 0);
            reply.key_id = None;
            self.send_reply(&reply, to).await;
        }
    }

    fn count_outcome(&self, outcome: &Result<Bytes, HandlerError>) {
        let c = &self.counters;
        let counter = match outcome {
            Ok(_) => &c.ok,
            Err(e) => match e.code {
                StatusCode::Unimplemented => &c.unknown_method,
                StatusCode::InvalidArgument => &c.bad_arguments,
                StatusCode::Internal => &c.panics,
                _ => &c.handler_errors,
            },
        };
        Counters::bump(counter);
    }

    fn reply_for(
        &self,
        id: RequestId,
        outcome: Result<Bytes, HandlerError>,
        handler_us: u64,
        queue_ms: i64,
    ) -> Reply {
        let (status, message, payload) = match outcome {
            Ok(payload) => (StatusCode::Ok, String::new(), payload),
            Err(e) => (e.code, e.message, Bytes::new()),
        };
        let mut reply = Reply {
            id,
            status,
            message,
            server_id: self.server_id.clone(),
            handler_us,
            queue_ms,
            payload,
            key_id: None,
        };
        if let (Some(security), StatusCode::Ok) = (&self.security, reply.status) {
            let (key_id, sealed) = security.seal(&reply.aad(), &reply.payload);
            reply.payload = sealed;
            reply.key_id = Some(key_id);
        }
        reply
    }

    /// A record that cannot be served: dead-letter it, and answer `id` with `code` if we know
    /// where (`reply_to`).
    async fn refuse(
        &self,
        record: &ConsumerRecord,
        id: Option<RequestId>,
        reply_to: Option<ReplyTo>,
        code: StatusCode,
        reason: String,
    ) {
        tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, %reason, "not served; dead-lettered");
        self.send_dead_letter(record, &reason).await;
        if let (Some(id), Some(to)) = (id, reply_to) {
            let reply = self.reply_for(id, Err(HandlerError::new(code, reason)), 0, 0);
            self.send_reply(&reply, &to).await;
        }
    }

    async fn send_dead_letter(&self, record: &ConsumerRecord, reason: &str) {
        // An oversize record is dead-lettered without its value: the copy would be refused too.
        let keep_value = record.value.as_ref().map_or(0, Bytes::len) <= self.max_request_bytes;
        let letter = dead_letter(record, reason, &self.server_id, keep_value);
        match self
            .produce(&self.dead_letter_topic, record.partition, letter)
            .await
        {
            Ok(()) => Counters::bump(&self.counters.dead_lettered),
            Err(e) => {
                Counters::bump(&self.counters.dead_letter_failures);
                tracing::error!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %e, "dead letter not written");
            }
        }
    }

    /// Copies an undecodable batch of the request topic to the dead-letter topic (same
    /// partition), raw, and waits for the acknowledgement.
    pub async fn dead_letter_batch(
        &self,
        batch: &kafka_wire::SkippedBatch,
    ) -> Result<(), RpcError> {
        let letter = super::dead_letter::undecodable_batch(batch, &self.server_id);
        match self
            .produce(&self.dead_letter_topic, batch.partition, letter)
            .await
        {
            Ok(()) => {
                Counters::bump(&self.counters.dead_lettered);
                Ok(())
            }
            Err(e) => {
                Counters::bump(&self.counters.dead_letter_failures);
                tracing::error!(topic = %batch.topic, partition = batch.partition, from = batch.base_offset, to = batch.next_offset, error = %e, "undecodable batch not dead-lettered; stopping before anything after it runs");
                Err(RpcError::kafka(
                    format!(
                        "dead-lettering the undecodable batch {}/{} at offsets {}..{}",
                        batch.topic, batch.partition, batch.base_offset, batch.next_offset
                    ),
                    e,
                ))
            }
        }
    }

    /// Produces `record` to `topic`/`partition` and waits for its acknowledgement.
    async fn produce(
        &self,
        topic: &str,
        partition: i32,
        record: kafka_wire::ProducerRecord,
    ) -> Result<(), kafka_wire::Error> {
        let side = self
            .side_partitions
            .load(std::sync::atomic::Ordering::Relaxed);
        // A dead letter names its request's topic, partition and offsets in its headers, so one
        // of a partition the dead-letter topic lacks goes to another partition of it; a
        // completion is read back per partition (the dedup window), so it cannot.
        let partition = if topic == self.dead_letter_topic && partition >= side && side > 0 {
            partition % side
        } else {
            partition
        };
        if topic == self.completions_topic && partition >= side {
            return Err(kafka_wire::Error::InvalidArgument(format!(
                "{topic} has {side} partitions, fewer than the request topic: no partition {partition} to write to"
            )));
        }
        self.producer
            .send_to(topic, partition, record)?
            .await
            .map(|_| ())
    }

    async fn send_reply(&self, reply: &Reply, to: &ReplyTo) {
        if let Err(e) = self
            .produce(&to.topic, to.partition, self.protocol.reply_record(reply))
            .await
        {
            Counters::bump(&self.counters.reply_failures);
            tracing::warn!(id = %reply.id, topic = %to.topic, partition = to.partition, error = %e, "reply not delivered");
        }
    }
}
