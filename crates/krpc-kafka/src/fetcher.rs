//! Long-poll fetching of assigned partitions from their leaders.
//!
//! What the fetcher guarantees whatever the brokers answer:
//! - **Errors are classified once** ([`crate::error::Recovery`]): a partition whose fetch fails
//!   in a retriable way (leader moved, no leader, broker unreachable, timeout) is not fetched
//!   again before its backoff delay ([`crate::ClientConfig::retry_backoff`] doubling to
//!   `retry_backoff_max`, jittered, as Java's `retry.backoff.ms`), and its topic's cached
//!   metadata is dropped (so refreshed) at most once per `retry_backoff`, however many of its
//!   partitions fail; the other partitions keep being fetched.
//! - **Offset resets follow one policy** ([`FetchConfig::offset_reset`], Java's
//!   `auto.offset.reset`): OFFSET_OUT_OF_RANGE moves to the log start (earliest) or end
//!   (latest), or fails the poll (error), whether the position is below the log start or above
//!   its end. Every reset is logged; offsets jumped over are counted
//!   ([`Fetcher::reset_skipped_offsets`]).
//! - **Progress is never silent**: a partition that returns bytes but no complete batch (a batch
//!   larger than the per-partition limit, from a broker that does not apply KIP-74) is fetched
//!   again with a limit grown to that batch (up to [`FetchConfig::max_bytes`]); past that it is
//!   stepped over and counted with [`FetchConfig::skip_undecodable`], or the poll fails with
//!   [`Error::FetchTooSmall`] naming the topic, partition and offset.
//! - **No partition starves the others**: the order of partitions in fetch requests rotates
//!   every poll (the Java consumer moves fetched partitions to the end of its fetch order), so
//!   one busy partition cannot fill every response's `max_bytes` before the others are served.
//! - **Fetch sessions (KIP-227)** where the broker grants them ([`FetchConfig::sessions`],
//!   Fetch v7+): after the first, full, request to a broker, requests list only the partitions
//!   whose position or limit changed and the ones dropped; the broker answers only partitions
//!   with data or news, and a partition it leaves out keeps its position. A refused session
//!   (FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH) or a failed request makes the
//!   next request full again; positions never depend on the session (see `fetcher/session.rs`).
//! - **One fetch per broker at a time**: [`Fetcher::poll`] takes `&mut self` and awaits every
//!   broker's fetch of its round before it returns, so this fetcher never sends a broker a
//!   second fetch while one is in flight to it.

mod session;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::backoff::Backoff;
use crate::client::{KafkaClient, Lane};
use crate::error::{check_code, Error, Recovery, Result};
use crate::fast_map::FastMap;
use crate::list_offsets::OffsetSpec;
use crate::records::{decode_fetched, ConsumerRecord, ReadCommitted, RecordsError};

/// Where to start when there is no valid position: the Java consumer's `auto.offset.reset`
/// (`earliest`, `latest`, `none`). One policy governs both cases Java applies it to: a group
/// partition with no committed offset, and a position outside the log (OFFSET_OUT_OF_RANGE,
/// below its start or above its end).
///
/// In a config file (feature `serde`): Java's values, `earliest`, `latest`, `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum OffsetReset {
    /// The log start (the first offset still stored).
    Earliest,
    /// The log end (the next offset to be written). Java's default.
    #[default]
    Latest,
    /// No reset: fail with the broker's OFFSET_OUT_OF_RANGE error, or (for a group partition
    /// with no committed offset) with [`Error::NoResetPolicy`]. Java: `none`.
    #[cfg_attr(feature = "serde", serde(rename = "none", alias = "error"))]
    Error,
}

/// Which records a fetch returns (KIP-98); mirrors the Java consumer's `isolation.level`.
///
/// In a config file (feature `serde`): Java's values, `read_uncommitted`, `read_committed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum IsolationLevel {
    /// Every data record, aborted transactions included, up to the high watermark
    /// (`read_uncommitted`, Java's default).
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions and non-transactional ones, up to the last stable
    /// offset (`read_committed`): the broker sends the aborted transactions of each partition
    /// and the decoder drops their data batches. Needs Fetch v4+ (Kafka 0.11+).
    ReadCommitted,
}

impl IsolationLevel {
    /// The Fetch request's `isolation_level` field.
    pub fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// Fetch settings.
///
/// With the `serde` feature it reads from a config file (see [`crate::config`]).
///
/// `#[non_exhaustive]`: start from [`FetchConfig::default`] and chain the `with_*` setters.
/// [`Fetcher::new`] (and [`crate::GroupConsumer::new`]) check it ([`FetchConfig::validate`]).
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct FetchConfig {
    /// How long the broker may hold a fetch waiting for `min_bytes` (Java: `fetch.max.wait.ms`,
    /// 500 ms). Default 500 ms. In a config file also `fetch_max_wait` (Java's name, and
    /// `krpc`'s `--fetch-max-wait`).
    #[cfg_attr(
        feature = "serde",
        serde(with = "humantime_serde", alias = "fetch_max_wait")
    )]
    pub max_wait: Duration,
    /// Bytes the broker waits for before answering early (Java: `fetch.min.bytes`, 1).
    pub min_bytes: i32,
    /// Upper bound on the bytes of one response (Java: `fetch.max.bytes`, 50 MiB). Also the
    /// most a partition's limit grows to when one batch does not fit `partition_max_bytes`.
    pub max_bytes: i32,
    /// Upper bound on the bytes returned per partition (Java: `max.partition.fetch.bytes`,
    /// 1 MiB). A broker following KIP-74 returns a first batch larger than this whole; for one
    /// that does not, the fetcher grows this partition's limit to the batch's size.
    pub partition_max_bytes: i32,
    /// Largest size one batch may inflate to when decompressed. No Java setting matches (Java
    /// does not bound it). Default 64 MiB.
    pub max_inflated_bytes: usize,
    /// The reset policy (Java: `auto.offset.reset`, default latest): on OFFSET_OUT_OF_RANGE here,
    /// and for partitions without a committed offset in a [`crate::GroupConsumer`].
    pub offset_reset: OffsetReset,
    /// Step over a batch that cannot be decoded (unsupported codec, corrupt content), logging
    /// and counting it ([`Fetcher::skipped_batches`]), instead of failing every poll on it.
    pub skip_undecodable: bool,
    /// With `skip_undecodable`: keep each batch stepped over, raw bytes included, for
    /// [`Fetcher::take_skipped`] (a caller that stores them, such as a dead-letter writer). The
    /// caller must take them: while 1024 batches or 16 MiB wait, the partition's position stops
    /// at the next undecodable batch, so none is stepped over without being kept. Default
    /// false (they are only counted and logged).
    pub keep_skipped: bool,
    /// When a fetch shows a hole in the offsets (a later batch without the earlier one), stop
    /// before the hole and fetch it again for up to this long before accepting it as a real
    /// hole. Apache Kafka never shows a later batch first; some Kafka-compatible brokers do
    /// (measured on nisshi 0.8.1 under concurrent producers), and a consumer that jumps the
    /// hole loses those records. Holes are legitimate on compacted topics, so `None` (accept at
    /// once) is the default; the RPC layer sets it for its own, never compacted, topics.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub hole_wait: Option<Duration>,
    /// Which records to return; mirrors the Java consumer's `isolation.level` (default
    /// `read_uncommitted`). See [`IsolationLevel`]. In a config file also `isolation`
    /// (`krpc consume`'s flag).
    #[cfg_attr(feature = "serde", serde(alias = "isolation"))]
    pub isolation_level: IsolationLevel,
    /// Use KIP-227 incremental fetch sessions with brokers that grant them (Fetch v7+, Kafka
    /// 1.1+): after one full request, each request lists only the partitions whose position
    /// changed, which saves the broker work per fetch. Default true: the Java consumer always
    /// asks for a session (it has no setting; a broker's
    /// `max.incremental.fetch.session.cache.slots` = 0 turns them off). False sends every
    /// request full and sessionless (session id 0, epoch -1).
    pub sessions: bool,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            max_inflated_bytes: 64 * 1024 * 1024,
            offset_reset: OffsetReset::Latest,
            skip_undecodable: false,
            keep_skipped: false,
            hole_wait: None,
            isolation_level: IsolationLevel::ReadUncommitted,
            sessions: true,
        }
    }
}

