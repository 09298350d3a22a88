//! The sender: one task per producer that owns the outbox. It takes ready batches from the
//! batching stage ([`super::accumulator`]), sends one Produce request per leader carrying a
//! batch of each of its partitions (as the Java client's `Sender` does), keeps up to
//! `max.in.flight.requests.per.connection` requests in flight per leader, and applies each
//! outcome: resolve the batch, or put it back at the head of its partition with a backoff.
//!
//! Answers do not go through the sender task: the connection's reader task calls
//! [`Shared::on_answer`] as soon as it reads one (as the Java producer completes batches in
//! its I/O thread's callbacks), and when every batch of the request is stored their records
//! learn their offsets there, so the caller waiting on a record is woken by the reader itself.
//! (A connection whose reader runs on another runtime than the sender's is awaited by the
//! request instead, and the answer applied there: see `Connection::send_then`.) An answer
//! with any error goes to the sender task, which decides on each batch (retries, the
//! idempotence errors) as on a batch it could not send. A forced close drops the batches of
//! requests still unanswered (their records get [`Error::Closed`]), unless their answer is
//! being applied at that moment, and then their records get that answer's outcome.
//!
//! An idle producer does not wait for its sender to wake either: a send that makes a batch
//! ready while no request is in flight (on the sender's runtime) drains the ready batches
//! itself and writes their requests when the connection is ready and free; only a request
//! that cannot be written at once (a dial, a producer id) goes on in the sender task (see
//! [`Shared::send_now_if_idle`]). Under load nothing changes: the sender drains what piled up
//! behind the requests in flight. An idle producer's record thus costs no wake of the sender
//! task at all: the caller writes the request, the reader resolves it.
//!
//! Nothing waits on anything but its own partition: a request in flight holds back only the
//! partitions in it, a partition without a leader holds back only its own batches (the sender
//! refreshes metadata for it in the background, with backoff), and a batch waiting for its
//! retry holds back only the batches behind it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::accumulator::{Batch, Batching, BufferPool, CachedLeader, Encoded};
use super::idempotence::{self, Idempotence, OnError};
use super::outcome::Wake;
use super::{Acks, ProducerConfig};
use crate::backoff::Backoff;
use crate::client::{KafkaClient, Lane};
use crate::error::{check_code, Error, Result};
use crate::fast_map::FastMap;

/// What the producer handles and its sender task share.
pub(super) struct Shared {
    pub client: KafkaClient,
    pub config: ProducerConfig,
    pub stage: Mutex<Batching>,
    pub pool: BufferPool,
    /// Wakes the sender: a batch opened or became ready, a flush, a close.
    pub wake: Notify,
    idem: Idempotence,
    started: AtomicBool,
    /// The stage is closed (a copy of its flag, read without its lock by every send).
    closed: AtomicBool,
    /// A forced close: the sender drops what it has in flight and stops.
    aborted: AtomicBool,
    /// Produce requests in flight, per leader (Java's `max.in.flight.requests.per.connection`
    /// bounds each); a leader once used keeps its entry at 0. Locked after `stage` when both
    /// are.
    in_flight: Mutex<FastMap<Arc<str>, usize>>,
    /// Requests a send started (see [`Shared::send_now_if_idle`]) for the sender to finish.
    handoff: Mutex<Vec<BoxFuture<'static, Sent>>>,
    /// The batches of each request written and not yet answered, by request number: the
    /// answer's callback takes them (see [`Shared::on_answer`]), or a forced close does.
    answering: Mutex<FastMap<u64, Vec<Batch>>>,
    next_request: AtomicU64,
    /// Answers with an error, for the sender to decide on (retries, idempotence).
    answered: Mutex<Vec<Answered>>,
    /// Turns of the sender task's loop (each after a wake, a timer or an answer it awaited).
    pub turns: AtomicU64,
    /// The runtime the sender task was spawned on.
    sender_runtime: std::sync::OnceLock<tokio::runtime::Id>,
}

/// What to do with a batch after an attempt.
enum Decision {
    /// Hand this outcome to its records.
    Done(Result<i64>),
    /// Send it again at this time.
    Retry(Instant),
}

