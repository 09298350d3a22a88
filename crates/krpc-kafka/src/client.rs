//! The cluster client: connections per broker and lane, and the metadata cache.

use std::sync::{Arc, Mutex, RwLock};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};

use crate::backoff::Backoff;
use crate::config::ClientConfig;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::fast_map::FastMap;
use crate::metadata::{ClusterMetadata, TopicInfo};

/// Which connection to a broker a request uses. Kafka answers the requests of one connection in
/// order, so a long-poll fetch must never share a connection with a produce or a heartbeat, and
/// one group member's held JoinGroup must never delay another member's heartbeat: each fetcher
/// and each group member has lanes of its own (see [`Lane::unique_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) enum Lane {
    /// Metadata, produce, admin requests.
    Default,
    /// Long-poll fetches of one fetcher.
    Fetch(u64),
    /// Consumer-group coordination (join, sync, heartbeat, commit) of one member.
    Coordinator(u64),
}

impl Lane {
    /// A process-wide unique id for the lanes of a new fetcher or group member.
    pub fn unique_id() -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

struct Inner {
    config: ClientConfig,
    /// Per lane, per broker address: looked up by `&str` on every request, with no key to
    /// allocate.
    slots: Mutex<FastMap<Lane, FastMap<String, Slot>>>,
    metadata: RwLock<ClusterMetadata>,
}

/// A handle on one Kafka cluster; cheap to clone, shared by producers and fetchers.
/// # Examples
///
/// ```no_run
/// use krpc_kafka::{KafkaClient, ClientConfig, NewTopic};
///
/// # async fn example() -> krpc_kafka::Result<()> {
/// let client = KafkaClient::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// client.create_topics(&[NewTopic::new("events", 3)], true).await?;
/// assert_eq!(client.partition_count("events").await?, 3);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct KafkaClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KafkaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClient")
            .field("bootstrap", &self.inner.config.bootstrap)
            .finish()
    }
}