crate::config::with_setters! { FetchConfig {
    /// Sets [`max_wait`](Self::max_wait) (Java `fetch.max.wait.ms`).
    with_max_wait(max_wait: Duration);
    /// Sets [`min_bytes`](Self::min_bytes) (Java `fetch.min.bytes`).
    with_min_bytes(min_bytes: i32);
    /// Sets [`max_bytes`](Self::max_bytes) (Java `fetch.max.bytes`).
    with_max_bytes(max_bytes: i32);
    /// Sets [`partition_max_bytes`](Self::partition_max_bytes) (Java `max.partition.fetch.bytes`).
    with_partition_max_bytes(partition_max_bytes: i32);
    /// Sets [`max_inflated_bytes`](Self::max_inflated_bytes) (no Java setting).
    with_max_inflated_bytes(max_inflated_bytes: usize);
    /// Sets [`offset_reset`](Self::offset_reset) (Java `auto.offset.reset`).
    with_offset_reset(offset_reset: OffsetReset);
    /// Sets [`skip_undecodable`](Self::skip_undecodable) (no Java setting).
    with_skip_undecodable(skip_undecodable: bool);
    /// Sets [`keep_skipped`](Self::keep_skipped) (no Java setting).
    with_keep_skipped(keep_skipped: bool);
    /// Sets [`hole_wait`](Self::hole_wait) to `Some` (no Java setting).
    with_hole_wait(hole_wait: some Duration);
    /// Sets [`isolation_level`](Self::isolation_level) (Java `isolation.level`).
    with_isolation_level(isolation_level: IsolationLevel);
    /// Sets [`sessions`](Self::sessions) (KIP-227 incremental fetch sessions; no Java setting).
    with_sessions(sessions: bool);
}}

impl FetchConfig {
    /// Checks every setting, as [`Fetcher::new`] does: byte limits the Java consumer's
    /// validators refuse (`fetch.min.bytes` below 0) or with which nothing could be fetched
    /// (`fetch.max.bytes`, `max.partition.fetch.bytes` or the inflated-size bound at 0 or
    /// below).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the setting and its value.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check(self.min_bytes >= 0, || {
            format!(
                "FetchConfig::min_bytes (fetch.min.bytes) must be >= 0, got {}",
                self.min_bytes
            )
        })?;
        check(self.max_bytes > 0, || {
            format!(
                "FetchConfig::max_bytes (fetch.max.bytes) must be > 0, got {}",
                self.max_bytes
            )
        })?;
        check(self.partition_max_bytes > 0, || {
            format!(
                "FetchConfig::partition_max_bytes (max.partition.fetch.bytes) must be > 0, got {}",
                self.partition_max_bytes
            )
        })?;
        check(self.max_inflated_bytes > 0, || {
            "FetchConfig::max_inflated_bytes must be > 0, got 0".into()
        })?;
        crate::config::check_durations(
            "FetchConfig",
            &[
                ("max_wait", Some(self.max_wait), true),
                ("hole_wait", self.hole_wait, true),
            ],
        )
    }
}

/// One assigned partition: where it is, its byte limit, and its backoff after errors.
struct Assigned {
    topic: Arc<str>,
    partition: i32,
    /// Next offset to fetch.
    offset: i64,
    /// Byte limit for the next fetch of this partition (grown when a batch did not fit).
    max_bytes: i32,
    /// Not fetched again before this instant (after a retriable error).
    retry_at: Option<Instant>,
    /// Delays between retries of this partition (reset after a successful fetch).
    backoff: Backoff,
    /// Where the lag is measured to, as of the last fetch that answered for this partition:
    /// its high watermark, or with read_committed its last stable offset (`None`: no answer
    /// yet since the partition was assigned).
    lag_end: Option<i64>,
}

/// A batch stepped over because it could not be decoded (with `skip_undecodable`), kept with
/// its raw bytes so the caller can store it somewhere (a dead-letter topic) instead of losing it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SkippedBatch {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// First offset of the batch (for an old-format message: its offset).
    pub base_offset: i64,
    /// The offset after it (exclusive).
    pub next_offset: i64,
    /// Why it could not be decoded.
    pub reason: String,
    /// The batch exactly as the broker sent it (base offset and length fields included).
    pub raw: bytes::Bytes,
}

/// Skipped batches kept for [`Fetcher::take_skipped`] at most, and their total raw bytes;
/// beyond, they are only counted and logged.
const MAX_KEPT_SKIPPED: usize = 1024;
const MAX_KEPT_SKIPPED_BYTES: usize = 16 << 20;

