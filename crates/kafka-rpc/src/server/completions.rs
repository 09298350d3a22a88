//! Rebuilding a partition's dedup window from the tail of the completions topic when the
//! partition is assigned, so requests answered by a server that died before committing are
//! recognised and not run again.

use std::time::{Duration, Instant};

use krpc_kafka::{FetchConfig, Fetcher, KafkaClient, OffsetSpec};

use super::dedup::Window;
use crate::envelope::{now_ms, Completion};

/// Reads the last `limits.0` completion records (each one completion or, coalesced, several) of `topic`/`partition` into a window, for at most
/// `timeout`. Unreadable records are skipped (and logged): a window is an optimisation, never
/// a reason to stop serving.
pub async fn load_window(
    kafka: &KafkaClient,
    topic: &str,
    partition: i32,
    limits: (usize, Duration),
    timeout: Duration,
) -> Result<Window, krpc_kafka::Error> {
    let mut window = Window::default();
    let end = kafka
        .list_offset(topic, partition, OffsetSpec::Latest)
        .await?;
    let start = kafka
        .list_offset(topic, partition, OffsetSpec::Earliest)
        .await?;
    let from = start.max(end - limits.0 as i64);
    if from >= end {
        return Ok(window);
    }
    // Sessionless (KIP-227 off): a one-off read of one partition gains nothing from an
    // incremental session, and each assignment would otherwise open one on the broker (and
    // close it when the fetcher is dropped): with hundreds of partitions per rebalance, that
    // many of the broker's session slots and as many closing requests.
    let mut fetcher = Fetcher::new(
        kafka.clone(),
        FetchConfig::default()
            .with_max_wait(Duration::from_millis(10))
            .with_hole_wait(super::HOLE_WAIT)
            .with_sessions(false),
    )?;
    fetcher.assign(topic, partition, from);
    let deadline = Instant::now() + timeout;
    while fetcher.position(topic, partition).unwrap_or(end) < end && Instant::now() < deadline {
        for record in fetcher.poll().await? {
            // A record completes one request, or many when coalesced (envelope/completion.rs).
            match Completion::read_all(&record) {
                Ok(all) => {
                    let age = Duration::from_millis((now_ms() - record.timestamp).max(0) as u64);
                    let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                    for c in all {
                        window.complete(c, at, limits);
                    }
                }
                Err(e) => {
                    tracing::warn!(topic, partition, offset = record.offset, error = %e, "unreadable completion skipped")
                }
            }
        }
    }
    // Partial (the broker slow or unreachable for `timeout`): what was read is still used, and
    // the gap is said, as requests answered in it may run again if redelivered.
    let reached = fetcher.position(topic, partition).unwrap_or(end);
    if reached < end {
        tracing::warn!(topic, partition, from, reached, end, ?timeout, "dedup window loaded only in part; redeliveries of requests completed past `reached` may run again");
    }
    Ok(window)
}
