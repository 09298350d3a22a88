//! A consumer-group member: subscribes, fetches its partitions, commits, leaves on close.
//!
//! Rebalancing is eager: before rejoining, [`GroupConsumer::poll`] hands back
//! [`GroupEvent::Revoked`] so the caller can finish and commit what it holds; the next poll
//! rejoins and hands back [`GroupEvent::Assigned`]. `poll` is cancel-safe: a join runs in a task
//! of its own and a fetch dropped half-way leaves the positions where they were.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;

use super::heartbeat::heartbeat_loop;
use super::join::{topic_shape, JoinJob, Joined, TopicShape};
use super::offset_commit::{self as offsets, Committer, Offsets};
use super::payload::Assignment;
use super::state::Shared;
use super::{membership, GroupConfig};
use crate::backoff::Backoff;
use crate::client::KafkaClient;
use crate::error::{Error, Recovery, Result};
use crate::fetcher::Fetcher;
use crate::records::ConsumerRecord;

/// What one poll produced.
#[derive(Debug)]
pub enum GroupEvent {
    /// These partitions are now ours (fetching from their committed offsets).
    Assigned(Assignment),
    /// These partitions are no longer ours: finish and commit their work before polling again.
    Revoked(Assignment),
    /// Records from our partitions, in offset order per partition; empty when the poll only
    /// stepped over undecodable batches (take them with [`GroupConsumer::take_skipped`]).
    Records(Vec<ConsumerRecord>),
}

/// Commits offsets as a [`GroupConsumer`]'s member (its generation at the time of the commit);
/// see [`GroupConsumer::committer`].
#[derive(Clone)]
pub struct GroupCommitter {
    client: KafkaClient,
    config: GroupConfig,
    shared: Arc<Shared>,
}

impl GroupCommitter {
    /// Commits `offsets` (next offset to read, per partition); OffsetCommit errors are
    /// classified like every group error (a lost generation makes the member rejoin).
    ///
    /// A member without a generation (expelled, or between losing it and rejoining) does not
    /// commit: the coordinator would take member "" and generation -1 as a plain commit while
    /// the group is empty, writing offsets of partitions this member no longer owns. That is a
    /// [`Error::Broker`] REBALANCE_IN_PROGRESS made here (the Java consumer refuses such a
    /// commit the same way); commit again after the next assignment.
    pub async fn commit(&self, offsets: &Offsets) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let who = {
            let m = self.shared.member();
            if m.member_id.is_empty() || m.generation < 0 {
                return Err(Error::Broker {
                    broker: "(not sent)".to_string(),
                    api: crate::ApiKey::OFFSET_COMMIT,
                    error: crate::ErrorCode::REBALANCE_IN_PROGRESS,
                    context: format!(
                        " group {}: no generation to commit with (rejoining)",
                        self.config.group_id
                    ),
                });
            }
            Committer {
                group: self.config.group_id.clone(),
                generation: m.generation,
                member_id: m.member_id.clone(),
                instance_id: self.config.instance_id.clone(),
            }
        };
        let conn = self
            .shared
            .coordinator(&self.client, &self.config.group_id)
            .await?;
        let result = offsets::commit(&conn, &who, offsets).await;
        if let Err(e) = &result {
            self.shared.on_coordinator_error(e);
        }
        result
    }
}

/// A member of a consumer group.
/// # Examples
///
/// ```no_run
/// use krpc_kafka::{KafkaClient, ClientConfig, GroupConfig, GroupConsumer, GroupEvent};
///
/// # async fn example() -> krpc_kafka::Result<()> {
/// let client = KafkaClient::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let mut consumer = GroupConsumer::new(client, GroupConfig::new("billing", &["events"]))?;
/// for _ in 0..100 {
///     match consumer.poll().await? {
///         GroupEvent::Assigned(partitions) => println!("assigned {partitions:?}"),
///         // Finish the work of revoked partitions and commit it before polling again.
///         GroupEvent::Revoked(_) => consumer.commit_positions().await?,
///         GroupEvent::Records(records) => {
///             for record in &records {
///                 println!("{}/{} at {}", record.topic, record.partition, record.offset);
///             }
///             consumer.commit_positions().await?;
///         }
///     }
/// }
/// consumer.close().await?; // leaves the group
/// # Ok(())
/// # }
/// ```
pub struct GroupConsumer {
    client: KafkaClient,
    config: GroupConfig,
    fetcher: Fetcher,
    shared: Arc<Shared>,
    assignment: Assignment,
    heartbeat: JoinHandle<()>,
    joining: Option<JoinHandle<Result<Joined>>>,
    last_commit: Instant,
    /// Partitions of each subscribed topic as of our last join (`None`: the topic did not
    /// exist), and when the metadata was last compared with it.
    topic_shape: TopicShape,
    last_metadata_check: Instant,
    /// Set while polls fail with what retrying mends (see [`GroupConsumer::poll`]).
    outage: Option<Outage>,
}