/// Fetches records of a set of assigned partitions, tracking each one's position.
///
/// With a broker that grants KIP-227 fetch sessions, dropping a fetcher sends each such broker
/// one request that closes the session, in the background (see [`Fetcher::close_sessions`]).
///
/// # Examples
///
/// ```no_run
/// use krpc_kafka::{KafkaClient, ClientConfig, FetchConfig, Fetcher};
///
/// # async fn example() -> krpc_kafka::Result<()> {
/// let client = KafkaClient::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let mut fetcher = Fetcher::new(client, FetchConfig::default())?;
/// fetcher.assign("events", 0, 0); // partition 0 from offset 0
/// for record in fetcher.poll().await? {
///     println!("{}/{} at {}: {:?}", record.topic, record.partition, record.offset, record.value);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Fetcher {
    client: KafkaClient,
    config: FetchConfig,
    /// Assigned partitions; fetch requests list them starting at `rotation`.
    assigned: Vec<Assigned>,
    /// Where the next fetch order starts in `assigned` (advanced every poll).
    rotation: usize,
    /// This fetcher's own connections.
    lane: Lane,
    /// Undecodable batches stepped over.
    skipped: std::sync::atomic::AtomicU64,
    /// Out-of-range positions reset by the policy.
    resets: u64,
    /// Offsets jumped over by resets (a reset forward from `from` to `to` adds `to - from`).
    reset_skipped: u64,
    /// Per partition, a hole being waited for: its first offset and when it was first seen.
    holes: FastMap<(Arc<str>, i32), (i64, Instant)>,
    /// When each topic's cached metadata was last invalidated after an error (at most once
    /// per `retry_backoff`, however many of its partitions fail).
    invalidated: FastMap<Arc<str>, Instant>,
    /// Undecodable batches stepped over and not yet taken by [`Fetcher::take_skipped`].
    kept_skipped: Vec<SkippedBatch>,
    /// KIP-227 fetch session per broker address (each broker's rounds run concurrently, so
    /// behind a lock held only to plan a request or take its answer, never across an await).
    sessions: Mutex<FastMap<String, session::Session>>,
}

impl Drop for Fetcher {
    /// Closes the fetcher's open fetch sessions in the background (see
    /// [`Fetcher::close_sessions`]) and gives up its lane's connections: a connection with a
    /// session to close lives on in that task until the close is answered or times out.
    fn drop(&mut self) {
        // A Drop cannot wait: each close is sent from a task spawned on the runtime of its
        // connection's reader, from any thread (inside or outside a runtime), bounded by the
        // connection's request timeout (the reader sweeps deadlines). A runtime shut down
        // drops the task unrun: that session is left to the broker's eviction.
        for close in self.take_session_closes() {
            let runtime = close.conn.reader_runtime().clone();
            runtime.spawn(close.send(None));
        }
        self.client.close_lane(self.lane);
    }
}

/// The request that closes one KIP-227 fetch session, and the connection it goes on.
struct SessionClose {
    addr: String,
    session_id: i32,
    conn: Arc<crate::connection::Connection>,
    request: FetchRequest,
}

impl SessionClose {
    /// Sends the close, waiting at most `timeout` (`None`: the connection's request timeout
    /// only); the outcome is logged at debug level, as nothing depends on it.
    async fn send(self, timeout: Option<Duration>) {
        let (addr, session_id) = (&self.addr, self.session_id);
        let answer = self.conn.send(&self.request);
        let answer = match timeout {
            Some(timeout) => match tokio::time::timeout(timeout, answer).await {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::debug!(broker = %addr, session = session_id, ?timeout,
                        "fetch session not closed in time (the broker evicts it in time)");
                    return;
                }
            },
            None => answer.await,
        };
        match answer {
            Ok(_) => tracing::debug!(broker = %addr, session = session_id, "fetch session closed"),
            Err(e) => tracing::debug!(broker = %addr, session = session_id, error = %e,
                "fetch session not closed (the broker evicts it in time)"),
        }
    }
}

/// A partition in one fetch request: its topic, partition, offset and byte limit.
type Ask = (Arc<str>, i32, i64, i32);

