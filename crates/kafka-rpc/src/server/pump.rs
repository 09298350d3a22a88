//! The consumer's own task: polls the group consumer and hands each event to the serving loop,
//! so the loop's `select!` (shutdown, commit tick, finishing requests) never waits on a fetch,
//! and a fetch is never cancelled by them.

use krpc_kafka::{GroupConsumer, GroupEvent, SkippedBatch};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One poll's event and what the consumer counted with it.
pub(super) struct Polled {
    /// The event (an error ends serving).
    pub event: Result<GroupEvent, krpc_kafka::Error>,
    /// Undecodable batches stepped over by this poll (dead-lettered before its records run).
    pub skipped: Vec<SkippedBatch>,
    /// [`GroupConsumer::skipped_batches`] now.
    pub undecodable_batches: u64,
    /// [`GroupConsumer::reset_skipped_offsets`] now.
    pub reset_skipped_offsets: u64,
    /// [`GroupConsumer::lags`] now.
    pub lags: krpc_kafka::group::Offsets,
    /// For a revocation: signal when it is handled (drained and committed); the consumer does
    /// not poll (and so does not rejoin the group) before.
    pub handled: Option<oneshot::Sender<()>>,
}

/// Starts polling `consumer` until `stop` is cancelled, an error is handed over, or the
/// receiver is dropped; the task returns the consumer (to be closed after the final commit).
pub(super) fn spawn(
    mut consumer: GroupConsumer,
    stop: CancellationToken,
) -> (mpsc::Receiver<Polled>, JoinHandle<GroupConsumer>) {
    // One event in hand at a time: the serving loop takes the next only when it has room.
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => break,
                event = consumer.poll() => event,
            };
            let failed = event.is_err();
            let (handled, acked) = match &event {
                Ok(GroupEvent::Revoked(_)) => {
                    let (tx, rx) = oneshot::channel();
                    (Some(tx), Some(rx))
                }
                _ => (None, None),
            };
            let polled = Polled {
                event,
                skipped: consumer.take_skipped(),
                undecodable_batches: consumer.skipped_batches(),
                reset_skipped_offsets: consumer.reset_skipped_offsets(),
                lags: consumer.lags(),
                handled,
            };
            tokio::select! {
                () = stop.cancelled() => break,
                sent = tx.send(polled) => if sent.is_err() { break },
            }
            if let Some(acked) = acked {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = acked => {}
                }
            }
            if failed {
                break;
            }
        }
        consumer
    });
    (rx, task)
}