/// A run of failed polls: the backoff between attempts (`retry.backoff.ms` doubling to
/// `retry.backoff.max.ms`), when it began, and when it was last logged as a warning.
struct Outage {
    backoff: Backoff,
    since: Instant,
    warned: Option<Instant>,
}

/// How often an outage that goes on is logged again as a warning (debug between).
const OUTAGE_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.heartbeat.abort();
        if let Some(j) = &self.joining {
            j.abort();
        }
        self.client.close_lane(self.shared.lane);
    }
}

impl GroupConsumer {
    /// A member of `config.group_id`; it joins on the first [`poll`](Self::poll).
    pub fn new(client: KafkaClient, config: GroupConfig) -> Result<Self> {
        config.validate()?;
        let fetcher = Fetcher::new(client.clone(), config.fetch.clone())?;
        let shared = Arc::new(Shared::new());
        let heartbeat = tokio::spawn(heartbeat_loop(
            client.clone(),
            config.clone(),
            Arc::downgrade(&shared),
        ));
        Ok(Self {
            fetcher,
            client,
            config,
            shared,
            assignment: Assignment::new(),
            heartbeat,
            joining: None,
            last_commit: Instant::now(),
            topic_shape: TopicShape::new(),
            last_metadata_check: Instant::now(),
            outage: None,
        })
    }

    /// The partitions currently ours.
    pub fn assignment(&self) -> &Assignment {
        &self.assignment
    }

    /// Our member id (empty before the first join).
    pub fn member_id(&self) -> String {
        self.shared.member().member_id.clone()
    }

    /// The generation we belong to (-1 before the first join).
    pub fn generation(&self) -> i32 {
        self.shared.member().generation
    }

    /// Undecodable batches stepped over (with `fetch.skip_undecodable`).
    pub fn skipped_batches(&self) -> u64 {
        self.fetcher.skipped_batches()
    }

    /// Out-of-range positions reset by the group's reset policy so far (see
    /// [`Fetcher::offset_resets`]).
    pub fn offset_resets(&self) -> u64 {
        self.fetcher.offset_resets()
    }

    /// Offsets jumped over by those resets so far (see [`Fetcher::reset_skipped_offsets`]).
    pub fn reset_skipped_offsets(&self) -> u64 {
        self.fetcher.reset_skipped_offsets()
    }

    /// The undecodable batches stepped over since the last call, with their raw bytes (see
    /// [`crate::Fetcher::take_skipped`]).
    pub fn take_skipped(&mut self) -> Vec<crate::fetcher::SkippedBatch> {
        self.fetcher.take_skipped()
    }

    /// The next offset to be fetched for each assigned partition.
    pub fn positions(&self) -> Offsets {
        let mut out = Offsets::new();
        for (topic, parts) in &self.assignment {
            for p in parts {
                if let Some(o) = self.fetcher.position(topic, *p) {
                    out.entry(topic.clone()).or_default().insert(*p, o);
                }
            }
        }
        out
    }

    /// The lag of each assigned partition that a fetch has answered for since it was assigned
    /// (see [`Fetcher::current_lag`](crate::Fetcher::current_lag): records between the
    /// position and the high watermark, or the last stable offset with read_committed).
    pub fn lags(&self) -> Offsets {
        let mut out = Offsets::new();
        for (topic, parts) in &self.assignment {
            for p in parts {
                if let Some(lag) = self.fetcher.current_lag(topic, *p) {
                    out.entry(topic.clone()).or_default().insert(*p, lag);
                }
            }
        }
        out
    }