impl Fetcher {
    /// A fetcher with nothing assigned.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the setting when `config` does not pass
    /// [`FetchConfig::validate`].
    pub fn new(client: KafkaClient, config: FetchConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            client,
            config,
            assigned: Vec::new(),
            rotation: 0,
            lane: Lane::Fetch(Lane::unique_id()),
            skipped: Default::default(),
            resets: 0,
            reset_skipped: 0,
            holes: FastMap::default(),
            invalidated: FastMap::default(),
            kept_skipped: Vec::new(),
            sessions: Mutex::new(FastMap::default()),
        })
    }

    fn find(&self, topic: &str, partition: i32) -> Option<usize> {
        self.assigned
            .iter()
            .position(|a| &*a.topic == topic && a.partition == partition)
    }

    /// Starts fetching `topic`/`partition` at `offset`.
    pub fn assign(&mut self, topic: &str, partition: i32, offset: i64) {
        let cfg = self.client.config();
        let fresh = Assigned {
            topic: Arc::from(topic),
            partition,
            offset,
            max_bytes: self.config.partition_max_bytes,
            retry_at: None,
            backoff: Backoff::unbounded(cfg.retry_backoff, cfg.retry_backoff_max),
            lag_end: None,
        };
        match self.find(topic, partition) {
            Some(i) => self.assigned[i] = fresh,
            None => self.assigned.push(fresh),
        }
    }

    /// Starts fetching `topic`/`partition` at the offset `spec` names (with read_committed,
    /// [`OffsetSpec::Latest`] is the last stable offset, as the Java consumer resets to).
    pub async fn assign_at(
        &mut self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<i64> {
        let offset = self.offset_for(topic, partition, spec).await?;
        self.assign(topic, partition, offset);
        Ok(offset)
    }

    /// The offset `spec` names, asked with this fetcher's isolation level (ListOffsets v2+
    /// for read_committed: `Latest` is then the last stable offset, not the high watermark).
    async fn offset_for(&self, topic: &str, partition: i32, spec: OffsetSpec) -> Result<i64> {
        let offsets = self
            .client
            .list_offsets_isolated(topic, &[partition], spec, self.config.isolation_level)
            .await?;
        Ok(offsets.get(&partition).copied().unwrap_or(-1))
    }

    /// Stops fetching `topic`/`partition`.
    pub fn unassign(&mut self, topic: &str, partition: i32) {
        if let Some(i) = self.find(topic, partition) {
            self.assigned.remove(i);
        }
    }

    /// The next offset that will be fetched for `topic`/`partition`.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.find(topic, partition).map(|i| self.assigned[i].offset)
    }

    /// The partition's lag: records between its position and its high watermark (with
    /// read_committed: its last stable offset) as the last fetch that answered for it reported
    /// them, so as fresh as that fetch; never negative. `None` when the partition is not
    /// assigned or no fetch has answered for it since it was. Mirrors the Java consumer's
    /// `KafkaConsumer#currentLag` (KIP-695) and its `records-lag` fetch metric.
    pub fn current_lag(&self, topic: &str, partition: i32) -> Option<i64> {
        let a = &self.assigned[self.find(topic, partition)?];
        a.lag_end.map(|end| (end - a.offset).max(0))
    }

    /// Undecodable batches stepped over so far (with `skip_undecodable`).
    pub fn skipped_batches(&self) -> u64 {
        self.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The undecodable batches stepped over since the last call (with `skip_undecodable` and
    /// `keep_skipped`), each once, in the order met; at most 1024 batches and 16 MiB are kept
    /// between calls, and a partition whose next undecodable batch does not fit waits at it.
    pub fn take_skipped(&mut self) -> Vec<SkippedBatch> {
        std::mem::take(&mut self.kept_skipped)
    }

    /// Whether [`Fetcher::take_skipped`] has batches to hand out.
    pub fn has_skipped(&self) -> bool {
        !self.kept_skipped.is_empty()
    }

    /// Positions reset by the [`OffsetReset`] policy after OFFSET_OUT_OF_RANGE, so far.
    pub fn offset_resets(&self) -> u64 {
        self.resets
    }

    /// Offsets jumped over by those resets, so far: a reset forward from a position below the
    /// log start counts the offsets between them (records retention or DeleteRecords removed,
    /// or, with policy latest, records never read). A reset backward counts nothing.
    pub fn reset_skipped_offsets(&self) -> u64 {
        self.reset_skipped
    }

    /// The client this fetcher fetches through.
    pub fn client(&self) -> &KafkaClient {
        &self.client
    }

    /// The settings of this fetcher.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Closes this fetcher's KIP-227 fetch sessions on their brokers, waiting at most
    /// `timeout` for the answers (each send is bounded by the client's request timeout too),
    /// as the Java consumer's `close` does: each broker gets a Fetch with the session's id and
    /// epoch -1 (`FINAL_EPOCH`) that lists no partition, and answers it empty. A session left
    /// open holds one of the broker's `max.incremental.fetch.session.cache.slots` until the
    /// broker evicts it for a newer one. As Java skips a broker it cannot reach, a broker with
    /// no open connection on this fetcher's lane is skipped, not dialled. A later
    /// [`Fetcher::poll`] creates new sessions. Failures are logged at debug level and
    /// otherwise ignored: a session the broker cannot be told about is evicted in time (as is
    /// one a cancelled poll created without learning its id).
    ///
    /// Dropping a fetcher sends the same closes without waiting for them, from tasks on the
    /// runtime its connections were opened on: none is sent if that runtime shuts down first
    /// (or, a current-thread runtime, is never driven again). Call this, or
    /// [`Fetcher::close`], to know they were answered before going on.
    pub async fn close_sessions(&self, timeout: Duration) {
        let closes = self.take_session_closes();
        futures::future::join_all(closes.into_iter().map(|close| close.send(Some(timeout)))).await;
    }

    /// Forgets every open fetch session (the next poll creates new ones) and returns the
    /// requests that close them on their brokers: each session's id, epoch -1
    /// (`FINAL_EPOCH`), no partition listed. A broker with no open connection on this
    /// fetcher's lane is skipped (logged), not dialled.
    fn take_session_closes(&self) -> Vec<SessionClose> {
        let open: Vec<(String, i32)> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions
                .iter_mut()
                .filter_map(|(addr, s)| s.take_for_close().map(|id| (addr.clone(), id)))
                .collect()
        };
        open.into_iter()
            .filter_map(|(addr, session_id)| {
                let Some(conn) = self.client.open_connection(&addr, self.lane) else {
                    tracing::debug!(broker = %addr, session = session_id,
                        "fetch session not closed: no open connection (the broker evicts it in time)");
                    return None;
                };
                let request = FetchRequest::default()
                    .with_replica_id((-1).into())
                    .with_max_wait_ms(0)
                    .with_min_bytes(0)
                    .with_max_bytes(self.config.max_bytes)
                    .with_isolation_level(self.config.isolation_level.wire())
                    .with_session_id(session_id)
                    .with_session_epoch(session::FINAL_EPOCH);
                Some(SessionClose {
                    addr,
                    session_id,
                    conn,
                    request,
                })
            })
            .collect()
    }

    /// [`Fetcher::close_sessions`], then drops the fetcher (its connections with it).
    pub async fn close(self, timeout: Duration) {
        self.close_sessions(timeout).await;
    }

    /// One long-poll fetch round over every assigned partition not backing off (leaders asked
    /// concurrently). Returns the records in offset order per partition and advances the
    /// positions. Retriable failures never escape: the partitions concerned back off and are
    /// tried again by a later poll. When every partition backs off, the poll waits (at most
    /// `max_wait`) and returns no records.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>> {
        let now = Instant::now();
        let n = self.assigned.len();
        let start = if n == 0 { 0 } else { self.rotation % n };
        self.rotation = self.rotation.wrapping_add(1);
        let mut by_leader: Vec<(Arc<str>, Vec<Ask>)> = Vec::new();
        let mut failed = Vec::new();
        for k in 0..n {
            let a = &self.assigned[(start + k) % n];
            if a.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            match self.client.leader_of(&a.topic, a.partition).await {
                Ok(addr) => {
                    let ask = (a.topic.clone(), a.partition, a.offset, a.max_bytes);
                    match by_leader.iter_mut().find(|(l, _)| *l == addr) {
                        Some((_, asks)) => asks.push(ask),
                        None => by_leader.push((addr, vec![ask])),
                    }
                }
                Err(e) if e.is_retriable() => failed.push(((a.topic.clone(), a.partition), e)),
                Err(e) => return Err(e),
            }
        }
        for (key, e) in failed {
            self.back_off(&key, &e);
        }
        if by_leader.is_empty() {
            let wake = self.assigned.iter().filter_map(|a| a.retry_at).min();
            let idle = self.config.max_wait.min(Duration::from_millis(100));
            let delay = match wake {
                Some(t) => t
                    .saturating_duration_since(Instant::now())
                    .min(self.config.max_wait),
                None => idle,
            };
            tokio::time::sleep(delay).await;
            return Ok(Vec::new());
        }
        // One leader (the usual case): awaited in place. `join_all` allocates its futures'
        // slots, over a kilobyte, on every poll.
        let mut outcomes = if by_leader.len() == 1 {
            let (addr, asks) = by_leader.pop().expect("one leader");
            self.fetch_from(addr, asks).await?
        } else {
            let rounds = by_leader
                .into_iter()
                .map(|(addr, asks)| self.fetch_from(addr, asks));
            let mut outcomes = Vec::new();
            for result in futures::future::join_all(rounds).await {
                outcomes.extend(result?);
            }
            outcomes
        };
        // Cancel safety: the resets (which await ListOffsets) run before any position moves
        // past records returned to the caller, so a poll dropped half-way loses no record.
        // (Split only when there is one: the usual poll allocates no second list.)
        let is_reset = |o: &PartitionOutcome| matches!(o, PartitionOutcome::Reset { .. });
        if outcomes.iter().any(is_reset) {
            let (resets, rest): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(is_reset);
            for reset in resets {
                if let PartitionOutcome::Reset {
                    topic,
                    partition,
                    from,
                    spec,
                } = reset
                {
                    self.reset(topic, partition, from, spec).await?;
                }
            }
            outcomes = rest;
        }
        let mut records = Vec::new();
        for outcome in outcomes {
            self.apply(outcome, &mut records);
        }
        Ok(records)
    }

    /// Moves an out-of-range position to where `spec` says, logging and counting the jump.
    async fn reset(
        &mut self,
        topic: Arc<str>,
        partition: i32,
        from: i64,
        spec: OffsetSpec,
    ) -> Result<()> {
        let to = match self.offset_for(&topic, partition, spec).await {
            Ok(to) => to,
            Err(e) if e.is_retriable() => {
                self.back_off(&(topic, partition), &e);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.resets += 1;
        if to > from {
            self.reset_skipped += (to - from) as u64;
            tracing::warn!(%topic, partition, from, to, skipped = to - from, policy = ?self.config.offset_reset,
                "fetch position out of range: reset forward, offsets skipped");
        } else {
            tracing::warn!(%topic, partition, from, to, policy = ?self.config.offset_reset,
                "fetch position out of range: reset backward");
        }
        if let Some(i) = self.find(&topic, partition) {
            self.assigned[i].offset = to;
        }
        Ok(())
    }

    /// Applies one partition's outcome (other than a reset) to its state; records go to
    /// `records`. Never awaits, so a poll is cancelled either before or after all of them.
    fn apply(&mut self, outcome: PartitionOutcome, records: &mut Vec<ConsumerRecord>) {
        match outcome {
            PartitionOutcome::Records {
                topic,
                partition,
                mut next,
                mut batch,
                hole,
                skipped,
                lag_end,
            } => {
                let mut waiting = false;
                if let Some(at) = hole {
                    if self.wait_for_hole(&topic, partition, at) {
                        batch.retain(|r| r.offset < at);
                        next = at;
                        waiting = true;
                    }
                } else {
                    self.holes.remove(&(topic.clone(), partition));
                }
                // Batches past a hole being waited for come again with the next fetch.
                for bad in skipped.into_iter().filter(|b| b.base_offset < next) {
                    let at = bad.base_offset;
                    if !self.keep_skipped(bad) {
                        // Not kept (the caller has not taken the ones before): wait here.
                        batch.retain(|r| r.offset < at);
                        next = at;
                        waiting = true;
                        break;
                    }
                }
                if let Some(i) = self.find(&topic, partition) {
                    let initial = self.client.config().retry_backoff;
                    let a = &mut self.assigned[i];
                    a.offset = next;
                    a.max_bytes = self.config.partition_max_bytes;
                    if lag_end.is_some() {
                        a.lag_end = lag_end;
                    }
                    if waiting && batch.is_empty() {
                        // Nothing to hand out until the hole fills or the kept batches are
                        // taken: back off instead of fetching the same answer at once.
                        a.retry_at = Some(Instant::now() + a.backoff.next_delay());
                    } else {
                        a.retry_at = None;
                        a.backoff.reset(initial);
                    }
                    records.append(&mut batch);
                }
            }
            PartitionOutcome::Reset { .. } => {} // applied by `reset` first
            PartitionOutcome::Retry {
                topic,
                partition,
                error,
            } => self.back_off(&(topic, partition), &error),
            PartitionOutcome::Grow {
                topic,
                partition,
                to,
            } => {
                if let Some(i) = self.find(&topic, partition) {
                    let a = &mut self.assigned[i];
                    tracing::info!(%topic, partition, offset = a.offset, from = a.max_bytes, to,
                        "a batch is larger than the partition fetch limit; fetching it with a larger one");
                    a.max_bytes = to;
                }
            }
            PartitionOutcome::Skip {
                topic,
                partition,
                from,
                to,
                reason,
            } => {
                self.skipped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(%topic, partition, from, to, %reason, "batch stepped over");
                if let Some(i) = self.find(&topic, partition) {
                    self.assigned[i].offset = to;
                }
            }
        }
    }

    /// Counts and logs an undecodable batch stepped over, and with `keep_skipped` keeps it (raw
    /// bytes included) for [`Fetcher::take_skipped`] while fewer than 1024 batches and 16 MiB
    /// are kept.
    /// Returns false (and counts nothing) when `keep_skipped` is on and no room is left: the
    /// caller then stops the partition's position at this batch.
    fn keep_skipped(&mut self, bad: SkippedBatch) -> bool {
        if self.config.keep_skipped {
            let kept: usize = self.kept_skipped.iter().map(|b| b.raw.len()).sum();
            if self.kept_skipped.len() >= MAX_KEPT_SKIPPED
                || kept + bad.raw.len() > MAX_KEPT_SKIPPED_BYTES
            {
                tracing::debug!(topic = %bad.topic, partition = bad.partition, from = bad.base_offset, "undecodable batch waits: the kept ones have not been taken");
                return false;
            }
        }
        self.skipped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(topic = %bad.topic, partition = bad.partition, from = bad.base_offset, to = bad.next_offset, error = %bad.reason, "undecodable batch skipped");
        if self.config.keep_skipped {
            self.kept_skipped.push(bad);
        }
        true
    }

    /// Puts `key` in backoff after a retriable `error` (refreshing its topic's metadata first
    /// when the error says the leader or topic changed).
    fn back_off(&mut self, key: &(Arc<str>, i32), error: &Error) {
        if error.invalidates_metadata() {
            let now = Instant::now();
            let every = self.client.config().retry_backoff;
            let due = self
                .invalidated
                .get(&key.0)
                .is_none_or(|t| now.duration_since(*t) >= every);
            if due {
                self.invalidated.insert(key.0.clone(), now);
                self.client.invalidate_topic(&key.0);
            }
        }
        if let Some(i) = self.find(&key.0, key.1) {
            let a = &mut self.assigned[i];
            let delay = a.backoff.next_delay();
            a.retry_at = Some(Instant::now() + delay);
            tracing::debug!(topic = %key.0, partition = key.1, error = %error, ?delay, "fetch failed; backing off");
        }
    }

    /// Whether to stop before the hole at `at` (true) or accept it (false) under `hole_wait`.
    fn wait_for_hole(&mut self, topic: &Arc<str>, partition: i32, at: i64) -> bool {
        let Some(wait) = self.config.hole_wait else {
            return false;
        };
        let key = (topic.clone(), partition);
        let now = Instant::now();
        let since = match self.holes.get(&key) {
            Some(&(offset, since)) if offset == at => since,
            _ => {
                self.holes.insert(key.clone(), (at, now));
                now
            }
        };
        if now.duration_since(since) < wait {
            return true;
        }
        self.holes.remove(&key);
        tracing::warn!(%topic, partition, offset = at, "offsets missing for {wait:?}; accepted as a hole in the log");
        false
    }

    /// This fetcher's session with the broker at `addr`, for `f` (the lock is held only by `f`).
    fn with_session<T>(&self, addr: &str, f: impl FnOnce(&mut session::Session) -> T) -> T {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up by `&str` first: `entry` would allocate the key on every poll.
        if let Some(session) = sessions.get_mut(addr) {
            return f(session);
        }
        f(sessions.entry(addr.to_string()).or_default())
    }

    /// The Fetch request for `asks`: every one of them, or with a session only those `plan`
    /// lists, plus the partitions it forgets.
    fn request(&self, asks: &[Ask], plan: Option<&session::Plan>) -> FetchRequest {
        let listed: Vec<&Ask> = match plan {
            Some(plan) => plan.listed.iter().map(|&i| &asks[i]).collect(),
            None => asks.iter().collect(),
        };
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (topic, partition, offset, max_bytes) in listed {
            let fp = FetchPartition::default()
                .with_partition(*partition)
                .with_fetch_offset(*offset)
                .with_current_leader_epoch(-1)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(*max_bytes);
            // Keep the rotated order: a topic's partitions are grouped only when adjacent.
            match topics.last_mut() {
                Some(t) if t.topic.0.as_str() == &**topic => t.partitions.push(fp),
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(String::from(&**topic))))
                        .with_partitions(vec![fp]),
                ),
            }
        }
        let mut forgotten: Vec<ForgottenTopic> = Vec::new();
        for (topic, partition) in plan.iter().flat_map(|p| &p.forgotten) {
            match forgotten
                .iter_mut()
                .find(|f| f.topic.0.as_str() == &**topic)
            {
                Some(f) => f.partitions.push(*partition),
                None => forgotten.push(
                    ForgottenTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(String::from(&**topic))))
                        .with_partitions(vec![*partition]),
                ),
            }
        }
        // No session: id 0, epoch -1 (KIP-227's sessionless full fetch, as before v7).
        let (session_id, epoch) = plan.map_or((0, -1), |p| (p.session_id, p.epoch));
        FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(self.config.max_wait.as_millis().min(i32::MAX as u128) as i32)
            .with_min_bytes(self.config.min_bytes)
            .with_max_bytes(self.config.max_bytes)
            .with_isolation_level(self.config.isolation_level.wire())
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .with_topics(topics)
            .with_forgotten_topics_data(forgotten)
    }

    /// One fetch from the broker at `addr` of `asks` (every partition this round fetches from
    /// it; with a session, the request lists only those that changed).
    async fn fetch_from(&self, addr: Arc<str>, asks: Vec<Ask>) -> Result<Vec<PartitionOutcome>> {
        let retry_all = |e: &Error| {
            asks.iter()
                .map(|(topic, partition, _, _)| PartitionOutcome::Retry {
                    topic: topic.clone(),
                    partition: *partition,
                    error: e.clone(),
                })
                .collect()
        };
        let conn = match self.client.connection(&addr, self.lane).await {
            Ok(c) => c,
            Err(e) => {
                self.with_session(&addr, |s| s.failed(&addr, "no connection to the broker"));
                return if e.is_retriable() {
                    Ok(retry_all(&e))
                } else {
                    Err(e)
                };
            }
        };
        let version = conn.version::<FetchRequest>()?;
        if self.config.isolation_level == IsolationLevel::ReadCommitted && version < 4 {
            // Fetch v0-3 has no isolation level: the broker would hand out aborted records.
            return Err(Error::InvalidArgument(format!(
                "read_committed needs Fetch v4+ (Kafka 0.11+); broker {addr} offers less"
            )));
        }
        let plan = (self.config.sessions && version >= session::MIN_VERSION)
            .then(|| self.with_session(&addr, |s| s.plan(&addr, &asks)));
        let req = self.request(&asks, plan.as_ref());
        let timeout = self.client.config().request_timeout + self.config.max_wait;
        let resp = match conn.send_timeout(&req, timeout).await {
            Ok(r) => r,
            Err(e) => {
                if plan.is_some() {
                    self.with_session(&addr, |s| s.failed(&addr, "the fetch failed"));
                }
                if !e.is_retriable() {
                    return Err(e);
                }
                tracing::debug!(broker = %addr, error = %e, "fetch failed; will retry");
                return Ok(retry_all(&e));
            }
        };
        if let Some(plan) = &plan {
            let answered = self.with_session(&addr, |s| {
                s.answered(&addr, plan, resp.error_code, resp.session_id)
            });
            if answered == session::Answered::Refused {
                // Nothing fetched, no position moves: the next request is full, at once.
                return Ok(Vec::new());
            }
        }
        match check_code(resp.error_code, &addr, ApiKey::Fetch, String::new) {
            Err(e) if e.is_retriable() => return Ok(retry_all(&e)),
            other => other?,
        }
        self.outcomes(&addr, &asks, resp)
    }

    fn outcomes(
        &self,
        addr: &str,
        asks: &[Ask],
        resp: FetchResponse,
    ) -> Result<Vec<PartitionOutcome>> {
        let mut out = Vec::new();
        for t in resp.responses {
            for p in t.partitions {
                let Some((topic, partition, offset, max_bytes)) = asks
                    .iter()
                    .find(|(topic, partition, _, _)| {
                        &**topic == t.topic.0.as_str() && *partition == p.partition_index
                    })
                    .cloned()
                else {
                    continue; // a partition we did not ask for
                };
                let context = || format!(" {topic}/{partition} at offset {offset}");
                if let Err(e) = check_code(p.error_code, addr, ApiKey::Fetch, context) {
                    match e.recovery() {
                        Recovery::ResetOffset => {
                            let spec = match self.config.offset_reset {
                                OffsetReset::Earliest => OffsetSpec::Earliest,
                                OffsetReset::Latest => OffsetSpec::Latest,
                                OffsetReset::Error => return Err(e),
                            };
                            out.push(PartitionOutcome::Reset {
                                topic,
                                partition,
                                from: offset,
                                spec,
                            });
                        }
                        Recovery::RefreshMetadata | Recovery::Backoff => {
                            out.push(PartitionOutcome::Retry {
                                topic,
                                partition,
                                error: e,
                            })
                        }
                        _ => return Err(e),
                    }
                    continue;
                }
                let committed = read_committed_view(self.config.isolation_level, &p);
                // The Java consumer's lag: to the last stable offset when reading committed,
                // else to the high watermark; -1 (unknown to the broker) is not kept.
                let lag_end = Some(match self.config.isolation_level {
                    IsolationLevel::ReadCommitted => p.last_stable_offset,
                    IsolationLevel::ReadUncommitted => p.high_watermark,
                })
                .filter(|end| *end >= 0);
                let data = p.records.unwrap_or_default();
                let to_error = |e: &RecordsError| match e {
                    RecordsError::Malformed { .. } => Error::Malformed {
                        broker: addr.to_string(),
                        what: format!(
                            "record batch of {topic}/{partition} fetched at offset {offset}"
                        ),
                        reason: e.to_string(),
                    },
                };

                let decoded = decode_fetched(
                    &data,
                    &topic,
                    partition,
                    offset,
                    self.config.max_inflated_bytes,
                    committed.as_ref(),
                )
                .map_err(|e| to_error(&e))?;
                if decoded.aborted_batches > 0 {
                    tracing::debug!(%topic, partition, batches = decoded.aborted_batches, "aborted transactional batches dropped (read_committed)");
                }
                if let Some(bad) = decoded.undecodable.first() {
                    if !self.config.skip_undecodable {
                        return Err(to_error(&bad.error));
                    }
                }
                if decoded.next_offset.is_none() && !data.is_empty() {
                    out.push(self.no_complete_batch(
                        addr,
                        &data,
                        (topic, partition, offset, max_bytes),
                    )?);
                    continue;
                }
                let skipped = decoded
                    .undecodable
                    .into_iter()
                    .map(|bad| SkippedBatch {
                        topic: topic.clone(),
                        partition,
                        base_offset: bad.base_offset,
                        next_offset: bad.next_offset,
                        reason: bad.error.to_string(),
                        raw: bad.raw,
                    })
                    .collect();
                let next = decoded.next_offset.map_or(offset, |n| n.max(offset));
                out.push(PartitionOutcome::Records {
                    topic,
                    partition,
                    next,
                    batch: decoded.records,
                    hole: decoded.first_gap,
                    skipped,
                    lag_end,
                });
            }
        }
        Ok(out)
    }

    /// A partition answered bytes without one complete batch: the first batch is larger than
    /// the limit it was fetched with. Grow the limit to the batch's size (up to `max_bytes`);
    /// past that, step over it (with `skip_undecodable`, when its header says where it ends)
    /// or fail with [`Error::FetchTooSmall`].
    fn no_complete_batch(&self, addr: &str, data: &[u8], ask: Ask) -> Result<PartitionOutcome> {
        let (topic, partition, offset, limit) = ask;
        // The batch header: base offset (8), length (4), ..., last offset delta at 23..27.
        let needed = data
            .get(8..12)
            .map(|b| 12i64 + i32::from_be_bytes([b[0], b[1], b[2], b[3]]).max(0) as i64);
        let ceiling = self.config.max_bytes.max(self.config.partition_max_bytes);
        let grown = match needed {
            // The batch fits the limit, yet the broker sent only part of it: not what a Kafka
            // broker does (it returns the first batch whole). Back off and fetch again, loudly.
            Some(n) if n <= limit as i64 => {
                tracing::warn!(%topic, partition, offset, got = data.len(), batch = n, limit,
                    "the broker returned part of a batch that fits the fetch limit; fetching again after a backoff");
                return Ok(PartitionOutcome::Retry {
                    topic: topic.clone(),
                    partition,
                    error: Error::Malformed {
                        broker: addr.to_string(),
                        what: format!("fetch of {topic}/{partition} at offset {offset}"),
                        reason: format!(
                            "{} bytes of a {n}-byte batch within a {limit}-byte limit",
                            data.len()
                        ),
                    },
                });
            }
            Some(n) if n <= ceiling as i64 => Some(n as i32),
            Some(_) => None,
            // Not even a batch header: ask for twice as much.
            None => Some(limit.saturating_mul(2).min(ceiling)).filter(|g| *g > limit),
        };
        if let Some(to) = grown {
            return Ok(PartitionOutcome::Grow {
                topic,
                partition,
                to,
            });
        }
        // Where it ends: a v2 batch's header says (base offset + last offset delta + 1); an old
        // message or wrapper (magic 0/1) carries its last offset, so it ends one past it.
        let end = data.get(0..8).zip(data.get(16)).map(|(base, &magic)| {
            let base = i64::from_be_bytes(base.try_into().expect("8 bytes"));
            let delta = match (magic, data.get(23..27)) {
                (2, Some(d)) => i32::from_be_bytes(d.try_into().expect("4 bytes")).max(0),
                _ => 0,
            };
            base.saturating_add(delta as i64).saturating_add(1)
        });
        match end {
            Some(to) if self.config.skip_undecodable && to > offset => Ok(PartitionOutcome::Skip {
                topic,
                partition,
                from: offset,
                to,
                reason: format!(
                    "batch of {} bytes exceeds the fetch limit of {ceiling} bytes",
                    needed.unwrap_or(0)
                ),
            }),
            _ => Err(Error::FetchTooSmall {
                broker: addr.to_string(),
                topic: topic.to_string(),
                partition,
                offset,
                limit,
                batch: needed.unwrap_or(-1),
            }),
        }
    }
}

