//! The dispatcher: a short pipeline per request record (decode, dedup, deadline, call, reply,
//! progress), and the [`Pipeline`] that owns the state between requests: which records wait
//! for a concurrency permit, which wait for the request before them with the same routing key,
//! which offsets may be committed, and the request tasks themselves.
//!
//! Nothing here touches a consumer: records come in through [`Pipeline::admit`], replies,
//! completions and dead letters go out through an [`Outbox`] (the producer, or a recorder in
//! the unit tests, which run it with no broker).

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use krpc_kafka::{ConsumerRecord, GroupCommitter, Producer, ProducerRecord};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use super::completion_writer::CompletionWriter;
use super::dead_letter::dead_letter;
use super::dedup::{Seen, Window};
use super::progress::Progress;
use super::stats::Counters;
use crate::codec::record::{Incoming, Refused, RefusedKind, ServerCodec};
use crate::envelope::{now_ms, Completion, Reply, ReplyTo, Request, RequestId};
use crate::error::{HandlerError, RpcError};
use crate::service::{panicked, CancelReason, RequestContext, Service};
use crate::status::StatusCode;
use crate::trace::{self, RequestTrace};

/// Where the dispatcher's records go: replies, completions, dead letters, handshake answers.
pub(crate) trait Outbox: Send + Sync + 'static {
    /// Produces `record` to `topic`/`partition`; resolves once acknowledged.
    fn send(
        &self,
        topic: &str,
        partition: i32,
        record: ProducerRecord,
    ) -> BoxFuture<'static, Result<(), krpc_kafka::Error>>;
}