    /// Waits for the next event: records, or a revocation / assignment when the group rebalances.
    ///
    /// A transient failure ([`Error::is_retriable`]: every broker unreachable, a connection
    /// broken, a timeout, a coordinator or leader that moved) is not returned: the member logs
    /// it, backs off (`retry.backoff.ms` doubling to `retry.backoff.max.ms`) and tries again for
    /// as long as it lasts, as the Java consumer does, so a long-lived member outlives a broker
    /// outage (logged as a warning when it begins and every minute while it lasts). So is a
    /// rejoin that could not finish within its budget because the group kept rebalancing. If
    /// the outage outlasts the session timeout the group rebalances, and the member rejoins
    /// when the brokers are back (a revocation, then an assignment). Unlike Java's
    /// `poll(timeout)`, this one does not return empty-handed meanwhile: to regain control,
    /// wrap it in `tokio::time::timeout` (it is cancel-safe).
    ///
    /// # Errors
    /// What retrying cannot mend: fatal group errors (an invalid or unauthorized group, a fenced
    /// instance id), authentication and TLS failures, invalid settings.
    pub async fn poll(&mut self) -> Result<GroupEvent> {
        loop {
            match self.poll_once().await {
                // Retriable, or a rejoin a join could not finish within its budget (the group
                // kept rebalancing): the next round joins again.
                Err(e)
                    if (e.is_retriable() || e.recovery() == Recovery::Rejoin)
                        && self.shared.fatal().is_none() =>
                {
                    self.ride_out(&e).await;
                }
                other => {
                    if other.is_ok() {
                        self.outage_over();
                    }
                    return other;
                }
            }
        }
    }

    /// Logs a transient failure (a warning when it begins and again every
    /// [`OUTAGE_WARN_EVERY`], at debug between) and waits the next backoff before the next
    /// attempt.
    async fn ride_out(&mut self, e: &Error) {
        let cfg = self.client.config();
        let group = &self.config.group_id;
        let outage = self.outage.get_or_insert_with(|| Outage {
            backoff: Backoff::unbounded(cfg.retry_backoff, cfg.retry_backoff_max),
            since: Instant::now(),
            warned: None,
        });
        if outage
            .warned
            .is_none_or(|at| at.elapsed() >= OUTAGE_WARN_EVERY)
        {
            outage.warned = Some(Instant::now());
            tracing::warn!(%group, error = %e, failing_for = ?outage.since.elapsed(), "the group cannot go on; retrying until it can");
        } else {
            tracing::debug!(%group, error = %e, failing_for = ?outage.since.elapsed(), "still retrying");
        }
        outage.backoff.wait().await;
    }

    /// Ends an outage, if one was going on (logged with its length).
    fn outage_over(&mut self) {
        if let Some(Outage { since, .. }) = self.outage.take() {
            tracing::info!(group = %self.config.group_id, after = ?since.elapsed(), "the cluster is reachable again");
        }
    }