impl Shared {
    pub(super) fn new(client: KafkaClient, config: ProducerConfig) -> Self {
        Self {
            stage: Mutex::new(Batching::new(config.max_batch_bytes, config.linger)),
            pool: BufferPool::new(config.buffer_memory),
            wake: Notify::new(),
            idem: Idempotence::new(config.enable_idempotence && config.acks == Acks::All),
            started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            in_flight: Mutex::new(FastMap::default()),
            handoff: Mutex::new(Vec::new()),
            answering: Mutex::new(FastMap::default()),
            next_request: AtomicU64::new(0),
            answered: Mutex::new(Vec::new()),
            turns: AtomicU64::new(0),
            sender_runtime: std::sync::OnceLock::new(),
            client,
            config,
        }
    }

    pub(super) fn stage(&self) -> MutexGuard<'_, Batching> {
        self.stage.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight(&self) -> MutexGuard<'_, FastMap<Arc<str>, usize>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handoff(&self) -> MutexGuard<'_, Vec<BoxFuture<'static, Sent>>> {
        self.handoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn answering(&self) -> MutexGuard<'_, FastMap<u64, Vec<Batch>>> {
        self.answering.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn answered(&self) -> MutexGuard<'_, Vec<Answered>> {
        self.answered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `batches` (a request's, about to be written) until its answer; returns the
    /// request's number. After a forced close, `None`: the batches are dropped (their records
    /// get [`Error::Closed`]) and nothing is to be sent. Checked under the lock a forced close
    /// takes the parked batches with, so none is parked after it.
    fn park(&self, batches: Vec<Batch>) -> Option<u64> {
        let mut answering = self.answering();
        if self.aborted.load(Ordering::SeqCst) {
            drop(answering);
            drop(batches);
            return None;
        }
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        answering.insert(request, batches);
        Some(request)
    }

    /// The batches of `request` ([`Shared::park`]); none after a forced close took them.
    fn unpark(&self, request: u64) -> Option<Vec<Batch>> {
        self.answering().remove(&request)
    }

    /// The answer to `request` (its batches parked, sent to `leader`), or why there is none:
    /// called as `Connection::send_then` says, usually by the connection's reader task as
    /// soon as the answer is read, so a record's caller is woken by the reader itself, not
    /// through the sender task (the Java producer completes batches on its I/O thread the same
    /// way); a failure may also be told from whichever task broke the connection. Every batch
    /// stored: their records learn their offsets here (what [`Shared::decide`] makes of a
    /// success). Any error: the answer goes to the sender task, which decides on each batch
    /// (retries, idempotence) as for any other. Never blocks: it takes the producer's locks
    /// only briefly, one at a time.
    fn on_answer(&self, request: u64, leader: Arc<str>, reply: Result<ProduceResponse>) {
        let Some(batches) = self.unpark(request) else {
            // A forced close failed them already.
            return;
        };
        let results: Vec<Result<i64>> = match &reply {
            Ok(response) => batches
                .iter()
                .map(|b| partition_result(response, &leader, &b.topic, b.partition))
                .collect(),
            Err(e) => {
                tracing::debug!(broker = %leader, error = %e, "produce request failed");
                batches.iter().map(|_| Err(e.clone())).collect()
            }
        };
        if results.iter().all(Result::is_ok) {
            self.request_done(&leader);
            // The records' tasks are woken last, when everything else here is done (see
            // `outcome::Wake`): each is likely to run next on this thread's CPU.
            let mut wake: Option<Wake> = None;
            for (batch, result) in batches.into_iter().zip(results) {
                let w = self.finish_later(batch, result, true);
                match &mut wake {
                    Some(all) => all.merge(w),
                    None => wake = Some(w),
                }
            }
            // The sender has work only if its last drain left batches waiting for an answer
            // (this one may have made room for them) or the producer is closing (it may be
            // done). A batch appended since is the appending send's to start, or to wake the
            // sender for: not a reason to wake it here.
            let more = {
                let mut stage = self.stage();
                stage.take_held_for_answers() || stage.is_closed()
            };
            if more {
                self.wake.notify_one();
            }
            drop(reply);
            drop(wake);
        } else {
            let mut answered = self.answered();
            if self.aborted.load(Ordering::SeqCst) {
                // A forced close took the queue already and the sender is gone: the batches
                // are dropped here (their records get `Closed`), not left in the queue.
                drop(answered);
                drop(batches);
                return;
            }
            answered.push(Answered {
                leader,
                batches,
                results,
            });
            drop(answered);
            self.wake.notify_one();
        }
    }

    /// Applies what an attempt at a request left: resolves or requeues each batch and, if it
    /// ends the request, no longer counts it in flight.
    fn apply(&self, sent: Sent) {
        if sent.ends_request {
            self.request_done(&sent.leader);
        }
        for (batch, decision) in sent.outcomes {
            match decision {
                Decision::Done(outcome) => self.finish(batch, outcome, true),
                Decision::Retry(at) => {
                    let mut stage = self.stage();
                    // After a forced close nothing drains the stage again: the batch is
                    // dropped (its records get `Closed`), outside the lock. `abort` sets the
                    // flag before it takes this lock.
                    if self.aborted.load(Ordering::SeqCst) {
                        drop(stage);
                        drop(batch);
                    } else {
                        stage.requeue(batch, at);
                    }
                }
            }
        }
    }

    /// Takes the batches ready now (see [`Batching::drain`]) within each leader's room for
    /// requests in flight, and counts the requests they make as in flight. `stage` is this
    /// producer's stage, locked by the caller.
    fn drain(&self, stage: &mut Batching, now: Instant) -> super::accumulator::Drained {
        let max_in_flight = self.config.max_in_flight_requests_per_connection.max(1);
        let mut in_flight = self.in_flight();
        let drained = stage.drain(
            now,
            self.pool.exhausted(),
            |topic, partition| self.client.cached_leader(topic, partition),
            |leader| max_in_flight.saturating_sub(*in_flight.get(leader).unwrap_or(&0)),
            self.config.max_record_bytes,
        );
        for (leader, _) in &drained.requests {
            // A leader's entry stays at 0 between requests: no key to allocate each time.
            match in_flight.get_mut(&**leader) {
                Some(n) => *n += 1,
                None => {
                    in_flight.insert(leader.clone(), 1);
                }
            }
        }
        drained
    }

    /// A request to `leader` is answered (or dropped): it no longer counts as in flight.
    fn request_done(&self, leader: &str) {
        let mut in_flight = self.in_flight();
        if let Some(n) = in_flight.get_mut(leader) {
            // Kept at 0 (one entry per leader ever used, so a handful).
            *n = n.saturating_sub(1);
        }
    }

    /// Called by a send that made a batch ready to go (it opened or closed one). When no
    /// request is in flight and the sender task runs on the sending task's runtime, the
    /// sending task drains the ready batches and starts each request itself: its first poll
    /// writes the frame when the connection is ready and free, and the answer is then the
    /// reader's to apply ([`Shared::on_answer`]). A request that gets only part of the way (a
    /// dial, a producer id) is handed to the sender task, which finishes it; the first poll's
    /// waker wakes the sender, so the sender is woken when that can go on, not now. This
    /// spares an idle producer's record two thread wakes (of the sender, by the sending
    /// thread, before its request is written); rskafka writes from the caller too, the Java
    /// producer always hands over to its sender thread. With requests in flight the sender
    /// drains as before, so what piles up behind them still goes in as few requests as
    /// possible.
    ///
    /// Returns whether the sender still needs waking for this send: a batch waits (linger,
    /// backoff: a timer to set), a partition has no known leader (a refresh to start), a
    /// request ended at once (its outcome to apply), or nothing was drained here.
    pub(super) fn send_now_if_idle(self: &Arc<Self>) -> bool {
        // Only on the sender's runtime: what the first poll starts (a dial, a timer) belongs to
        // the runtime it runs on, and the sender task finishes it. Outside a runtime
        // (`try_send_to` is a plain function) nothing can be started here at all.
        let same_runtime = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| self.sender_runtime.get() == Some(&h.id()));
        if !same_runtime {
            return true;
        }
        let drained = {
            let mut stage = self.stage();
            if self.in_flight().values().any(|&n| n > 0) {
                return true;
            }
            self.drain(&mut stage, Instant::now())
        };
        if drained.requests.is_empty() {
            return true;
        }
        let wake = Arc::new(WakeSender {
            shared: Arc::downgrade(self),
            woken: AtomicBool::new(false),
        });
        let waker = std::task::Waker::from(wake.clone());
        let mut cx = Context::from_waker(&waker);
        let mut started = Vec::with_capacity(drained.requests.len());
        // A request done in its first poll (acks=0, a failure) wakes no one: the sender must
        // be woken to apply it.
        let mut finished = false;
        for (leader, batches) in drained.requests {
            let mut request = send_request(self.clone(), leader, batches).boxed();
            // A panic here would leave the drained batches in flight for good (flush and close
            // would never return): fail the producer as the sender task's end does.
            let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                request.as_mut().poll(&mut cx)
            }));
            started.push(match first {
                // Written: its answer's callback takes it from here (the common case).
                Ok(Poll::Ready(sent)) if sent.is_handed_over() => continue,
                Ok(Poll::Ready(sent)) => {
                    finished = true;
                    futures::future::ready(sent).boxed()
                }
                Ok(Poll::Pending) => request,
                Err(panic) => {
                    drop(started);
                    self.abort(&Error::Closed("producer (a send panicked)"));
                    std::panic::resume_unwind(panic);
                }
            });
        }
        {
            let mut handoff = self.handoff();
            if self.aborted.load(Ordering::SeqCst) {
                // A forced close emptied the handoff and stopped the sender meanwhile: these
                // requests are dropped as the ones it had (their records get `Closed`).
                drop(handoff);
                drop(started);
                return false;
            }
            handoff.extend(started);
        }
        // An answer that came before the requests were in the handoff woke a sender that
        // found nothing: wake it again now that they are there.
        finished
            || wake.woken.load(Ordering::SeqCst)
            || !drained.leaderless.is_empty()
            || drained.next.is_some()
    }

    /// Closes the stage (appends are refused, every batch is ready); returns the id a flush
    /// of everything queued waits for (see [`Batching::close`]).
    pub(super) fn close_stage(&self) -> u64 {
        let mark = self.stage().close();
        self.closed.store(true, Ordering::SeqCst);
        mark
    }

    /// Whether the producer is closed (sends are refused).
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Starts the sender task if it is not running yet.
    pub(super) fn ensure_sender(self: &Arc<Self>) {
        // A load first: every send calls this, and a swap writes the line each time.
        if !self.started.load(Ordering::Acquire) && !self.started.swap(true, Ordering::SeqCst) {
            let _ = self
                .sender_runtime
                .set(tokio::runtime::Handle::current().id());
            tokio::spawn(run(self.clone()));
        }
    }

    /// Forced close: fails what is queued with `error`, and makes the sender drop the
    /// requests it has in flight (their records get [`Error::Closed`]) and stop.
    pub(super) fn abort(&self, error: &Error) {
        self.aborted.store(true, Ordering::SeqCst);
        // Requests handed over and not yet taken by the sender are dropped with it (a send
        // handing some over checks `aborted` under the same lock, after this store).
        let handed = std::mem::take(&mut *self.handoff());
        drop(handed);
        // So are the batches of requests written and not yet answered (their answers, if
        // any come, find nothing left to resolve), and answers the sender has not taken.
        let answering = std::mem::take(&mut *self.answering());
        drop(answering);
        let answered = std::mem::take(&mut *self.answered());
        drop(answered);
        let freed = self.stage().abort(error);
        self.closed.store(true, Ordering::SeqCst);
        self.pool.release(freed);
        self.wake.notify_one();
    }

    /// Resolves `batch` and gives its bytes back to the buffer.
    fn finish(&self, batch: Batch, outcome: Result<i64>, was_in_flight: bool) {
        drop(self.finish_later(batch, outcome, was_in_flight));
    }

    /// [`Shared::finish`], the records' tasks woken when the returned [`Wake`] is dropped.
    fn finish_later(&self, batch: Batch, outcome: Result<i64>, was_in_flight: bool) -> Wake {
        let (finished, freed) = self.stage().take_finished(batch, was_in_flight);
        // The records are told outside the stage's lock (a woken caller's next send takes
        // it); the batch counts as unfinished until then, so a flush cannot return first.
        let (id, wake) = finished.deliver_later(outcome);
        self.stage().resolved(id);
        self.pool.release(freed);
        wake
    }

    /// The bytes of `batch`: its records were encoded as they were appended; on first use the
    /// header is filled in (and stamped, with idempotence) and the records compressed with
    /// the codec; the same bytes on every retry.
    async fn prepare(&self, batch: &mut Batch) -> Result<Bytes> {
        if let Some(e) = &batch.encoded {
            return Ok(e.bytes.clone());
        }
        let stamp = self
            .idem
            .stamp(&self.client, &batch.topic, batch.partition, batch.len())
            .await?;
        let bytes = batch
            .records
            .encode(self.config.codec, stamp.map(|(s, _)| s))
            .map_err(|e| Error::Encode {
                api: crate::ApiKey::PRODUCE,
                reason: format!("{}/{}: {e:#}", batch.topic, batch.partition),
            })?;
        batch.encoded = Some(Encoded {
            bytes: bytes.clone(),
            generation: stamp.map(|(_, g)| g),
        });
        Ok(bytes)
    }

    /// Decides what an attempt's outcome means for `batch`: the Java producer's handling of
    /// the idempotence errors (see [`idempotence::on_error`]), retries of retriable errors
    /// with backoff within `delivery.timeout.ms`. A stamped batch that fails for good resets
    /// the producer id, so the sequence gap it leaves cannot fail the batches after it.
    async fn decide(&self, batch: &mut Batch, outcome: Result<i64>) -> Decision {
        let e = match outcome {
            Ok(base) => return Decision::Done(Ok(base)),
            Err(e) => e,
        };
        let generation = batch.encoded.as_ref().and_then(|e| e.generation);
        let mut retry = false;
        if let Some(g) = generation {
            match idempotence::on_error(&e) {
                // Stored by an earlier attempt; its offset is unknown here.
                OnError::Written => return Decision::Done(Ok(-1)),
                OnError::Restamp if batch.restamps < 3 => {
                    self.idem.reset(g, &e).await;
                    batch.encoded = None;
                    batch.restamps += 1;
                    retry = true;
                }
                _ => {}
            }
        }
        if !retry && e.is_retriable() && idempotence::on_error(&e) == OnError::Other {
            if e.invalidates_metadata() {
                self.client.invalidate_topic(&batch.topic);
            }
            retry = true;
        }
        if retry {
            tracing::debug!(topic = %batch.topic, partition = batch.partition, error = %e, "produce failed, retrying");
            let cfg = self.client.config();
            let deadline = batch.created + self.config.delivery_timeout;
            let backoff = batch.backoff.get_or_insert_with(|| {
                Backoff::new(
                    cfg.retry_backoff,
                    cfg.retry_backoff_max,
                    deadline.saturating_duration_since(Instant::now()),
                )
            });
            let delay = backoff.next_delay();
            batch.last_error = Some(e.clone());
            let now = Instant::now();
            if now < deadline {
                // At the deadline a batch still queued expires with this error.
                return Decision::Retry(now + delay);
            }
        }
        // Failed for good (or out of time): a stamped batch that may be missing resets the id.
        if let Some(g) = batch.encoded.as_ref().and_then(|e| e.generation) {
            self.idem.reset(g, &e).await;
        }
        Decision::Done(Err(e))
    }

    /// Fails a batch that reached its delivery timeout while queued: with the error of its
    /// last attempt (or why it could not be sent), else [`Error::DeliveryTimeout`].
    async fn expire(&self, batch: Batch) {
        let error = batch
            .last_error
            .clone()
            .unwrap_or_else(|| Error::DeliveryTimeout {
                topic: batch.topic.to_string(),
                partition: batch.partition,
                records: batch.len(),
                after: self.config.delivery_timeout,
            });
        tracing::debug!(topic = %batch.topic, partition = batch.partition, records = batch.len(), error = %error, "batch expired (delivery timeout)");
        if let Some(g) = batch.encoded.as_ref().and_then(|e| e.generation) {
            self.idem.reset(g, &error).await;
        }
        self.finish(batch, Err(error), false);
    }
}

