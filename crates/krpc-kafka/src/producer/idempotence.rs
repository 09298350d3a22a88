//! The idempotent producer's state (KIP-98; the Java producer's `enable.idempotence=true`): a
//! producer id and epoch from InitProducerId, and the next sequence number of each partition.
//!
//! Each batch is stamped once, when it is first sent, and every retry sends the same bytes, so
//! a batch whose response was lost and that is sent again is stored once: the broker answers
//! the second copy with the first one's offset (or DUPLICATE_SEQUENCE_NUMBER).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};

use crate::client::KafkaClient;
use crate::error::{check_code, Error, Result};
use crate::fast_map::FastMap;
use crate::records::ProducerStamp;

/// What the producer does with a batch after a produce attempt failed with `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnError {
    /// Treat as written: the broker has this batch already (DUPLICATE_SEQUENCE_NUMBER).
    Written,
    /// Forget the producer id; send the batch again under a new one. UNKNOWN_PRODUCER_ID: the
    /// broker no longer knows the id (e.g. its records expired). OUT_OF_ORDER_SEQUENCE_NUMBER:
    /// the broker refused this batch because an earlier sequence of this producer is missing
    /// there (with one batch per partition in flight, the earlier one is already settled), so
    /// this batch is not stored and sending it under a new id stores it once. The Java
    /// idempotent producer retries both the same way (KIP-360: bump the epoch, resend from
    /// sequence 0), where failing the batch would lose it.
    Restamp,
    /// Forget the producer id and fail the batch (INVALID_PRODUCER_EPOCH, PRODUCER_FENCED:
    /// another producer holds the id): later batches start a new sequence.
    FailAndReset,
    /// Not an idempotence error.
    Other,
}

/// Classifies a produce error the way the Java producer's sender does for an idempotent
/// (non-transactional) producer.
pub(super) fn on_error(error: &Error) -> OnError {
    match error.protocol_error() {
        Some(ResponseError::DuplicateSequenceNumber) => OnError::Written,
        Some(ResponseError::UnknownProducerId | ResponseError::OutOfOrderSequenceNumber) => {
            OnError::Restamp
        }
        Some(ResponseError::InvalidProducerEpoch | ResponseError::ProducerFenced) => {
            OnError::FailAndReset
        }
        _ => OnError::Other,
    }
}

#[derive(Default)]
enum State {
    /// No producer id yet (or it was reset): the next stamp runs InitProducerId.
    #[default]
    Unknown,
    /// The broker cannot give one: batches go out without a stamp.
    Unavailable,
    /// A producer id, and the next sequence of each partition.
    Known {
        producer_id: i64,
        epoch: i16,
        /// Increments on every reset, so late failures of an older id reset nothing.
        generation: u64,
        next: FastMap<(Arc<str>, i32), i32>,
    },
}

/// The producer id and sequences of one producer.
pub(super) struct Idempotence {
    enabled: bool,
    state: tokio::sync::Mutex<State>,
    generation: std::sync::atomic::AtomicU64,
}

impl Idempotence {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            state: Default::default(),
            generation: Default::default(),
        }
    }

    /// The stamp for the next `count` records of `topic`/`partition`, with the generation of
    /// the producer id; `None` when idempotence is off or the broker cannot give an id.
    pub(super) async fn stamp(
        &self,
        client: &KafkaClient,
        topic: &Arc<str>,
        partition: i32,
        count: usize,
    ) -> Result<Option<(ProducerStamp, u64)>> {
        if !self.enabled {
            return Ok(None);
        }
        let mut state = self.state.lock().await;
        loop {
            if matches!(*state, State::Unknown) {
                // Boxed: the rare InitProducerId round would otherwise size every stamp's
                // future (and every boxed produce request holding one) at about 1.6 KB.
                *state = Box::pin(self.init(client)).await?;
            }
            let State::Known {
                producer_id,
                epoch,
                generation,
                next,
            } = &mut *state
            else {
                return Ok(None);
            };
            let seq = next.entry((topic.clone(), partition)).or_insert(0);
            if (*seq as i64) + (count as i64) > i32::MAX as i64 {
                // Sequences would wrap inside the batch: start over under a new producer id.
                *state = State::Unknown;
                continue;
            }
            let stamp = ProducerStamp {
                producer_id: *producer_id,
                producer_epoch: *epoch,
                base_sequence: *seq,
            };
            *seq += count as i32;
            return Ok(Some((stamp, *generation)));
        }
    }

    /// Forgets the producer id of `generation` (if it is still the current one).
    pub(super) async fn reset(&self, generation: u64, why: &Error) {
        let mut state = self.state.lock().await;
        if matches!(&*state, State::Known { generation: g, .. } if *g == generation) {
            tracing::warn!(error = %why, "idempotent producer: producer id reset; later batches start new sequences");
            *state = State::Unknown;
        }
    }

    /// Asks any broker for a producer id (InitProducerId with no transactional id, as the
    /// Java idempotent producer does).
    async fn init(&self, client: &KafkaClient) -> Result<State> {
        let conn = client.any_connection().await?;
        if let Err(e) = conn.version::<InitProducerIdRequest>() {
            tracing::warn!(broker = conn.broker(), error = %e, "broker has no InitProducerId: producing without idempotence");
            return Ok(State::Unavailable);
        }
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(i32::MAX)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let resp = client.send_any(&req).await?;
        match check_code(
            resp.error_code,
            conn.broker(),
            kafka_protocol::messages::ApiKey::InitProducerId,
            String::new,
        ) {
            Ok(()) => {}
            Err(e) if e.is_retriable() => return Err(e),
            Err(e) => {
                // As the Java producer when idempotence is only its default: the cluster
                // refuses (e.g. no IDEMPOTENT_WRITE permission), so produce without it.
                tracing::warn!(error = %e, "InitProducerId refused: producing without idempotence");
                return Ok(State::Unavailable);
            }
        }
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(
            producer_id = resp.producer_id.0,
            epoch = resp.producer_epoch,
            "idempotent producer id"
        );
        Ok(State::Known {
            producer_id: resp.producer_id.0,
            epoch: resp.producer_epoch,
            generation,
            next: FastMap::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker_error(error: ResponseError) -> Error {
        Error::Broker {
            broker: "b".into(),
            api: crate::ApiKey::PRODUCE,
            error: crate::ErrorCode::of(error),
            context: String::new(),
        }
    }

    #[test]
    fn sequence_errors_are_handled_as_the_java_producer_does() {
        use OnError::*;
        for (error, want) in [
            (ResponseError::DuplicateSequenceNumber, Written),
            (ResponseError::UnknownProducerId, Restamp),
            (ResponseError::OutOfOrderSequenceNumber, Restamp),
            (ResponseError::InvalidProducerEpoch, FailAndReset),
            (ResponseError::ProducerFenced, FailAndReset),
            (ResponseError::NotLeaderOrFollower, Other),
        ] {
            assert_eq!(on_error(&broker_error(error)), want, "{error:?}");
        }
    }
}