    async fn poll_once(&mut self) -> Result<GroupEvent> {
        loop {
            if let Some(e) = self.shared.fatal() {
                return Err(e);
            }
            if self.joining.is_some() || self.shared.must_rejoin() {
                if !self.assignment.is_empty() {
                    return Ok(GroupEvent::Revoked(self.revoke().await));
                }
                self.rejoin().await?;
                return Ok(GroupEvent::Assigned(self.assignment.clone()));
            }
            if self.last_metadata_check.elapsed() >= self.config.metadata_max_age {
                self.last_metadata_check = Instant::now();
                if self.topics_changed().await {
                    self.shared.set_rejoin(true);
                    continue;
                }
            }
            if let Some(every) = self.config.auto_commit {
                if self.last_commit.elapsed() >= every && !self.assignment.is_empty() {
                    if let Err(e) = self.commit_positions().await {
                        tracing::warn!(group = %self.config.group_id, error = %e, "periodic commit failed");
                    }
                    self.last_commit = Instant::now();
                }
            }
            if self.assignment.is_empty() {
                // Nothing to fetch: wait a little for the group to change, then look again.
                tokio::time::sleep(
                    self.config
                        .fetch
                        .max_wait
                        .min(self.config.heartbeat_interval),
                )
                .await;
                continue;
            }
            let records = match self.fetcher.poll().await {
                Ok(records) => records,
                // A subscribed topic deleted under us: not the end of this member. The group
                // rebalances (its leader assigns what exists) and a re-created topic is noticed
                // by the metadata check.
                Err(e) if topic_missing(&e) => {
                    tracing::warn!(group = %self.config.group_id, error = %e, "a subscribed topic is gone; rejoining");
                    self.shared.set_rejoin(true);
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Skipped batches are news too: the caller takes them with `take_skipped`.
            if !records.is_empty() || self.fetcher.has_skipped() {
                return Ok(GroupEvent::Records(records));
            }
        }
    }

    /// Gives up the current assignment (committing positions first with auto-commit).
    async fn revoke(&mut self) -> Assignment {
        if self.config.auto_commit.is_some() {
            if let Err(e) = self.commit_positions().await {
                tracing::warn!(group = %self.config.group_id, error = %e, "commit before revoke failed");
            }
        }
        let revoked = std::mem::take(&mut self.assignment);
        for (topic, parts) in &revoked {
            for p in parts {
                self.fetcher.unassign(topic, *p);
            }
        }
        revoked
    }

    /// Runs (or keeps waiting for) the join task, then points the fetcher at the start offsets.
    async fn rejoin(&mut self) -> Result<()> {
        let job = self.joining.get_or_insert_with(|| {
            tokio::spawn(
                JoinJob {
                    client: self.client.clone(),
                    config: self.config.clone(),
                    shared: self.shared.clone(),
                }
                .run(),
            )
        });
        let outcome = job.await;
        self.joining = None;
        let Joined {
            assignment,
            start,
            shape,
        } = outcome.map_err(|e| Error::InvalidArgument(format!("the join task failed: {e}")))??;
        for (topic, parts) in &assignment {
            for p in parts {
                let offset = start
                    .get(topic)
                    .and_then(|m| m.get(p))
                    .copied()
                    .unwrap_or(0);
                self.fetcher.assign(topic, *p, offset);
            }
        }
        self.assignment = assignment;
        tracing::debug!(group = %self.config.group_id, ?start, "start offsets");
        // No await from the join task's end to here: `poll` is cancel-safe.
        self.topic_shape = shape;
        self.last_metadata_check = Instant::now();
        Ok(())
    }

    /// Whether a subscribed topic grew, shrank, appeared or disappeared since our last join
    /// (as the Java consumer's metadata snapshot does): logged, and the caller rejoins.
    async fn topics_changed(&mut self) -> bool {
        let now = topic_shape(&self.client, &self.config).await;
        let mut changed = false;
        for (topic, was) in &self.topic_shape {
            let is = now.get(topic).copied().flatten();
            if *was != is {
                changed = true;
                match (was, is) {
                    (Some(a), Some(b)) => {
                        tracing::info!(group = %self.config.group_id, %topic, from = a, to = b, "subscribed topic's partition count changed; rejoining")
                    }
                    (Some(_), None) => {
                        tracing::warn!(group = %self.config.group_id, %topic, "subscribed topic was deleted; rejoining")
                    }
                    _ => {
                        tracing::info!(group = %self.config.group_id, %topic, "subscribed topic now exists; rejoining")
                    }
                }
            }
        }
        changed
    }

    /// Commits `offsets` (next offset to read, per partition) as this generation's member.
    pub async fn commit(&self, offsets: &Offsets) -> Result<()> {
        self.committer().commit(offsets).await
    }

    /// A handle that commits for this member while a [`poll`](Self::poll) is in flight, so a
    /// caller committing on a timer need not cancel the poll (and the fetch it waits on).
    pub fn committer(&self) -> GroupCommitter {
        GroupCommitter {
            client: self.client.clone(),
            config: self.config.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Commits the consumed positions of every assigned partition.
    pub async fn commit_positions(&self) -> Result<()> {
        self.commit(&self.positions()).await
    }

    /// The group's committed offsets for `topics` (-1 where none).
    pub async fn committed(&self, topics: &HashMap<String, Vec<i32>>) -> Result<Offsets> {
        let conn = self
            .shared
            .coordinator(&self.client, &self.config.group_id)
            .await?;
        offsets::fetch_committed(&conn, &self.config.group_id, topics).await
    }

    /// Commits (with auto-commit), stops heartbeats, leaves the group so it rebalances at
    /// once, then closes its fetch sessions on the brokers ([`Fetcher::close_sessions`],
    /// within the request timeout), as the Java consumer closes its coordinator before its
    /// fetcher. A static member (instance id set) does not leave: it keeps its place for a
    /// restart. Err: the commit or the leave failed (the sessions are closed all the same
    /// after a failed leave).
    pub async fn close(mut self) -> Result<()> {
        self.heartbeat.abort();
        if self.config.auto_commit.is_some() && !self.assignment.is_empty() {
            self.commit_positions().await?;
        }
        self.assignment.clear();
        let member_id = self.member_id();
        let left = if member_id.is_empty() || self.config.instance_id.is_some() {
            Ok(())
        } else {
            async {
                let conn = (self.shared)
                    .coordinator(&self.client, &self.config.group_id)
                    .await?;
                membership::leave(&conn, &self.config, &member_id).await
            }
            .await
        };
        self.fetcher
            .close_sessions(self.client.config().request_timeout)
            .await;
        left
    }
}

/// Whether `e` says a topic (or partition) does not exist.
fn topic_missing(e: &Error) -> bool {
    matches!(e, Error::UnknownTopic { .. })
        || e.kafka_error() == Some(crate::ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
}
