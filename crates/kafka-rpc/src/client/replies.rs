//! The reply reader: one task per client reading the client's slot of the reply topic and
//! handing each reply to the call waiting for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use krpc_kafka::backoff::Backoff;
use krpc_kafka::{ConsumerRecord, Fetcher};
use tokio::sync::oneshot;

use crate::envelope::RequestId;

/// Calls waiting for their replies (of type `T`), and what the reader could not deliver.
pub struct Pending<T> {
    waiting: Mutex<HashMap<RequestId, oneshot::Sender<T>>>,
    /// Replies for no call of ours (another client in our slot, or a call that timed out).
    pub stray: AtomicU64,
    /// Records in our slot that are not valid replies.
    pub malformed: AtomicU64,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(HashMap::new()),
            stray: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
        }
    }
}

impl<T> Pending<T> {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, oneshot::Sender<T>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a call; the guard unregisters it when the call ends, however it ends.
    pub fn register(self: &Arc<Self>, id: RequestId) -> (oneshot::Receiver<T>, PendingGuard<T>) {
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(id, tx);
        (
            rx,
            PendingGuard {
                pending: self.clone(),
                id,
            },
        )
    }

    /// Calls still waiting.
    pub fn count(&self) -> usize {
        self.waiting().len()
    }

    fn deliver(&self, id: RequestId, reply: T) {
        match self.waiting().remove(&id) {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => {
                self.stray.fetch_add(1, Ordering::Relaxed);
                crate::metrics::client_stray_reply();
            }
        }
    }
}

/// Unregisters a pending call on drop (timeout, cancellation, or completion).
pub struct PendingGuard<T> {
    pending: Arc<Pending<T>>,
    id: RequestId,
}

impl<T> Drop for PendingGuard<T> {
    fn drop(&mut self) {
        self.pending.waiting().remove(&self.id);
    }
}

/// What a record in the reply slot is.
pub enum Parsed<T> {
    /// A reply to the call with this id.
    Reply(RequestId, T),
    /// A record meant for nobody (a legacy handshake answer).
    Ignore,
}

/// The reply reader's task; dropping it (with the last clone of a client) stops the reader.
pub struct ReaderTask(tokio::task::JoinHandle<()>);

impl Drop for ReaderTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts reading replies with `fetcher` into `pending`, `parse` telling what each record is.
pub fn spawn_reader<T, P>(fetcher: Fetcher, pending: Arc<Pending<T>>, parse: P) -> ReaderTask
where
    T: Send + 'static,
    P: Fn(&ConsumerRecord) -> Result<Parsed<T>, String> + Send + 'static,
{
    ReaderTask(tokio::spawn(read_replies(fetcher, pending, parse)))
}

/// Reads replies forever; a failing fetch is logged and retried, never fatal.
async fn read_replies<T, P>(mut fetcher: Fetcher, pending: Arc<Pending<T>>, parse: P)
where
    P: Fn(&ConsumerRecord) -> Result<Parsed<T>, String>,
{
    // krpc-kafka's one retry policy, with the client's retry.backoff settings.
    let (initial, max) = {
        let cfg = fetcher.client().config();
        (cfg.retry_backoff, cfg.retry_backoff_max)
    };
    let mut backoff = Backoff::unbounded(initial, max);
    loop {
        match fetcher.poll().await {
            Ok(records) => {
                backoff.reset(initial);
                for record in records {
                    match parse(&record) {
                        Ok(Parsed::Reply(id, reply)) => pending.deliver(id, reply),
                        Ok(Parsed::Ignore) => {}
                        Err(e) => {
                            pending.malformed.fetch_add(1, Ordering::Relaxed);
                            crate::metrics::client_malformed_reply();
                            tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "not a reply; skipped");
                        }
                    }
                }
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, ?delay, "reading replies failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
