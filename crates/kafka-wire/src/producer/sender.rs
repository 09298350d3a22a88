//! The sending side of the producer: a round takes every ready batch and sends one Produce
//! request per leader carrying all of them (as the Java client's sender does), so many small
//! batches (one per partition, say) cost one round trip instead of one each.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::accumulator::{Accumulator, Decision, Ready};
use super::{Acks, ProducerConfig};
use crate::client::{Client, Lane};
use crate::error::{check_code, Error, Result};

/// Sends `batches` (topic, partition, encoded records) to the leader at `addr` in one request.
/// The outer error is the request's (nothing was known to be written); the inner results are
/// per batch, in order: base offset, or -1 with acks=0.
pub(super) async fn produce_to(
    client: &Client,
    config: &ProducerConfig,
    addr: &str,
    batches: &[(Arc<str>, i32, Bytes)],
) -> Result<Vec<Result<i64>>> {
    let conn = client.connection(addr, Lane::Default).await?;
    let timeout = client.config().request_timeout;
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (topic, partition, records) in batches {
        let data = PartitionProduceData::default()
            .with_index(*partition)
            .with_records(Some(records.clone()));
        match topics.iter_mut().find(|t| t.name.0.as_str() == &**topic) {
            Some(t) => t.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    let req = ProduceRequest::default()
        .with_acks(config.acks.wire())
        .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
        .with_topic_data(topics);
    if config.acks == Acks::None {
        conn.send_no_response(&req)?;
        return Ok(batches.iter().map(|_| Ok(-1)).collect());
    }
    let resp = conn.send(&req).await?;
    Ok(batches
        .iter()
        .map(|(topic, partition, _)| {
            let p = resp
                .responses
                .iter()
                .filter(|t| t.name.0.as_str() == &**topic)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == *partition)
                .ok_or_else(|| Error::Malformed {
                    broker: conn.broker().to_string(),
                    what: "Produce response".into(),
                    reason: format!("no result for {topic}/{partition}"),
                })?;
            check_code(p.error_code, conn.broker(), ApiKey::Produce, || {
                let msg = p
                    .error_message
                    .as_ref()
                    .map(|m| format!(": {}", m.as_str()));
                format!(" {topic}/{partition}{}", msg.unwrap_or_default())
            })?;
            Ok(p.base_offset)
        })
        .collect())
}

/// Sends one round: groups the batches by leader and sends each group as one request, all
/// leaders at once. A batch whose partition already has one in this round waits for the next
/// round (a request may name a partition once); a retriable failure sends the batch again on
/// its own, with backoff (awaited within the round when idempotent: see
/// [`Accumulator::retry`]).
pub(super) async fn send_round(acc: &Arc<Accumulator>, round: Vec<Ready>) {
    let mut by_leader: HashMap<String, Vec<Ready>> = HashMap::new();
    let mut seen: HashSet<(Arc<str>, i32)> = HashSet::new();
    let mut retries = Vec::new();
    for ready in round {
        if !seen.insert((ready.topic.clone(), ready.partition)) {
            acc.requeue(ready);
            continue;
        }
        match acc
            .client()
            .leader_addr(&ready.topic, ready.partition)
            .await
        {
            Ok(addr) => by_leader.entry(addr).or_default().push(ready),
            Err(e) if e.is_retriable() => retries.push(ready),
            Err(e) => acc.resolve(ready, Err(e)),
        }
    }
    let sends = by_leader
        .into_iter()
        .map(|(addr, readies)| send_group(acc, addr, readies));
    futures::future::join(futures::future::join_all(sends), acc.retry(retries)).await;
}

async fn send_group(acc: &Arc<Accumulator>, addr: String, readies: Vec<Ready>) {
    let mut encoded = Vec::with_capacity(readies.len());
    let mut batches = Vec::with_capacity(readies.len());
    let mut retries = Vec::new();
    for mut ready in readies {
        match acc.prepare(&mut ready).await {
            Ok(bytes) => {
                batches.push((ready.topic.clone(), ready.partition, bytes));
                encoded.push(ready);
            }
            Err(e) => match acc.decide(&mut ready, Err(e)).await {
                Decision::Done(outcome) => acc.resolve(ready, outcome),
                Decision::Retry(_) => retries.push(ready),
            },
        }
    }
    match produce_to(acc.client(), acc.config(), &addr, &batches).await {
        Ok(results) => {
            for (mut ready, result) in encoded.into_iter().zip(results) {
                match acc.decide(&mut ready, result).await {
                    Decision::Done(outcome) => acc.resolve(ready, outcome),
                    Decision::Retry(_) => retries.push(ready),
                }
            }
        }
        Err(e) if e.is_retriable() => {
            tracing::debug!(broker = %addr, error = %e, "produce round failed; retrying its batches one by one");
            retries.extend(encoded);
        }
        Err(e) => {
            for mut ready in encoded {
                match acc.decide(&mut ready, Err(e.clone())).await {
                    Decision::Done(outcome) => acc.resolve(ready, outcome),
                    Decision::Retry(_) => retries.push(ready),
                }
            }
        }
    }
    acc.retry(retries).await;
}