impl Outbox for Producer {
    fn send(
        &self,
        topic: &str,
        partition: i32,
        record: ProducerRecord,
    ) -> BoxFuture<'static, Result<(), krpc_kafka::Error>> {
        // Queued now when the buffer has room: the future then holds only the delivery (a
        // server answering thousands of calls at once holds thousands of these). Else
        // `send_to` waits for room (`buffer.memory`) inside the future.
        match self.try_send_to(topic, partition, record) {
            Ok(Ok(delivery)) => Box::pin(delivery.map(|stored| stored.map(|_| ()))),
            Ok(Err(record)) => {
                let (producer, topic) = (self.clone(), topic.to_string());
                Box::pin(async move {
                    producer
                        .send_to(&topic, partition, record)
                        .await?
                        .await
                        .map(|_| ())
                })
            }
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

/// What every request task shares (read-only but for the dedup windows).
pub(super) struct Dispatcher {
    pub outbox: Arc<dyn Outbox>,
    pub service: Arc<dyn Service>,
    pub service_name: String,
    pub codec: ServerCodec,
    pub counters: Arc<Counters>,
    pub server_id: String,
    pub completions_topic: String,
    /// Writes the completion records (coalesced unless turned off).
    pub completion_writer: CompletionWriter,
    pub dead_letter_topic: String,
    pub max_request_bytes: usize,
    /// Dedup window size and age.
    pub dedup_limits: (usize, Duration),
    pub windows: Mutex<HashMap<i32, Window>>,
    /// Partitions of the completion and dead-letter topics (the fewer of the two). A request
    /// partition at or above it (the request topic grew and they could not follow) has no
    /// side partition to write to: refused at once, not queued for a partition that does not
    /// exist (which would hold up the replies behind it in the shared producer).
    pub side_partitions: AtomicI32,
    /// Cancelled when the server stops and its drain timeout has run out: every request
    /// context is a child of it.
    pub stopping: CancellationToken,
    /// See [`ServerOptions::cancel_grace`](crate::ServerOptions::cancel_grace).
    pub cancel_grace: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a request task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Answered (or refused, or dropped for good): its offset may be committed.
    Done,
    /// Its handler was stopped because the server is stopping: not answered, its offset stays
    /// uncommitted and the request runs again on the partition's next owner.
    Abandoned,
}

/// The report of a finished request task.
struct Finished {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    key: Option<Bytes>,
    ending: Ending,
}

impl Dispatcher {
    pub fn windows(&self) -> MutexGuard<'_, HashMap<i32, Window>> {
        lock(&self.windows)
    }

    /// Runs one request record through decode, dedup, deadline, call and reply, inside its
    /// `krpc.request` span (`trace`: the span's context and the caller's).
    async fn handle(&self, record: &ConsumerRecord, trace: &RequestTrace) -> Ending {
        let picked_up = now_ms();
        let size = request_size(record);
        if size > self.max_request_bytes {
            Counters::bump(&self.counters.oversize);
            let reason = format!(
                "request of {size} bytes exceeds the limit of {} bytes",
                self.max_request_bytes
            );
            let (id, reply_to) = self.codec.reply_address(record);
            trace::record_status(&Span::current(), StatusCode::ResourceExhausted, true);
            Box::pin(self.refuse(record, id, reply_to, StatusCode::ResourceExhausted, reason))
                .await;
            return Ending::Done;
        }
        // Decode (and open a sealed payload).
        let (mut request, rejected) =
            match self.codec.read_request(record, &*self.service, picked_up) {
                Ok(Incoming::Call(r)) => (r, None),
                Ok(Incoming::Rejected(r, why)) => (r, Some(why)),
                Ok(Incoming::Handshake(to, answer)) => {
                    Counters::bump(&self.counters.handshakes);
                    trace::record_status(&Span::current(), StatusCode::Ok, true);
                    if let Err(e) = Box::pin(self.produce(&to.topic, to.partition, answer)).await {
                        Counters::bump(&self.counters.reply_failures);
                        tracing::warn!(topic = %to.topic, error = %e, "handshake not answered");
                    }
                    return Ending::Done;
                }
                Err(refused) => {
                    trace::record_status(&Span::current(), refused.status(), true);
                    Box::pin(self.refused(record, refused)).await;
                    return Ending::Done;
                }
            };
        trace::record_request(&self.service_name, request.id, &request.method);
        // Deadline: never start what the caller gave up on.
        if request.deadline_ms.is_some_and(|d| d < picked_up) {
            Counters::bump(&self.counters.expired);
            trace::record_status(&Span::current(), StatusCode::DeadlineExceeded, true);
            tracing::debug!(id = %request.id, offset = record.offset, partition = record.partition, method = %request.method, "deadline passed before pickup; not run");
            return Ending::Done;
        }
        // Dedup: a request id seen before is never run again and never refused: a copy at
        // another offset is a producer's retry or a replay of the same sealed bytes (a changed
        // copy fails the seal, which covers the id), and refusing it could reach the caller
        // before the result of the first copy.
        let seen = self
            .windows()
            .entry(record.partition)
            .or_default()
            .check_and_start(request.id, record.offset, self.dedup_limits);
        match seen {
            Seen::New => {}
            Seen::Running(at) => {
                Counters::bump(&self.counters.deduplicated);
                trace::record_unanswered(&Span::current(), trace::ALREADY_EXISTS);
                tracing::debug!(id = %request.id, offset = record.offset, first = at, partition = record.partition, "already running; not started again (its reply comes from the first copy)");
                return Ending::Done;
            }
            Seen::Done(done) => {
                Counters::bump(&self.counters.deduplicated);
                trace::record_status(&Span::current(), done.reply.status, true);
                tracing::debug!(id = %request.id, offset = record.offset, first = ?done.request_offset, partition = record.partition, "already answered; reply re-sent");
                if let Some(to) = &request.reply_to {
                    Box::pin(self.send_reply(&done.reply, to)).await;
                }
                return Ending::Done;
            }
        }
        // Call.
        let queue_ms = (picked_up - request.sent_ms).max(0);
        let started = Instant::now();
        let outcome = match rejected {
            Some(why) => Err(why),
            None => {
                let ctx = RequestContext::builder(request.id, request.method.clone())
                    .service(self.service_name.clone())
                    .deadline_ms(request.deadline_ms)
                    .sent_ms(request.sent_ms)
                    .routing_key(record.key.clone())
                    .metadata(std::mem::take(&mut request.metadata))
                    .server_id(self.server_id.clone())
                    .one_way(request.reply_to.is_none())
                    .position(record.partition, record.offset)
                    .trace(trace.context.clone())
                    .incoming_trace(trace.incoming.clone())
                    .parent(&self.stopping)
                    .build();
                let args = std::mem::take(&mut request.payload);
                match self.call(ctx, &request.method, args).await {
                    Some(outcome) => outcome,
                    None => {
                        Counters::bump(&self.counters.stopped);
                        trace::record_unanswered(&Span::current(), trace::CANCELLED);
                        tracing::warn!(id = %request.id, offset = record.offset, partition = record.partition, "handler stopped: the server is stopping; the request stays uncommitted");
                        return Ending::Abandoned;
                    }
                }
            }
        };
        // Boxed: while the handler runs (all a sleeping call does), only the states up to
        // here are held; answering's futures (two sends, the dead letter) are allocated when
        // reached. Inline, they more than doubled every request task in flight.
        Box::pin(self.answer(record, &request, outcome, started, queue_ms)).await
    }

    /// Answers a request that ran (or was refused by the codec after decoding): counts and
    /// traces its outcome, replies, writes its completion record and records it in the dedup
    /// window.
    async fn answer(
        &self,
        record: &ConsumerRecord,
        request: &Request,
        outcome: Result<Bytes, HandlerError>,
        started: Instant,
        queue_ms: i64,
    ) -> Ending {
        let handler_us = started.elapsed().as_micros() as u64;
        self.count_outcome(&outcome);
        let code = outcome.as_ref().map_or_else(|e| e.code, |_| StatusCode::Ok);
        trace::record_status(&Span::current(), code, true);
        self.counters
            .observe(&request.method, &outcome, started.elapsed(), queue_ms);
        let panicked = matches!(&outcome, Err(e) if e.code == StatusCode::Internal);
        // Reply and progress (the completion record).
        let reply = self
            .codec
            .reply(request.id, outcome, &self.server_id, handler_us, queue_ms);
        if panicked {
            // The reply's message already says how it failed ("the handler panicked: ...").
            self.send_dead_letter(record, &reply.message).await;
        }
        let completion = Completion {
            reply,
            reply_to: request.reply_to.clone(),
            request_offset: Some(record.offset),
        };
        let to_completions = self.write_completion(record.partition, completion.to_record());
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
        Ending::Done
    }

    /// Calls the service, watching the deadline and the server's stop. At the deadline the
    /// context is cancelled, the handler gets `cancel_grace` to return, and the outcome is
    /// DEADLINE_EXCEEDED whatever it returns (the caller has given up). `None`: stopped
    /// because the server is stopping.
    async fn call(
        &self,
        ctx: RequestContext,
        method: &str,
        args: Bytes,
    ) -> Option<Result<Bytes, HandlerError>> {
        let deadline = ctx.deadline();
        // `Service::call` itself runs inside the guard: an implementation may panic before it
        // returns its future, and that is a handler panic like any other.
        let handler = async { self.service.call(ctx.clone(), method, args).await };
        // Calls the handler makes continue the request's trace (src/trace.rs).
        let handler = trace::scope(
            ctx.trace()
                .cloned()
                .unwrap_or_else(trace::TraceContext::new_root),
            handler,
        );
        let fut = AssertUnwindSafe(handler).catch_unwind();
        tokio::pin!(fut);
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let reason = tokio::select! {
            out = &mut fut => return Some(out.unwrap_or_else(|p| Err(panicked(&*p)))),
            () = until_deadline => CancelReason::DeadlineExceeded,
            () = self.stopping.cancelled() => CancelReason::ServerStopping,
        };
        ctx.cancel(reason);
        let returned = tokio::time::timeout(self.cancel_grace, &mut fut)
            .await
            .is_ok();
        match reason {
            CancelReason::ServerStopping => None,
            _ => {
                Counters::bump(&self.counters.deadline_exceeded);
                tracing::debug!(id = %ctx.request_id(), method, returned, "handler still running at its deadline: cancelled");
                Some(Err(HandlerError::new(
                    StatusCode::DeadlineExceeded,
                    if returned {
                        "the deadline passed while the handler ran; it was cancelled".to_string()
                    } else {
                        format!(
                            "the deadline passed while the handler ran; it did not stop within {:?} of being cancelled and was dropped",
                            self.cancel_grace
                        )
                    },
                )))
            }
        }
    }

    /// A request the codec refused: counted, logged, answered where it wants a reply;
    /// malformed ones are dead-lettered.
    async fn refused(&self, record: &ConsumerRecord, r: Refused) {
        let code = r.status();
        if r.kind == RefusedKind::Unauthentic {
            Counters::bump(&self.counters.auth_failures);
            tracing::warn!(id = ?r.id.map(|i| i.to_string()), offset = record.offset, partition = record.partition, reason = %r.reason, "refused: not authentic");
            if let (Some(id), Some(to)) = (r.id, r.reply_to.as_ref()) {
                let reply = self.codec.reply(
                    id,
                    Err(HandlerError::new(code, r.reason)),
                    &self.server_id,
                    0,
                    0,
                );
                self.send_reply(&reply, to).await;
            }
            return;
        }
        Counters::bump(&self.counters.malformed);
        self.refuse(record, r.id, r.reply_to, code, r.reason).await;
    }

    fn count_outcome(&self, outcome: &Result<Bytes, HandlerError>) {
        let c = &self.counters;
        let counter = match outcome {
            Ok(_) => &c.ok,
            Err(e) => match e.code {
                StatusCode::Unimplemented => &c.unknown_method,
                StatusCode::InvalidArgument => &c.bad_arguments,
                StatusCode::Internal => &c.panics,
                StatusCode::DeadlineExceeded => return,
                _ => &c.handler_errors,
            },
        };
        Counters::bump(counter);
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
            let reply = self.codec.reply(
                id,
                Err(HandlerError::new(code, reason)),
                &self.server_id,
                0,
                0,
            );
            self.send_reply(&reply, &to).await;
        }
    }