/// What the decoder needs from a partition of a Fetch response to read it committed; `None`
/// for read_uncommitted.
fn read_committed_view(
    level: IsolationLevel,
    p: &kafka_protocol::messages::fetch_response::PartitionData,
) -> Option<ReadCommitted> {
    (level == IsolationLevel::ReadCommitted).then(|| ReadCommitted {
        aborted: p
            .aborted_transactions
            .iter()
            .flatten()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect(),
        last_stable_offset: p.last_stable_offset,
    })
}

enum PartitionOutcome {
    /// Records (possibly none) and the next position.
    Records {
        topic: Arc<str>,
        partition: i32,
        next: i64,
        batch: Vec<ConsumerRecord>,
        /// The first missing offset, if the response skipped some.
        hole: Option<i64>,
        /// Undecodable batches stepped over (with `skip_undecodable`).
        skipped: Vec<SkippedBatch>,
        /// The high watermark (read_committed: last stable offset) the broker answered with.
        lag_end: Option<i64>,
    },
    /// Out of range: move from `from` to the offset `spec` names.
    Reset {
        topic: Arc<str>,
        partition: i32,
        from: i64,
        spec: OffsetSpec,
    },
    /// A retriable failure: back off (refreshing metadata if it says so).
    Retry {
        topic: Arc<str>,
        partition: i32,
        error: Error,
    },
    /// No complete batch fit: fetch again with this per-partition limit.
    Grow {
        topic: Arc<str>,
        partition: i32,
        to: i32,
    },
    /// A batch that cannot be fetched whole is stepped over (counted).
    Skip {
        topic: Arc<str>,
        partition: i32,
        from: i64,
        to: i64,
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};