/// Wakes the sender task: the waker of requests a send started (see
/// [`Shared::send_now_if_idle`]). Weak: a timer may hold it after the producer is gone.
struct WakeSender {
    shared: std::sync::Weak<Shared>,
    /// Set by the first wake: one that came before the requests reached the handoff found
    /// nothing there, and the send wakes the sender again.
    woken: AtomicBool,
}

impl std::task::Wake for WakeSender {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if let Some(shared) = self.shared.upgrade() {
            shared.wake.notify_one();
        }
    }
}

/// What an attempt at one request leaves for the sender to apply ([`Shared::apply`]).
struct Sent {
    leader: Arc<str>,
    /// Each batch resolved or to retry (the batches not written, or all of an answer that
    /// went to the sender).
    outcomes: Vec<(Batch, Decision)>,
    /// Whether this ends the request (it no longer counts in flight). When not, the request
    /// was written and its answer's callback ends it ([`Shared::on_answer`]).
    ends_request: bool,
}

impl Sent {
    /// Written, with nothing left for the sender: the answer's callback does the rest.
    fn is_handed_over(&self) -> bool {
        !self.ends_request && self.outcomes.is_empty()
    }
}

/// An answer with an error, for the sender to decide on: the request's leader, its batches
/// and each one's result.
struct Answered {
    leader: Arc<str>,
    batches: Vec<Batch>,
    results: Vec<Result<i64>>,
}
/// A metadata refresh for the topics it names.
type Refresh = BoxFuture<'static, (Vec<Arc<str>>, Result<()>)>;