    async fn send_dead_letter(&self, record: &ConsumerRecord, reason: &str) {
        // An oversize record is dead-lettered without its value: the copy would be refused too.
        let keep_value = request_size(record) <= self.max_request_bytes;
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
        batch: &krpc_kafka::SkippedBatch,
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

    /// Produces `record` to `topic`/`partition`; the future resolves once it is acknowledged.
    /// Not an `async fn`: the record goes to the outbox now, so the futures of the calls
    /// being answered do not each keep a copy of it.
    fn produce(
        &self,
        topic: &str,
        partition: i32,
        record: ProducerRecord,
    ) -> BoxFuture<'static, Result<(), krpc_kafka::Error>> {
        let side = self.side_partitions.load(Ordering::Relaxed);
        // A dead letter names its request's topic, partition and offsets in its headers, so one
        // of a partition the dead-letter topic lacks goes to another partition of it.
        let partition = if topic == self.dead_letter_topic && partition >= side && side > 0 {
            partition % side
        } else {
            partition
        };
        self.outbox.send(topic, partition, record)
    }

    /// Writes a completion record to `partition` of the completions topic (through the
    /// completion writer, which may coalesce it with others); the future resolves once the
    /// record carrying it is acknowledged. Not an `async fn`, as [`Self::produce`].
    fn write_completion(
        &self,
        partition: i32,
        record: ProducerRecord,
    ) -> BoxFuture<'static, Result<(), krpc_kafka::Error>> {
        let side = self.side_partitions.load(Ordering::Relaxed);
        // A completion is read back per partition (the dedup window), so it cannot go to
        // another partition than its request's.
        if partition >= side {
            return Box::pin(std::future::ready(Err(krpc_kafka::Error::InvalidArgument(
                format!(
                    "{} has {side} partitions, fewer than the request topic: no partition {partition} to write to",
                    self.completions_topic
                ),
            ))));
        }
        self.completion_writer.write(partition, record)
    }

    async fn send_reply(&self, reply: &Reply, to: &ReplyTo) {
        if let Err(e) = self
            .produce(&to.topic, to.partition, self.codec.reply_record(reply))
            .await
        {
            Counters::bump(&self.counters.reply_failures);
            tracing::warn!(id = %reply.id, topic = %to.topic, partition = to.partition, error = %e, "reply not delivered");
        }
    }
}

