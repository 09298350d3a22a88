//! Reading a fixed range of a topic (what `dlq` and `consume`-like commands show): from given
//! offsets up to the end offsets as they were when the command started, then stop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use krpc_kafka::{ConsumerRecord, FetchConfig, Fetcher, KafkaClient, OffsetSpec};

/// The records of `topic` in `[from, end)` per partition, where `end` is each partition's
/// high watermark now and `from` is `start` (or the log start offset where `start` has no
/// entry or points below it), read with `config`. Sorted by partition, then offset.
///
/// # Errors
/// The topic's metadata or offsets cannot be read, a fetch fails, or the range has not been
/// read within `timeout` (the error says how far it got).
pub async fn read_to_end(
    client: &KafkaClient,
    topic: &str,
    start: &BTreeMap<i32, i64>,
    config: FetchConfig,
    timeout: Duration,
) -> Result<Vec<ConsumerRecord>, String> {
    let info = client.topic(topic).await.map_err(|e| e.to_string())?;
    let ids: Vec<i32> = info.partitions.iter().map(|p| p.id).collect();
    let earliest = client
        .list_offsets(topic, &ids, OffsetSpec::Earliest)
        .await
        .map_err(|e| e.to_string())?;
    let latest = client
        .list_offsets(topic, &ids, OffsetSpec::Latest)
        .await
        .map_err(|e| e.to_string())?;
    let mut fetcher = Fetcher::new(client.clone(), config).map_err(|e| e.to_string())?;
    let mut ends = BTreeMap::new();
    for &p in &ids {
        let from = start
            .get(&p)
            .copied()
            .unwrap_or(earliest[&p])
            .max(earliest[&p]);
        if from < latest[&p] {
            fetcher.assign(topic, p, from);
            ends.insert(p, latest[&p]);
        }
    }
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !ends.is_empty() {
        if Instant::now() >= deadline {
            let left: Vec<String> = ends
                .iter()
                .map(|(p, end)| {
                    format!("{topic}/{p} at {:?} of {end}", fetcher.position(topic, *p))
                })
                .collect();
            return Err(format!(
                "reading {topic} took longer than {timeout:?}; unread: {}",
                left.join(", ")
            ));
        }
        let records = tokio::time::timeout_at(deadline.into(), fetcher.poll())
            .await
            .unwrap_or(Ok(Vec::new()))
            .map_err(|e| e.to_string())?;
        for r in records {
            if ends.get(&r.partition).is_some_and(|end| r.offset < *end) {
                out.push(r);
            }
        }
        ends.retain(|p, end| {
            let done = fetcher.position(topic, *p).is_some_and(|pos| pos >= *end);
            if done {
                fetcher.unassign(topic, *p);
            }
            !done
        });
    }
    // Its KIP-227 session, if the broker granted one, closed before the command ends (a drop
    // would send the close from a task the ending runtime may never run).
    fetcher.close(client.config().request_timeout).await;
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}