/// The sender task: runs until the producer is closed (or every handle dropped) and nothing
/// is left, or until a forced close.
/// Fails what is queued when the sender ends abnormally: a panic, or the runtime that ran it
/// shut down while the producer lives on elsewhere. Without it, every delivery, `flush` and
/// `close` would wait for a sender that is gone.
struct EndGuard {
    shared: Arc<Shared>,
    ended_normally: bool,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if self.ended_normally {
            return;
        }
        // A runtime shutting down with the producer idle (a program's normal exit) loses
        // nothing: only records still queued or in flight are worth an error.
        let unfinished = self.shared.stage().unfinished();
        if unfinished > 0 {
            tracing::error!(
                batches = unfinished,
                "the producer's sender task ended (a panic, or its runtime shut down) with \
                 records not yet acknowledged: they fail with Closed"
            );
        }
        self.shared
            .abort(&Error::Closed("producer (its sender task ended)"));
    }
}

/// The sender task. The guard is made before the future is first polled, so a task dropped
/// unpolled (its runtime shut down at once) fails the queue too.
fn run(shared: Arc<Shared>) -> impl std::future::Future<Output = ()> + Send {
    let guard = EndGuard {
        shared: shared.clone(),
        ended_normally: false,
    };
    async move {
        // Moves the whole guard into the future (a field assignment alone would capture
        // only the field, dropping the guard at once).
        let mut guard = guard;
        run_until_done(shared).await;
        guard.ended_normally = true;
    }
}