    /// Byte limits with which nothing could be fetched used to be accepted by `Fetcher::new`
    /// and sent to the broker on every poll; now the constructor refuses them, naming the
    /// setting and the value.
    #[test]
    fn fetcher_new_refuses_bad_settings_naming_them() {
        let client = KafkaClient::unconnected(crate::ClientConfig::new("127.0.0.1:9"));
        let cases = [
            (
                FetchConfig::default().with_min_bytes(-1),
                "FetchConfig::min_bytes",
                "got -1",
            ),
            (
                FetchConfig::default().with_max_bytes(0),
                "FetchConfig::max_bytes",
                "got 0",
            ),
            (
                FetchConfig::default().with_partition_max_bytes(-5),
                "FetchConfig::partition_max_bytes",
                "got -5",
            ),
            (
                FetchConfig::default().with_max_inflated_bytes(0),
                "FetchConfig::max_inflated_bytes",
                "got 0",
            ),
        ];
        for (config, setting, value) in cases {
            match Fetcher::new(client.clone(), config) {
                Err(Error::InvalidArgument(m)) => {
                    assert!(m.contains(setting) && m.contains(value), "{m}")
                }
                Err(e) => panic!("{setting}: wrong error {e}"),
                Ok(_) => panic!("{setting}: accepted"),
            }
        }
        assert!(Fetcher::new(client, FetchConfig::default()).is_ok());
    }
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::ProducerId;
    use kafka_protocol::protocol::{Decodable, Encodable};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// One batch at `offset` of producer `pid` (-1: not idempotent), as Apache Kafka stores a
    /// plain, transactional or control (abort marker) batch.
    fn batch(offset: i64, value: &str, pid: i64, transactional: bool, control: bool) -> Bytes {
        let record = Record {
            transactional,
            control,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: if pid < 0 { -1 } else { 0 },
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: if pid < 0 { -1 } else { 0 },
            timestamp: 1000,
            key: control.then(|| Bytes::from_static(&[0, 0, 0, 0])), // v0 ABORT
            value: Some(if control {
                Bytes::from_static(&[0, 0, 0, 0, 0, 0])
            } else {
                Bytes::copy_from_slice(value.as_bytes())
            }),
            headers: Default::default(),
            delete_horizon: false,
        };
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
        buf.freeze()
    }