/// The state between requests, owned by the serving loop: records admitted but not started
/// (ready for a permit, or waiting for the request before them with the same routing key),
/// the running tasks, and per-partition progress (what may be committed).
///
/// A record waits for its key's predecessor *without* a concurrency permit: only records that
/// may run now compete for permits, in arrival order, so one busy routing key holds at most one
/// permit and never stalls the others.
pub(super) struct Pipeline {
    pub dispatcher: Arc<Dispatcher>,
    permits: Arc<Semaphore>,
    /// Records that may start now, in arrival order.
    ready: VecDeque<ConsumerRecord>,
    /// Per busy routing key, the records waiting for the one running (or ready) before them.
    waiting: HashMap<Bytes, VecDeque<ConsumerRecord>>,
    /// Routing keys with a record ready or running.
    busy: HashSet<Bytes>,
    /// Records in `ready` and `waiting`.
    queued: usize,
    /// Most records admitted and not yet started (bounds memory while a hot key's requests
    /// queue up; past it no more records are taken from the consumer until some start).
    max_queued: usize,
    progress: Progress,
    tasks: JoinSet<Finished>,
}

impl Pipeline {
    /// A pipeline running at most `concurrency` requests at once.
    pub fn new(dispatcher: Arc<Dispatcher>, concurrency: usize) -> Self {
        Self {
            dispatcher,
            permits: Arc::new(Semaphore::new(concurrency)),
            ready: VecDeque::new(),
            waiting: HashMap::new(),
            busy: HashSet::new(),
            queued: 0,
            // A fetch's worth of records beyond the running ones, at least.
            max_queued: concurrency.saturating_mul(4).max(1024),
            progress: Progress::default(),
            tasks: JoinSet::new(),
        }
    }

