//! A consumer-group member: joins, runs the assignor when leader, heartbeats from its own task on
//! the coordinator's own connection, fetches its partitions, commits, and leaves on close.
//!
//! Rebalancing is eager: before rejoining, [`GroupConsumer::poll`] hands back
//! [`GroupEvent::Revoked`] so the caller can finish and commit what it holds; the next poll
//! rejoins and hands back [`GroupEvent::Assigned`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kafka_protocol::error::ResponseError;
use tokio::task::JoinHandle;

use super::assignor::Assignor;
use super::offsets::{self, Committer, Offsets};
use super::payload::{self, Assignment, Subscription};
use super::{coordinator, membership, GroupConfig};
use crate::backoff::Backoff;
use crate::client::{Client, Lane};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::fetcher::{Fetcher, OffsetReset};
use crate::offsets::OffsetSpec;
use crate::records::ConsumerRecord;

/// What one poll produced.
#[derive(Debug)]
pub enum GroupEvent {
    /// These partitions are now ours (fetching from their committed offsets).
    Assigned(Assignment),
    /// These partitions are no longer ours: finish and commit their work before polling again.
    Revoked(Assignment),
    /// Records from our partitions, in offset order per partition.
    Records(Vec<ConsumerRecord>),
}

#[derive(Debug, Default)]
struct Member {
    coordinator: Option<String>,
    member_id: String,
    generation: i32,
    /// Heartbeats are sent only between a completed sync and the next rebalance.
    stable: bool,
}

struct Shared {
    member: Mutex<Member>,
    rejoin: AtomicBool,
}

impl Shared {
    fn member(&self) -> std::sync::MutexGuard<'_, Member> {
        self.member.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reacts to an error from the coordinator; returns true if it means "rejoin".
    fn on_coordinator_error(&self, e: &Error) -> bool {
        let mut m = self.member();
        let rejoin = match e.kafka_error() {
            Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => true,
            Some(ResponseError::UnknownMemberId | ResponseError::FencedInstanceId) => {
                m.member_id.clear();
                true
            }
            Some(
                ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress,
            ) => {
                m.coordinator = None;
                true
            }
            _ => false,
        };
        if rejoin {
            m.stable = false;
            self.rejoin.store(true, Ordering::SeqCst);
        }
        rejoin
    }
}