async fn run_until_done(shared: Arc<Shared>) {
    let cfg = shared.client.config().clone();
    let mut in_flight: FuturesUnordered<BoxFuture<'static, Sent>> = FuturesUnordered::new();
    let mut refresh: Option<Refresh> = None;
    let mut refresh_backoff = Backoff::unbounded(cfg.retry_backoff, cfg.retry_backoff_max);
    let mut refresh_at = Instant::now();
    loop {
        shared.turns.fetch_add(1, Ordering::Relaxed);
        if shared.aborted.load(Ordering::SeqCst) {
            // Dropping the requests in flight drops their records' waiters: each gets
            // `Error::Closed`.
            return;
        }
        // Requests that sends started (already counted as in flight).
        for request in std::mem::take(&mut *shared.handoff()) {
            in_flight.push(request);
        }
        // Answers with errors (their requests still counted as in flight).
        let answered = std::mem::take(&mut *shared.answered());
        for answered in answered {
            in_flight.push(decide_answered(shared.clone(), answered).boxed());
        }
        let now = Instant::now();
        let (expired, drained, next_expiry, done) = {
            let mut stage = shared.stage();
            let expired = stage.expire(now, shared.config.delivery_timeout);
            let drained = shared.drain(&mut stage, now);
            let done = stage.is_closed() && stage.is_empty() && in_flight.is_empty();
            (
                expired,
                drained,
                stage.next_expiry(shared.config.delivery_timeout),
                done,
            )
        };
        if done {
            return;
        }
        for batch in expired {
            shared.expire(batch).await;
        }
        for (leader, batches) in drained.requests {
            in_flight.push(send_request(shared.clone(), leader, batches).boxed());
        }
        let mut next = [drained.next, next_expiry].into_iter().flatten().min();
        if drained.leaderless.is_empty() {
            refresh_backoff.reset(cfg.retry_backoff);
        } else if refresh.is_none() {
            if refresh_at <= now {
                let client = shared.client.clone();
                let topics = drained.leaderless;
                refresh = Some(
                    async move {
                        let names: Vec<&str> = topics.iter().map(|t| &**t).collect();
                        let r = client.refresh_metadata(&names).await;
                        (topics, r)
                    }
                    .boxed(),
                );
            } else {
                next = Some(next.map_or(refresh_at, |n| n.min(refresh_at)));
            }
        }
        // A timer only when something is due: with linger 0 most turns have none, and each
        // timer is registered with (and removed from) the runtime's timer wheel.
        let sleep = async move {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(sent) = in_flight.next(), if !in_flight.is_empty() => shared.apply(sent),
            (topics, result) = async { refresh.as_mut().expect("guarded").await }, if refresh.is_some() => {
                refresh = None;
                refresh_at = Instant::now() + refresh_backoff.next_delay();
                match result {
                    Ok(()) => fail_unknown_topics(&shared, &topics),
                    Err(e) => {
                        tracing::debug!(error = %e, "producer metadata refresh failed");
                        let mut stage = shared.stage();
                        for topic in &topics {
                            stage.note_error(topic, &e);
                        }
                    }
                }
            }
            _ = shared.wake.notified() => {}
            _ = sleep => {}
        }
    }
}

