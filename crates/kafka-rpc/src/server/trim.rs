//! Keeping the completion topic small: every `ServerOptions::completion_trim_interval`, a
//! server deletes (DeleteRecords, KIP-107) the completion records older than the last
//! `dedup_window` of each partition.
//!
//! Why that is safe: completions are only ever read to rebuild a partition's dedup window when
//! a server takes the partition (`completions::load_window`), and that reads the last
//! `dedup_window` records and no further back. A completion older than that is behind every
//! server's committed progress that matters: a redelivered request whose completion is not in
//! the last `dedup_window` is not recognised, trimmed or not. Every server trims every
//! partition (DeleteRecords below the log start is a no-op), so the topic stays small with any
//! number of servers, including partitions no server holds at the moment.

use std::collections::BTreeMap;
use std::time::Duration;

use krpc_kafka::{KafkaClient, OffsetSpec};
use tokio_util::sync::CancellationToken;

/// Trims `topic` to its last `keep` records per partition, once. Returns, per trimmed
/// partition, its log start offset before and after.
pub async fn trim_once(
    kafka: &KafkaClient,
    topic: &str,
    keep: usize,
) -> Result<BTreeMap<i32, (i64, i64)>, krpc_kafka::Error> {
    let ids: Vec<i32> = kafka
        .topic(topic)
        .await?
        .partitions
        .iter()
        .map(|p| p.id)
        .collect();
    let earliest = kafka
        .list_offsets(topic, &ids, OffsetSpec::Earliest)
        .await?;
    let latest = kafka.list_offsets(topic, &ids, OffsetSpec::Latest).await?;
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let before: BTreeMap<i32, i64> = ids
        .iter()
        .filter_map(|p| {
            let cut = latest[p].saturating_sub(keep);
            (cut > earliest[p]).then_some((*p, cut))
        })
        .collect();
    if before.is_empty() {
        return Ok(BTreeMap::new());
    }
    let starts = kafka.delete_records(topic, &before).await?;
    Ok(starts
        .into_iter()
        .map(|(p, start)| (p, (earliest[&p], start)))
        .collect())
}

/// Trims `topic` every `every` until `stop` is cancelled. Failures are logged and retried at
/// the next tick: trimming is housekeeping, never a reason to stop serving. `trimmed` counts
/// the records deleted.
pub async fn run(
    kafka: KafkaClient,
    topic: String,
    keep: usize,
    every: Duration,
    stop: CancellationToken,
    counters: std::sync::Arc<super::stats::Counters>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tokio::select! {
            _ = stop.cancelled() => return,
            r = trim_once(&kafka, &topic, keep) => r,
        } {
            Ok(starts) if !starts.is_empty() => {
                let moved: i64 = starts.values().map(|(was, now)| (now - was).max(0)).sum();
                counters.completions_trimmed.add(moved as u64);
                tracing::debug!(%topic, ?starts, "completion topic trimmed");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%topic, error = %e, "trimming the completion topic failed; retried at the next interval")
            }
        }
    }
}