/// A member of a consumer group.
pub struct GroupConsumer {
    client: Client,
    config: GroupConfig,
    fetcher: Fetcher,
    shared: Arc<Shared>,
    assignment: Assignment,
    heartbeat: JoinHandle<()>,
    last_commit: Instant,
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl GroupConsumer {
    /// A member of `config.group_id`; it joins on the first [`poll`](Self::poll).
    pub fn new(client: Client, config: GroupConfig) -> Result<Self> {
        if config.topics.is_empty() {
            return Err(Error::InvalidArgument(
                "a group consumer needs at least one topic".into(),
            ));
        }
        if config.heartbeat_interval >= config.session_timeout {
            return Err(Error::InvalidArgument(format!(
                "heartbeat interval {:?} must be below the session timeout {:?}",
                config.heartbeat_interval, config.session_timeout
            )));
        }
        let shared = Arc::new(Shared {
            member: Mutex::new(Member {
                generation: -1,
                ..Member::default()
            }),
            rejoin: AtomicBool::new(true),
        });
        let heartbeat = tokio::spawn(heartbeat_loop(
            client.clone(),
            config.clone(),
            Arc::downgrade(&shared),
        ));
        Ok(Self {
            fetcher: Fetcher::new(client.clone(), config.fetch.clone()),
            client,
            config,
            shared,
            assignment: Assignment::new(),
            heartbeat,
            last_commit: Instant::now(),
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

    /// Waits for the next event: records, or a revocation / assignment when the group rebalances.
    pub async fn poll(&mut self) -> Result<GroupEvent> {
        loop {
            if self.shared.rejoin.load(Ordering::SeqCst) {
                if !self.assignment.is_empty() {
                    if self.config.auto_commit.is_some() {
                        if let Err(e) = self.commit(&self.positions()).await {
                            tracing::warn!(group = %self.config.group_id, error = %e, "commit before revoke failed");
                        }
                    }
                    let revoked = std::mem::take(&mut self.assignment);
                    for (topic, parts) in &revoked {
                        for p in parts {
                            self.fetcher.unassign(topic, *p);
                        }
                    }
                    return Ok(GroupEvent::Revoked(revoked));
                }
                self.rejoin().await?;
                return Ok(GroupEvent::Assigned(self.assignment.clone()));
            }
            if let Some(every) = self.config.auto_commit {
                if self.last_commit.elapsed() >= every && !self.assignment.is_empty() {
                    if let Err(e) = self.commit(&self.positions()).await {
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
            let records = self.fetcher.poll().await?;
            if !records.is_empty() {
                return Ok(GroupEvent::Records(records));
            }
        }
    }

    /// Commits `offsets` (next offset to read, per partition) as this generation's member.
    pub async fn commit(&self, offsets: &Offsets) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let who = {
            let m = self.shared.member();
            Committer {
                group: self.config.group_id.clone(),
                generation: m.generation,
                member_id: m.member_id.clone(),
                instance_id: self.config.instance_id.clone(),
            }
        };
        let conn = self.coordinator_conn().await?;
        let result = offsets::commit(&conn, &who, offsets).await;
        if let Err(e) = &result {
            self.shared.on_coordinator_error(e);
        }
        result
    }

    /// Commits the consumed positions of every assigned partition.
    pub async fn commit_positions(&self) -> Result<()> {
        self.commit(&self.positions()).await
    }

    /// The group's committed offsets for `topics` (-1 where none).
    pub async fn committed(&self, topics: &HashMap<String, Vec<i32>>) -> Result<Offsets> {
        let conn = self.coordinator_conn().await?;
        offsets::fetch_committed(&conn, &self.config.group_id, topics).await
    }

    /// Commits (with auto-commit), leaves the group so it rebalances at once, stops heartbeats.
    /// A static member (instance id set) does not leave: it keeps its place for a restart.
    pub async fn close(mut self) -> Result<()> {
        self.heartbeat.abort();
        if self.config.auto_commit.is_some() && !self.assignment.is_empty() {
            self.commit_positions().await?;
        }
        self.assignment.clear();
        let member_id = self.member_id();
        if member_id.is_empty() || self.config.instance_id.is_some() {
            return Ok(());
        }
        let conn = self.coordinator_conn().await?;
        membership::leave(&conn, &self.config, &member_id).await
    }

    async fn coordinator_conn(&self) -> Result<Arc<Connection>> {
        let known = self.shared.member().coordinator.clone();
        let addr = match known {
            Some(a) => a,
            None => {
                let a = coordinator::find_coordinator(&self.client, &self.config.group_id).await?;
                self.shared.member().coordinator = Some(a.clone());
                a
            }
        };
        self.client.connection(&addr, Lane::Coordinator).await
    }

    /// Join and sync until we are a stable member, then position the fetcher.
    async fn rejoin(&mut self) -> Result<()> {
        let cfg = self.client.config();
        let budget = self.config.rebalance_timeout + self.config.session_timeout;
        let mut backoff = Backoff::new(cfg.retry_backoff, cfg.retry_backoff_max, budget);
        loop {
            self.shared.rejoin.store(false, Ordering::SeqCst);
            match self.join_and_sync().await {
                Ok(assignment) => {
                    self.start_fetching(&assignment).await?;
                    self.assignment = assignment;
                    return Ok(());
                }
                Err(e) => {
                    let recoverable = self.shared.on_coordinator_error(&e) || e.is_retriable();
                    if let Error::ConnectionBroken { .. }
                    | Error::Connect { .. }
                    | Error::Timeout { .. } = e
                    {
                        self.shared.member().coordinator = None;
                    }
                    tracing::info!(group = %self.config.group_id, error = %e, "rejoin attempt failed");
                    if !recoverable || !backoff.wait().await {
                        self.shared.rejoin.store(true, Ordering::SeqCst);
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn join_and_sync(&mut self) -> Result<Assignment> {
        let conn = self.coordinator_conn().await?;
        let member_id = {
            let mut m = self.shared.member();
            m.stable = false;
            m.member_id.clone()
        };
        let metadata = payload::encode_subscription(&Subscription {
            topics: self.config.topics.clone(),
            user_data: None,
        });
        let joined = membership::join(&conn, &self.config, &member_id, metadata).await?;
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
        self.shared.member().stable = true;
        tracing::info!(group = %self.config.group_id, generation = joined.generation, member = %joined.member_id, ?assignment, "joined");
        Ok(assignment)
    }

    /// As leader: decode every member's subscription and run the chosen assignor.
    async fn lead(
        &self,
        joined: &super::membership::Joined,
    ) -> Result<Vec<(String, bytes::Bytes)>> {
        let assignor = Assignor::from_name(&joined.protocol).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the group chose assignor {:?}, which this client does not have",
                joined.protocol
            ))
        })?;
        let mut members = BTreeMap::new();
        for (id, meta) in &joined.members {
            match payload::decode_subscription(meta.clone()) {
                Ok(sub) => {
                    members.insert(id.clone(), sub);
                }
                Err(e) => {
                    // A member we cannot read gets nothing; the others still get everything.
                    tracing::warn!(member = %id, error = %e, "unreadable subscription");
                    members.insert(id.clone(), Subscription::default());
                }
            }
        }
        let mut counts = HashMap::new();
        let topics: std::collections::BTreeSet<&String> =
            members.values().flat_map(|s| s.topics.iter()).collect();
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

    /// Points the fetcher at the committed offset (or the reset policy's) of every partition.
    async fn start_fetching(&mut self, assignment: &Assignment) -> Result<()> {
        let wanted: HashMap<String, Vec<i32>> = assignment
            .iter()
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let committed = self.committed(&wanted).await?;
        let spec = match self.config.offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            _ => OffsetSpec::Latest,
        };
        for (topic, parts) in assignment {
            for &p in parts {
                match committed
                    .get(topic)
                    .and_then(|m| m.get(&p))
                    .copied()
                    .filter(|o| *o >= 0)
                {
                    Some(offset) => self.fetcher.assign(topic, p, offset),
                    None => {
                        self.fetcher.assign_at(topic, p, spec).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Sends heartbeats while the member is stable; flags a rejoin when the coordinator asks for
/// one or when none succeeded for a whole session timeout.
async fn heartbeat_loop(client: Client, config: GroupConfig, shared: std::sync::Weak<Shared>) {
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(config.heartbeat_interval).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (coordinator, generation, member_id) = {
            let m = shared.member();
            if !m.stable {
                last_ok = Instant::now();
                continue;
            }
            (m.coordinator.clone(), m.generation, m.member_id.clone())
        };
        let Some(addr) = coordinator else {
            shared.rejoin.store(true, Ordering::SeqCst);
            continue;
        };
        let result = match client.connection(&addr, Lane::Coordinator).await {
            Ok(conn) => membership::heartbeat(&conn, &config, generation, &member_id).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => last_ok = Instant::now(),
            Err(e) => {
                if !shared.on_coordinator_error(&e) && last_ok.elapsed() >= config.session_timeout {
                    tracing::warn!(group = %config.group_id, error = %e, "no heartbeat for a session timeout; rejoining");
                    let mut m = shared.member();
                    m.stable = false;
                    m.coordinator = None;
                    shared.rejoin.store(true, Ordering::SeqCst);
                }
            }
        }
    }
}