/// After a metadata refresh: queued batches of a topic the cluster does not know fail with
/// [`Error::UnknownTopic`] (as a send to it would), not wait for their delivery timeout.
fn fail_unknown_topics(shared: &Shared, topics: &[Arc<str>]) {
    let unknown: Vec<&Arc<str>> = topics
        .iter()
        .filter(|t| shared.client.cached_leader(t, 0) == CachedLeader::UnknownTopic)
        .collect();
    for topic in unknown {
        let error = Error::UnknownTopic {
            topic: topic.to_string(),
        };
        let freed = shared.stage().fail_topic(topic, &error);
        shared.pool.release(freed);
    }
}

/// Sends `batches` to `leader` in one Produce request. Resolves once it is handed to the
/// connection (or, for a connection on another runtime, answered): its answer is applied by
/// [`Shared::on_answer`]. What could not be sent (a batch that could not be prepared, a
/// connection that could not be had, a refused write) is decided on here.
async fn send_request(shared: Arc<Shared>, leader: Arc<str>, batches: Vec<Batch>) -> Sent {
    let mut outcomes = Vec::with_capacity(batches.len());
    let mut sending = Vec::with_capacity(batches.len());
    let mut payload = Vec::with_capacity(batches.len());
    for mut batch in batches {
        match shared.prepare(&mut batch).await {
            Ok(bytes) => {
                payload.push((batch.topic.clone(), batch.partition, bytes));
                sending.push(batch);
            }
            Err(e) => {
                let decision = shared.decide(&mut batch, Err(e)).await;
                outcomes.push((batch, decision));
            }
        }
    }
    let mut sent = Sent {
        leader,
        outcomes,
        ends_request: true,
    };
    if payload.is_empty() {
        return sent;
    }
    let failed = match shared.client.connection(&sent.leader, Lane::Default).await {
        Ok(conn) => {
            let req = produce_request(
                shared.config.acks,
                shared.client.config().request_timeout,
                &payload,
            );
            if shared.config.acks == Acks::None {
                match conn.send_no_response(&req) {
                    Ok(()) => sending.into_iter().map(|b| (b, Ok(-1))).collect(),
                    Err(e) => with_error(sending, &e),
                }
            } else {
                let Some(request) = shared.park(sending) else {
                    // A forced close: nothing more is sent.
                    return sent;
                };
                let on_reply = {
                    let (shared, leader) = (shared.clone(), sent.leader.clone());
                    move |reply| {
                        // A panic here would leave the request's batches unresolved and its
                        // room in flight taken for good: fail the producer, as the sender
                        // task's end does. Not raised again: this runs on whichever task told
                        // the connection's waiters (`Connection::send_then`), whose other
                        // waiters, of other producers and callers, must still be told. The
                        // panic hook has reported it.
                        let applied =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                shared.on_answer(request, leader, reply)
                            }));
                        if applied.is_err() {
                            tracing::error!(
                                "applying a produce answer panicked: the producer is closed"
                            );
                            shared.abort(&Error::Closed("producer (applying an answer panicked)"));
                        }
                    }
                };
                match conn.send_then(&req, on_reply).await {
                    Ok(()) => {
                        sent.ends_request = false;
                        Vec::new()
                    }
                    // Not sent: the batches are still parked (unless a forced close took
                    // them).
                    Err(e) => with_error(shared.unpark(request).unwrap_or_default(), &e),
                }
            }
        }
        Err(e) => with_error(sending, &e),
    };
    for (mut batch, result) in failed {
        if let Err(e) = &result {
            tracing::debug!(broker = %sent.leader, error = %e, "produce request failed");
        }
        let decision = shared.decide(&mut batch, result).await;
        sent.outcomes.push((batch, decision));
    }
    sent
}