    /// Whether more records may be admitted now.
    pub fn may_admit(&self) -> bool {
        self.queued < self.max_queued
    }

    /// Whether [`step`](Self::step) has anything to wait for.
    pub fn has_work(&self) -> bool {
        !self.tasks.is_empty() || !self.ready.is_empty()
    }

    /// Requests admitted and not finished (queued or running).
    pub fn in_flight(&self) -> usize {
        self.progress.in_flight(None)
    }

    /// Takes a record: it runs when a permit is free and the request before it with the same
    /// routing key (if any) has finished. Records of a partition must be admitted in offset
    /// order.
    pub fn admit(&mut self, record: ConsumerRecord) {
        Counters::bump(&self.dispatcher.counters.received);
        self.progress
            .started(&record.topic, record.partition, record.offset);
        self.dispatcher
            .counters
            .requests_in_flight(self.in_flight());
        self.queued += 1;
        if let Some(key) = &record.key {
            if self.busy.contains(key) {
                self.waiting
                    .entry(key.clone())
                    .or_default()
                    .push_back(record);
                return;
            }
            self.busy.insert(key.clone());
        }
        self.ready.push_back(record);
    }

    /// Waits for one thing to happen: a request finishing, or a ready record getting a permit
    /// and starting. Cancel-safe. Call only when [`has_work`](Self::has_work).
    pub async fn step(&mut self) {
        tokio::select! {
            Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                match joined {
                    Ok(done) => self.finished(done),
                    Err(e) => tracing::error!(error = %e, "a request task failed"),
                }
            }
            permit = self.permits.clone().acquire_owned(), if !self.ready.is_empty() => {
                let permit = permit.expect("the semaphore is never closed");
                self.start(permit);
            }
        }
    }

    fn start(&mut self, permit: OwnedSemaphorePermit) {
        let Some(record) = self.ready.pop_front() else {
            return;
        };
        self.queued -= 1;
        let task = request_task(self.dispatcher.clone(), record, permit);
        self.tasks.spawn(task);
    }

    fn finished(&mut self, done: Finished) {
        if done.ending == Ending::Done {
            self.progress
                .finished(&done.topic, done.partition, done.offset);
        }
        if let Some(key) = done.key {
            self.release_key(key);
        }
        self.dispatcher
            .counters
            .requests_in_flight(self.in_flight());
    }

    /// The request of `key` that was ready or running is gone: its next waiting one (if any)
    /// becomes ready, at the back of the line (fair to other keys).
    fn release_key(&mut self, key: Bytes) {
        match self.waiting.get_mut(&key).and_then(VecDeque::pop_front) {
            Some(next) => {
                if self.waiting.get(&key).is_some_and(VecDeque::is_empty) {
                    self.waiting.remove(&key);
                }
                self.ready.push_back(next);
            }
            None => {
                self.waiting.remove(&key);
                self.busy.remove(&key);
            }
        }
    }

    /// Runs the pipeline until nothing admitted is unfinished, for at most `timeout`.
    pub async fn drain(&mut self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.in_flight() > 0 && self.has_work() {
            if tokio::time::timeout_at(deadline, self.step())
                .await
                .is_err()
            {
                tracing::warn!(
                    running = self.tasks.len(),
                    queued = self.queued,
                    "requests still unfinished after the drain timeout; their offsets stay uncommitted"
                );
                return;
            }
        }
    }

    /// Commits what may be committed; a failure is counted and retried at the next commit.
    pub async fn commit(&mut self, committer: &GroupCommitter) {
        let offsets = self.progress.to_commit();
        if offsets.is_empty() {
            return;
        }
        match committer.commit(&offsets).await {
            Ok(()) => self.progress.committed(&offsets),
            Err(e) => {
                Counters::bump(&self.dispatcher.counters.commit_failures);
                tracing::warn!(error = %e, "offset commit failed; will retry");
            }
        }
    }

    /// A revocation of `partitions`: their records not yet started are dropped (uncommitted,
    /// so their next owner runs them: no work is lost), then the running requests get up to
    /// `timeout` to finish, so that what they finish can be committed before the group moves
    /// on. Records queued behind a hot routing key no longer hold the whole group's rebalance
    /// (stop-10 review R2: the revocation drained every admitted record). The caller commits,
    /// then [`forget`](Self::forget)s the partitions.
    pub async fn revoke(&mut self, partitions: &[(&str, i32)], timeout: Duration) {
        for &(topic, partition) in partitions {
            self.drop_unstarted(topic, partition);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(Ok(done))) => self.finished(done),
                Ok(Some(Err(e))) => tracing::error!(error = %e, "a request task failed"),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        running = self.tasks.len(),
                        "requests still running after the drain timeout; their offsets stay uncommitted"
                    );
                    return;
                }
            }
        }
    }

    /// Forgets a partition no longer ours: its progress, its dedup window and its records not
    /// yet started (the running ones finish on their own; their offsets are no longer ours to
    /// commit).
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.progress.forget(topic, partition);
        self.dispatcher.windows().remove(&partition);
        self.drop_unstarted(topic, partition);
    }

    /// Drops the records of `topic`/`partition` admitted and not started (left uncommitted,
    /// for the partition's next owner).
    fn drop_unstarted(&mut self, topic: &str, partition: i32) {
        let theirs = |r: &ConsumerRecord| &*r.topic == topic && r.partition == partition;
        let before = self.queued;
        for queue in self.waiting.values_mut() {
            queue.retain(|r| !theirs(r));
        }
        let mut released = Vec::new();
        self.ready.retain(|r| {
            if theirs(r) {
                released.extend(r.key.clone());
                false
            } else {
                true
            }
        });
        for key in released {
            self.release_key(key);
        }
        self.queued = self.ready.len() + self.waiting.values().map(VecDeque::len).sum::<usize>();
        self.dispatcher
            .counters
            .requests_in_flight(self.in_flight());
        if before != self.queued {
            tracing::info!(
                topic,
                partition,
                dropped = before - self.queued,
                "revoked partition: requests not started are left to its next owner"
            );
        }
    }

    /// Stops every request task: contexts are cancelled (reason: the server is stopping),
    /// handlers get `cancel_grace` to return, the rest are aborted; returns once no request
    /// task is left. Records not started are dropped (uncommitted).
    pub async fn stop(&mut self) {
        self.dispatcher.stopping.cancel();
        self.ready.clear();
        self.waiting.clear();
        self.busy.clear();
        self.queued = 0;
        // Each task waits `cancel_grace` for its handler, then ends; a little more for the
        // task to report.
        let grace = self.dispatcher.cancel_grace + Duration::from_millis(50);
        let deadline = tokio::time::Instant::now() + grace;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(Ok(done))) => self.finished(done),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if !self.tasks.is_empty() {
            tracing::warn!(
                running = self.tasks.len(),
                "request tasks still running after the cancel grace: aborted"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }
}

