//! Joining the group: JoinGroup, the leader's assignment, SyncGroup, and the starting offset of
//! every assigned partition. Runs as a task of its own, so a caller that stops waiting (a
//! timeout, a `select!`) does not abort a join half-way: the next poll picks up its result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use super::assignor::Assignor;
use super::membership::{self, Joined as JoinResponse};
use super::offset_commit::{self as offsets, Offsets};
use super::payload::{self, Assignment, Subscription};
use super::state::{Reaction, Shared};
use super::GroupConfig;
use crate::backoff::Backoff;
use crate::client::KafkaClient;
use crate::error::{Error, Result};
use crate::fetcher::OffsetReset;
use crate::list_offsets::OffsetSpec;

/// The partition count of each subscribed topic (`None`: it does not exist).
pub(super) type TopicShape = HashMap<String, Option<i32>>;

/// What a completed rejoin hands the consumer.
pub(super) struct Joined {
    /// Our partitions.
    pub assignment: Assignment,
    /// Where to start fetching each of them.
    pub start: Offsets,
    /// The subscribed topics as of this join, to notice later changes.
    pub shape: TopicShape,
}

/// The partition count of every subscribed topic, from fresh metadata (`None`: the topic does
/// not exist). A failed refresh keeps the cached view.
pub(super) async fn topic_shape(client: &KafkaClient, config: &GroupConfig) -> TopicShape {
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    if let Err(e) = client.refresh_metadata(&topics).await {
        tracing::debug!(group = %config.group_id, error = %e, "metadata refresh failed");
    }
    let md = client.metadata_snapshot();
    config
        .topics
        .iter()
        .map(|t| {
            (
                t.clone(),
                md.topics.get(t).map(|i| i.partitions.len() as i32),
            )
        })
        .collect()
}

/// One rejoin of one member.
pub(super) struct JoinJob {
    pub client: KafkaClient,
    pub config: GroupConfig,
    pub shared: Arc<Shared>,
}