impl KafkaClient {
    /// Connects to the first bootstrap broker that answers and loads the broker list.
    ///
    /// Fails with [`Error::BootstrapUnreachable`] naming the addresses once the connect timeout
    /// has elapsed.
    ///
    /// Fails with [`Error::InvalidArgument`] naming the setting, before dialling, when `config`
    /// does not pass [`ClientConfig::validate`].
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        config.validate()?;
        let client = Self::unconnected(config);
        client.refresh_metadata(&[]).await?;
        Ok(client)
    }

    /// A client with no connection and no metadata yet.
    pub(crate) fn unconnected(config: ClientConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                slots: Mutex::new(FastMap::default()),
                metadata: RwLock::new(ClusterMetadata::default()),
            }),
        }
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A connection to `addr` on `lane`, dialled (with backoff, within the connect timeout) if
    /// there is none or the cached one broke.
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    pub(crate) async fn connection(&self, addr: &str, lane: Lane) -> Result<Arc<Connection>> {
        let slot = self.slot(addr, lane);
        // The common case, a connection in place and no dial under way, without an await.
        if let Ok(guard) = slot.try_lock() {
            if let Some(conn) = self.reusable(guard.as_ref()) {
                return Ok(conn);
            }
        }
        let mut guard = slot.lock().await;
        if let Some(conn) = self.reusable(guard.as_ref()) {
            return Ok(conn);
        }
        *guard = None;
        // Boxed: the dial (TCP, TLS, SASL, ApiVersions) would otherwise size the future of
        // every request that asks for a connection, a produce request's included, at about
        // 1.6 KB more.
        Box::pin(self.dial(addr, lane, &mut guard)).await
    }

    /// The connection to `addr` on `lane` if one is open and may carry another request (see
    /// [`KafkaClient::connection`]); never dials.
    pub(crate) fn open_connection(&self, addr: &str, lane: Lane) -> Option<Arc<Connection>> {
        let slot = {
            let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.get(&lane)?.get(addr)?.clone()
        };
        let guard = slot.try_lock().ok()?;
        self.reusable(guard.as_ref())
    }

    /// The slot of `addr` on `lane`, created empty if there is none.
    fn slot(&self, addr: &str, lane: Lane) -> Slot {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        let of_lane = slots.entry(lane).or_default();
        match of_lane.get(addr) {
            Some(slot) => slot.clone(),
            None => of_lane.entry(addr.to_string()).or_default().clone(),
        }
    }

    /// Dials `addr` for `lane` into `slot` (its lock held), with backoff within the connect
    /// timeout.
    async fn dial(
        &self,
        addr: &str,
        lane: Lane,
        slot: &mut Option<Arc<Connection>>,
    ) -> Result<Arc<Connection>> {
        let cfg = &self.inner.config;
        let mut backoff = Backoff::new(
            cfg.reconnect_backoff,
            cfg.reconnect_backoff_max,
            cfg.connect_timeout,
        );
        loop {
            let attempt_cfg = cfg.clone().with_connect_timeout(
                backoff
                    .remaining()
                    .max(std::time::Duration::from_millis(10)),
            );
            match Connection::connect(addr, &attempt_cfg).await {
                Ok(conn) => {
                    let conn = Arc::new(conn);
                    *slot = Some(conn.clone());
                    tracing::debug!(broker = addr, ?lane, "connected");
                    return Ok(conn);
                }
                Err(e) if e.is_retriable() => {
                    tracing::debug!(broker = addr, error = %e, "connect failed, retrying");
                    if !backoff.wait().await {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The cached connection if it may carry another request: not broken, and not idle past
    /// `connections_max_idle` (the broker may have closed it; it is retired instead).
    fn reusable(&self, cached: Option<&Arc<Connection>>) -> Option<Arc<Connection>> {
        let conn = cached?;
        let idle = conn.idle_unless_broken()?;
        let max_idle = self.inner.config.connections_max_idle;
        if idle >= max_idle {
            tracing::debug!(
                broker = conn.broker(),
                ?idle,
                "idle connection retired before reuse"
            );
            conn.retire(format!(
                "retired after {idle:?} idle (connections_max_idle {max_idle:?})"
            ));
            return None;
        }
        Some(conn.clone())
    }

    /// Drops this client's connections on `lane` (their owner is gone).
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    pub(crate) fn close_lane(&self, lane: Lane) {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.remove(&lane);
    }

    /// A connection to any broker: known brokers first, then the bootstrap list.
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    pub(crate) async fn any_connection(&self) -> Result<Arc<Connection>> {
        let cfg = &self.inner.config;
        let mut addrs: Vec<String> = self.metadata_snapshot().brokers.values().cloned().collect();
        addrs.sort();
        for addr in &cfg.bootstrap {
            if !addrs.contains(addr) {
                addrs.push(addr.clone());
            }
        }
        let mut backoff = Backoff::new(
            cfg.reconnect_backoff,
            cfg.reconnect_backoff_max,
            cfg.connect_timeout,
        );
        let mut last = String::from("no address");
        loop {
            for addr in &addrs {
                match self.connection_once(addr).await {
                    Ok(conn) => return Ok(conn),
                    Err(e) if e.ends_connect_attempts() => return Err(e),
                    Err(e) => last = e.to_string(),
                }
            }
            if !backoff.wait().await {
                return Err(Error::BootstrapUnreachable {
                    addrs: addrs.join(","),
                    timeout: cfg.connect_timeout,
                    reason: last,
                });
            }
        }
    }

    /// One attempt at a default-lane connection (used while cycling through brokers).
    async fn connection_once(&self, addr: &str) -> Result<Arc<Connection>> {
        let slot = self.slot(addr, Lane::Default);
        let mut guard = slot.lock().await;
        if let Some(conn) = self.reusable(guard.as_ref()) {
            return Ok(conn);
        }
        *guard = None;
        let cfg = &self.inner.config;
        let conn = Arc::new(Connection::connect(addr, cfg).await?);
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Sends a request to any broker, retrying on another connection if the first breaks.
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    pub(crate) async fn send_any<R: Request + Clone>(&self, req: &R) -> Result<R::Response> {
        let mut backoff = self.backoff();
        loop {
            let conn = self.any_connection().await?;
            match conn.send(req).await {
                Err(e) if e.is_retriable() && backoff.wait().await => continue,
                other => return other,
            }
        }
    }

    /// A backoff with this client's retry settings and its request timeout as budget.
    pub fn backoff(&self) -> Backoff {
        let cfg = &self.inner.config;
        Backoff::new(
            cfg.retry_backoff,
            cfg.retry_backoff_max,
            cfg.request_timeout,
        )
    }

    /// A copy of the cached metadata.
    pub fn metadata_snapshot(&self) -> ClusterMetadata {
        self.inner
            .metadata
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fetches metadata for `topics` (all topics when empty) and merges it into the cache.
    pub async fn refresh_metadata(&self, topics: &[&str]) -> Result<()> {
        let topics = if topics.is_empty() {
            None
        } else {
            Some(
                topics
                    .iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
                    })
                    .collect(),
            )
        };
        let req = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(false);
        // Boxed: a metadata round trip is a large future, and the lookups that may need one
        // (`topic`, `partition_count`, `leader_addr`) sit inside every `Producer::send`; inline,
        // it would grow each send's future, and with it every task awaiting a send (an RPC
        // call in flight), by about a kilobyte, for a path taken once per `metadata_max_age`.
        let resp = Box::pin(self.send_any(&req)).await?;
        self.inner
            .metadata
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .merge(&resp);
        Ok(())
    }

    /// Forgets what is cached for `topic`, so the next lookup asks the cluster.
    pub fn invalidate_topic(&self, topic: &str) {
        self.inner
            .metadata
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .forget_topic(topic);
    }

    /// The partitions of `topic`, from the cache or (if absent or stale) the cluster.
    pub async fn topic(&self, topic: &str) -> Result<TopicInfo> {
        if let Some(t) = self.fresh_cached(|md| md.topics.get(topic).cloned()) {
            return Ok(t);
        }
        self.refresh_metadata(&[topic]).await?;
        let md = self
            .inner
            .metadata
            .read()
            .unwrap_or_else(|p| p.into_inner());
        md.topics
            .get(topic)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic {
                topic: topic.to_string(),
            })
    }

    /// `f` of the cached metadata, under its read lock, if the cache is younger than
    /// `metadata_max_age` (Java's `metadata.max.age.ms`); `None` otherwise.
    fn fresh_cached<T>(&self, f: impl FnOnce(&ClusterMetadata) -> Option<T>) -> Option<T> {
        let md = self
            .inner
            .metadata
            .read()
            .unwrap_or_else(|p| p.into_inner());
        if md.updated.elapsed() < self.inner.config.metadata_max_age {
            f(&md)
        } else {
            None
        }
    }

    /// The number of partitions of `topic`.
    pub async fn partition_count(&self, topic: &str) -> Result<i32> {
        // Every keyed or round-robin `Producer::send` asks: answered from the leader index
        // while fresh, without copying the topic's `TopicInfo` as `topic` does.
        if let Some(count) = self.fresh_cached(|md| md.partition_count(topic)) {
            return Ok(count as i32);
        }
        Ok(self.topic(topic).await?.partitions.len() as i32)
    }

    /// A connection on `lane` to the leader of `topic`/`partition`.
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    #[cfg_attr(not(feature = "unstable-internals"), allow(dead_code))]
    pub(crate) async fn leader(
        &self,
        topic: &str,
        partition: i32,
        lane: Lane,
    ) -> Result<Arc<Connection>> {
        let addr = self.leader_addr(topic, partition).await?;
        self.connection(&addr, lane).await
    }

    /// The address of the leader of `topic`/`partition`, refreshing metadata once if unknown.
    pub async fn leader_addr(&self, topic: &str, partition: i32) -> Result<String> {
        Ok(self.leader_of(topic, partition).await?.to_string())
    }

    /// [`KafkaClient::leader_addr`], the address shared with the metadata cache (no copy):
    /// what the request path (the fetcher, once per partition per poll) asks.
    pub(crate) async fn leader_of(&self, topic: &str, partition: i32) -> Result<Arc<str>> {
        if let Some(addr) = self.fresh_cached(|md| md.leader(topic, partition).cloned()) {
            return Ok(addr);
        }
        self.refresh_metadata(&[topic]).await?;
        if let Some(addr) = self
            .inner
            .metadata
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .leader(topic, partition)
        {
            return Ok(addr.clone());
        }
        self.topic(topic).await?;
        Err(Error::NoLeader {
            topic: topic.to_string(),
            partition,
        })
    }

    /// What the cached metadata says of the leader of `topic`/`partition`, without asking
    /// the cluster (the producer's sender refreshes in the background instead of waiting).
    pub(crate) fn cached_leader(&self, topic: &str, partition: i32) -> CachedLeader {
        let md = self
            .inner
            .metadata
            .read()
            .unwrap_or_else(|p| p.into_inner());
        match md.leader(topic, partition) {
            Some(addr) => CachedLeader::Leader(addr.clone()),
            None if md.knows_topic(topic) => CachedLeader::NoLeader,
            None => CachedLeader::UnknownTopic,
        }
    }

    /// A connection to the controller (any broker if none is announced).
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    pub(crate) async fn controller(&self) -> Result<Arc<Connection>> {
        let md = self.metadata_snapshot();
        match md.controller.and_then(|id| md.brokers.get(&id)) {
            Some(addr) => self.connection(addr, Lane::Default).await,
            None => self.any_connection().await,
        }
    }
}

/// The leader of a partition as the cached metadata says ([`KafkaClient::cached_leader`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CachedLeader {
    /// The leader's `host:port` (shared with the metadata cache).
    Leader(Arc<str>),
    /// The topic is known but this partition has no leader (or does not exist).
    NoLeader,
    /// The topic is not in the cached metadata.
    UnknownTopic,
}