/// The task serving one request record: its `krpc.request` span, [`Dispatcher::handle`]
/// inside it, and the report back to the pipeline (the permit is held until the end).
fn request_task(
    d: Arc<Dispatcher>,
    record: ConsumerRecord,
    permit: OwnedSemaphorePermit,
) -> impl std::future::Future<Output = Finished> + Send + 'static {
    // The request's span, a child of the caller's (src/trace.rs).
    let (span, trace) =
        trace::server_span(&d.service_name, &record, &d.counters.invalid_trace_headers);
    async move {
        // A panic here is a bug of the dispatcher itself (handler panics are caught in
        // `call`); the task still reports back, so the routing key is released. The offset
        // stays uncommitted: the partition's next owner meets the record again.
        let handled = d.handle(&record, &trace).instrument(span.clone());
        let ending = match AssertUnwindSafe(handled).catch_unwind().await {
            Ok(ending) => ending,
            Err(p) => {
                trace::record_status(&span, StatusCode::Internal, true);
                tracing::error!(topic = %record.topic, partition = record.partition, offset = record.offset, panic = %panicked(&*p).message, "serving a request panicked; its offset stays uncommitted");
                Ending::Abandoned
            }
        };
        drop(permit);
        Finished {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            key: record.key.clone(),
            ending,
        }
    }
}

#[cfg(test)]
mod tests;

/// A request record's size as `max_request_bytes` counts it: its value plus its headers' keys
/// and values. The one measure of "oversize" (serving and dead-lettering agree).
fn request_size(record: &ConsumerRecord) -> usize {
    record.value.as_ref().map_or(0, Bytes::len)
        + record
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
            .sum::<usize>()
}
