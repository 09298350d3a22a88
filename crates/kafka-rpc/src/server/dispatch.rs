//! Running one request: decode its envelope, skip it if expired, run its handler, reply, and
//! mark its offset finished so the commit can move past it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_wire::{ConsumerRecord, GroupConsumer, Producer};
use tokio::sync::{Notify, OwnedSemaphorePermit};

use super::handler::Handler;
use super::progress::Progress;
use super::stats::Counters;
use crate::envelope::{now_ms, Reply, ReplyTo, Request, RequestId};
use crate::error::HandlerError;
use crate::status::StatusCode;

/// What every request task shares.
pub(super) struct Dispatcher {
    pub producer: Producer,
    pub handlers: HashMap<String, Handler>,
    pub counters: Arc<Counters>,
    pub server_id: String,
    pub progress: Mutex<Progress>,
    pub finished: Notify,
}

impl Dispatcher {
    pub fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `record` in a task of its own, holding `permit` until it is done.
    pub fn start(self: &Arc<Self>, record: ConsumerRecord, permit: OwnedSemaphorePermit) {
        Counters::bump(&self.counters.received);
        self.progress()
            .started(&record.topic, record.partition, record.offset);
        let me = self.clone();
        tokio::spawn(async move {
            me.handle(&record).await;
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
    pub async fn commit(&self, consumer: &GroupConsumer) {
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
        let request = match Request::from_record(record) {
            Ok(r) => r,
            Err(e) => {
                Counters::bump(&self.counters.malformed);
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %e, "not a valid request");
                if let (Some(id), Some(reply_to)) = (e.id, e.reply_to.clone()) {
                    let code = if e.unsupported_version {
                        StatusCode::FailedPrecondition
                    } else {
                        StatusCode::DataLoss
                    };
                    self.reply(id, &reply_to, Err(HandlerError::new(code, e.reason)), 0, 0)
                        .await;
                }
                return;
            }
        };
        let queue_ms = (picked_up - request.sent_ms).max(0);
        if request.deadline_ms.is_some_and(|d| d < picked_up) {
            Counters::bump(&self.counters.expired);
            tracing::debug!(id = %request.id, method = %request.method, "deadline passed before pickup; not run");
            return;
        }
        let started = Instant::now();
        let outcome = match self.handlers.get(&request.method) {
            Some(handler) => handler(request.payload.clone()).await,
            None => Err(HandlerError::new(
                StatusCode::Unimplemented,
                format!("the service has no method {:?}", request.method),
            )),
        };
        let handler_us = started.elapsed().as_micros() as u64;
        let counter = match &outcome {
            Ok(_) => &self.counters.ok,
            Err(e) => match e.code {
                StatusCode::Unimplemented => &self.counters.unknown_method,
                StatusCode::InvalidArgument => &self.counters.bad_arguments,
                StatusCode::Internal => &self.counters.panics,
                _ => &self.counters.handler_errors,
            },
        };
        Counters::bump(counter);
        match &request.reply_to {
            Some(reply_to) => {
                self.reply(request.id, reply_to, outcome, handler_us, queue_ms)
                    .await
            }
            None => Counters::bump(&self.counters.one_way),
        }
    }

    async fn reply(
        &self,
        id: RequestId,
        to: &ReplyTo,
        outcome: Result<bytes::Bytes, HandlerError>,
        handler_us: u64,
        queue_ms: i64,
    ) {
        let (status, message, payload) = match outcome {
            Ok(payload) => (StatusCode::Ok, String::new(), payload),
            Err(e) => (e.code, e.message, bytes::Bytes::new()),
        };
        let reply = Reply {
            id,
            status,
            message,
            server_id: self.server_id.clone(),
            handler_us,
            queue_ms,
            payload,
        };
        let sent = match self
            .producer
            .send_to(&to.topic, to.partition, reply.to_record())
        {
            Ok(delivery) => delivery.await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            Counters::bump(&self.counters.reply_failures);
            tracing::warn!(%id, topic = %to.topic, partition = to.partition, error = %e, "reply not delivered");
        }
    }
}
