//! The reply reader: one task per client reading the client's slot of the reply topic and
//! handing each reply to the call waiting for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_wire::Fetcher;
use tokio::sync::oneshot;

use crate::envelope::{Reply, RequestId};

/// Calls waiting for their replies, and what the reader could not deliver.
#[derive(Default)]
pub struct Pending {
    waiting: Mutex<HashMap<RequestId, oneshot::Sender<Reply>>>,
    /// Replies for no call of ours (another client in our slot, or a call that timed out).
    pub stray: AtomicU64,
    /// Records in our slot that are not valid replies.
    pub malformed: AtomicU64,
}

impl Pending {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, oneshot::Sender<Reply>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a call; the guard unregisters it when the call ends, however it ends.
    pub fn register(self: &Arc<Self>, id: RequestId) -> (oneshot::Receiver<Reply>, PendingGuard) {
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

    fn deliver(&self, reply: Reply) {
        match self.waiting().remove(&reply.id) {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => {
                self.stray.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Unregisters a pending call on drop (timeout, cancellation, or completion).
pub struct PendingGuard {
    pending: Arc<Pending>,
    id: RequestId,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending.waiting().remove(&self.id);
    }
}

/// Reads replies forever; a failing fetch is logged and retried, never fatal.
pub async fn read_replies(mut fetcher: Fetcher, pending: Arc<Pending>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match fetcher.poll().await {
            Ok(records) => {
                backoff = Duration::from_millis(50);
                for record in records {
                    match Reply::from_record(&record) {
                        Ok(reply) => pending.deliver(reply),
                        Err(e) => {
                            pending.malformed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "not a reply; skipped");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading replies failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