impl JoinJob {
    /// Joins and syncs until stable (retrying what can be retried for a rebalance timeout plus
    /// a session timeout); returns the assignment and where to start fetching each partition.
    pub async fn run(self) -> Result<Joined> {
        let cfg = self.client.config();
        let budget = self.config.rebalance_timeout + self.config.session_timeout;
        let mut backoff = Backoff::new(cfg.retry_backoff, cfg.retry_backoff_max, budget);
        loop {
            self.shared.set_rejoin(false);
            let attempt = async {
                let assignment = self.join_and_sync().await?;
                let start = self.start_offsets(&assignment).await?;
                let shape = topic_shape(&self.client, &self.config).await;
                Ok::<_, Error>(Joined {
                    assignment,
                    start,
                    shape,
                })
            };
            match attempt.await {
                Ok(done) => return Ok(done),
                Err(e) => {
                    let recoverable = match self.shared.on_coordinator_error(&e) {
                        Reaction::Fatal => false,
                        Reaction::Other => e.is_retriable(),
                        _ => true,
                    };
                    tracing::info!(group = %self.config.group_id, error = %e, "join attempt failed");
                    if !recoverable || !backoff.wait().await {
                        self.shared.set_rejoin(true);
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn join_and_sync(&self) -> Result<Assignment> {
        let conn = self
            .shared
            .coordinator(&self.client, &self.config.group_id)
            .await?;
        let member_id = {
            let mut m = self.shared.member();
            m.in_join = true;
            m.member_id.clone()
        };
        // Heartbeats pause while the join and sync are in flight, and resume after, whatever
        // the outcome (a failed attempt keeps whatever membership it still has).
        struct InJoin<'a>(&'a Shared);
        impl Drop for InJoin<'_> {
            fn drop(&mut self) {
                self.0.member().in_join = false;
            }
        }
        let _in_join = InJoin(&self.shared);
        let subscription = Subscription {
            topics: self.config.topics.clone(),
            user_data: None,
        };
        let joined = membership::join(
            &conn,
            &self.config,
            &member_id,
            payload::encode_subscription(&subscription),
        )
        .await?;
        {
            let mut m = self.shared.member();
            m.member_id = joined.member_id.clone();
            m.generation = joined.generation;
        }
        let assignments = if joined.leader == joined.member_id {
            self.lead(&joined).await?
        } else {
            Vec::new()
        };
        let mine = membership::sync(&conn, &self.config, &joined, assignments).await?;
        let assignment = payload::decode_assignment(mine).map_err(|e| Error::Malformed {
            broker: conn.broker().to_string(),
            what: "SyncGroup assignment".into(),
            reason: e.to_string(),
        })?;
        tracing::info!(group = %self.config.group_id, generation = joined.generation, member = %joined.member_id, ?assignment, "joined");
        Ok(assignment)
    }

    /// As leader: decode every member's subscription and run the chosen assignor.
    async fn lead(&self, joined: &JoinResponse) -> Result<Vec<(String, Bytes)>> {
        let assignor = Assignor::from_name(&joined.protocol).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the group chose assignor {:?}, which this client does not have",
                joined.protocol
            ))
        })?;
        let mut members = BTreeMap::new();
        for (id, meta) in &joined.members {
            let sub = payload::decode_subscription(meta.clone()).unwrap_or_else(|e| {
                // A member we cannot read gets nothing; the others still get everything.
                tracing::warn!(member = %id, error = %e, "unreadable subscription");
                Subscription::default()
            });
            members.insert(id.clone(), sub);
        }
        let mut counts = HashMap::new();
        let topics: BTreeSet<&String> = members.values().flat_map(|s| s.topics.iter()).collect();
        // Fresh partition counts, not cached ones: a rejoin is often caused by a topic that
        // grew, and an assignment from stale metadata would leave its new partitions out.
        let names: Vec<&str> = topics.iter().map(|t| t.as_str()).collect();
        self.client.refresh_metadata(&names).await?;
        for topic in topics {
            match self.client.partition_count(topic).await {
                Ok(n) => {
                    counts.insert(topic.clone(), n);
                }
                Err(Error::UnknownTopic { .. }) => {
                    tracing::warn!(%topic, "subscribed topic does not exist")
                }
                Err(e) => return Err(e),
            }
        }
        let result = assignor.assign(&members, &counts);
        Ok(result
            .into_iter()
            .map(|(m, a)| (m, payload::encode_assignment(&a)))
            .collect())
    }

    /// The committed offset of every assigned partition, or the reset policy's where none is.
    async fn start_offsets(&self, assignment: &Assignment) -> Result<Offsets> {
        let wanted: HashMap<String, Vec<i32>> = assignment
            .iter()
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        if wanted.is_empty() {
            return Ok(Offsets::new());
        }
        let conn = self
            .shared
            .coordinator(&self.client, &self.config.group_id)
            .await?;
        let mut start = offsets::fetch_committed(&conn, &self.config.group_id, &wanted).await?;
        let spec = match self.config.fetch.offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::Error => OffsetSpec::Latest, // checked per partition below
        };
        for (topic, parts) in assignment {
            let missing: Vec<i32> = parts
                .iter()
                .copied()
                .filter(|p| {
                    start
                        .get(topic)
                        .and_then(|m| m.get(p))
                        .is_none_or(|o| *o < 0)
                })
                .collect();
            if let (Some(&partition), OffsetReset::Error) =
                (missing.first(), self.config.fetch.offset_reset)
            {
                return Err(Error::NoResetPolicy {
                    group: self.config.group_id.clone(),
                    topic: topic.clone(),
                    partition,
                });
            }
            if !missing.is_empty() {
                tracing::info!(group = %self.config.group_id, %topic, partitions = ?missing, policy = ?self.config.fetch.offset_reset, "no committed offset; starting where the reset policy says");
                // With read_committed, "latest" is the last stable offset (as Java resets).
                let reset = self
                    .client
                    .list_offsets_isolated(topic, &missing, spec, self.config.fetch.isolation_level)
                    .await?;
                start.entry(topic.clone()).or_default().extend(reset);
            }
        }
        Ok(start)
    }
}