/// Each of `batches` with (a clone of) `error`.
fn with_error(batches: Vec<Batch>, error: &Error) -> Vec<(Batch, Result<i64>)> {
    batches
        .into_iter()
        .map(|b| (b, Err(error.clone())))
        .collect()
}

/// Decides on each batch of an answer with an error ([`Shared::on_answer`]); ends its request.
async fn decide_answered(shared: Arc<Shared>, answered: Answered) -> Sent {
    let mut outcomes = Vec::with_capacity(answered.batches.len());
    for (mut batch, result) in answered.batches.into_iter().zip(answered.results) {
        let decision = shared.decide(&mut batch, result).await;
        outcomes.push((batch, decision));
    }
    Sent {
        leader: answered.leader,
        outcomes,
        ends_request: true,
    }
}

/// A Produce request (v3+: one record batch per partition) of `batches` (topic, partition,
/// encoded records) with `acks` and the broker's `timeout` for replication (`timeout_ms`).
fn produce_request(
    acks: Acks,
    timeout: std::time::Duration,
    batches: &[(Arc<str>, i32, Bytes)],
) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (topic, partition, records) in batches {
        let data = PartitionProduceData::default()
            .with_index(*partition)
            .with_records(Some(records.clone()));
        match topics.iter_mut().find(|t| t.name.0.as_str() == &**topic) {
            Some(t) => t.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(String::from(&**topic))))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    ProduceRequest::default()
        .with_acks(acks.wire())
        .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
        .with_topic_data(topics)
}

/// What `response` (from `broker`) says of `topic`/`partition`: its batch's base offset, the
/// partition's error (with the broker's message), or [`Error::Malformed`] when the response
/// has no result for it.
fn partition_result(
    response: &ProduceResponse,
    broker: &str,
    topic: &str,
    partition: i32,
) -> Result<i64> {
    let p = response
        .responses
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == partition)
        .ok_or_else(|| Error::Malformed {
            broker: broker.to_string(),
            what: "Produce response".into(),
            reason: format!("no result for {topic}/{partition}"),
        })?;
    check_code(p.error_code, broker, ApiKey::Produce, || {
        let msg = p
            .error_message
            .as_ref()
            .map(|m| format!(": {}", m.as_str()));
        format!(" {topic}/{partition}{}", msg.unwrap_or_default())
    })?;
    Ok(p.base_offset)
}