    /// The Fetch response (v11, through its wire encoding) Apache Kafka sends a read_committed
    /// consumer after "produce c1; begin, produce a1, abort; produce c2".
    fn aborted_response() -> FetchResponse {
        let records: Bytes = [
            batch(0, "c1", -1, false, false),
            batch(1, "a1", 7, true, false),
            batch(2, "", 7, true, true),
            batch(3, "c2", -1, false, false),
        ]
        .concat()
        .into();
        let partition = PartitionData::default()
            .with_partition_index(0)
            .with_high_watermark(4)
            .with_last_stable_offset(4)
            .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                .with_producer_id(ProducerId(7))
                .with_first_offset(1)]))
            .with_records(Some(records));
        let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![partition])]);
        let mut wire = BytesMut::new();
        resp.encode(&mut wire, 11).unwrap();
        FetchResponse::decode(&mut wire.freeze(), 11).unwrap()
    }

    fn values(level: IsolationLevel) -> Vec<String> {
        let resp = aborted_response();
        let p = &resp.responses[0].partitions[0];
        let committed = read_committed_view(level, p);
        let data = p.records.clone().unwrap();
        decode_fetched(&data, &Arc::from("t"), 0, 0, 1 << 20, committed.as_ref())
            .unwrap()
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
            .collect()
    }

    #[test]
    fn a_read_committed_fetch_drops_the_aborted_transaction_of_the_response() {
        assert_eq!(values(IsolationLevel::ReadCommitted), ["c1", "c2"]);
        assert_eq!(values(IsolationLevel::ReadUncommitted), ["c1", "a1", "c2"]);
    }

    #[test]
    fn the_isolation_level_is_the_fetch_field() {
        assert_eq!(IsolationLevel::default(), IsolationLevel::ReadUncommitted);
        assert_eq!(IsolationLevel::ReadUncommitted.wire(), 0);
        assert_eq!(IsolationLevel::ReadCommitted.wire(), 1);
    }
}
