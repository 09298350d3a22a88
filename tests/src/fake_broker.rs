//! A scriptable in-process Kafka broker, for tests of one component under faults the real broker
//! cannot be made to show (a leader that never settles, a half-open connection, a log whose start
//! moved, a batch larger than the fetch limit, one partition filling every response).
//!
//! It listens on `127.0.0.1:0` as broker 0 of a one-broker cluster and answers ApiVersions,
//! Metadata, Fetch, ListOffsets, Produce, FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! OffsetFetch, OffsetCommit and LeaveGroup, decoding requests and encoding responses with the
//! `kafka-protocol` crate at the version the client asked. Tests script it:
//! - [`FakeBroker::topic`] declares topics (this broker leads every partition);
//! - [`FakeBroker::on_fetch`] and [`FakeBroker::on_list_offsets`] answer per partition;
//! - [`FakeBroker::fail`] makes every answer of one API carry an error code (per partition
//!   where the API has partitions);
//! - [`FakeBroker::commit`] presets a group's committed offset;
//! - [`FakeBroker::go_silent`] keeps accepting connections and reading requests but answers
//!   none (a half-open broker); [`FakeBroker::stop_reading`] stops reading the sockets (a peer
//!   whose buffers fill); [`FakeBroker::drop_connections`] closes every open one (a broker
//!   closing idle connections);
//! - [`FakeBroker::count`] and [`FakeBroker::dials`] count requests per API and connections;
//!   [`FakeBroker::fetches`] lists every Fetch received (session id, epoch, partitions listed
//!   and forgotten);
//! - [`FakeBroker::grant_fetch_sessions`] turns on KIP-227 fetch sessions (off by default: then
//!   every Fetch is answered full with session id 0, as nisshi does), and
//!   [`FakeBroker::fail_next_incremental_fetch`] refuses one incremental fetch with a
//!   top-level error code.
//!
//! The group coordinator knows one member at a time: JoinGroup makes the joiner leader of a new
//! generation, SyncGroup hands it back its own assignment. It is for tests of one consumer, not
//! of group protocol behaviour, which tests run against the real broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use krpc_kafka::records::encode_batch;
use krpc_kafka::{Codec, ProducerRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One partition of a Fetch request, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchAsk {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The offset asked for.
    pub offset: i64,
    /// The per-partition byte limit asked for.
    pub max_bytes: i32,
}

/// One Fetch request as the broker received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSeen {
    /// The request's `session_id`.
    pub session_id: i32,
    /// The request's `session_epoch` (-1: no session, 0: create one, 1..: incremental).
    pub epoch: i32,
    /// The partitions the request lists, in request order.
    pub listed: Vec<FetchAsk>,
    /// The partitions in its `forgotten_topics_data`.
    pub forgotten: Vec<(String, i32)>,
}

/// A fetch session the broker keeps (KIP-227).
struct FakeSession {
    /// The epoch the next incremental request must carry.
    next_epoch: i32,
    /// The session's partitions with the offset and limit last asked for.
    partitions: Vec<FetchAsk>,
}

/// The answer for one partition of a Fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchAnswer {
    /// Error code (0: none).
    pub error_code: i16,
    /// Record batches (may end in a partial batch, as a real broker's may).
    pub records: Bytes,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset (`None`: the high watermark, as with no transaction open).
    pub last_stable_offset: Option<i64>,
    /// Log start offset.
    pub log_start: i64,
}

impl FetchAnswer {
    /// An answer with only an error code.
    pub fn error(code: i16) -> Self {
        Self {
            error_code: code,
            ..Self::default()
        }
    }

    /// An answer with these record batches.
    pub fn records(records: Bytes) -> Self {
        Self {
            records,
            ..Self::default()
        }
    }
}

/// Answers the partitions of one Fetch request (called with them in request order; returns
/// one answer per ask, in the same order).
pub type FetchScript = Box<dyn FnMut(&[FetchAsk]) -> Vec<FetchAnswer> + Send>;
/// Answers one partition of a ListOffsets request: (topic, partition, timestamp: -2 earliest,
/// -1 latest, isolation level: 0 read uncommitted, 1 read committed) to (error code, offset).
pub type ListOffsetsScript = Box<dyn FnMut(&str, i32, i64, i8) -> (i16, i64) + Send>;

#[derive(Default)]
struct Script {
    topics: Vec<(String, i32)>,
    fetch: Option<FetchScript>,
    list_offsets: Option<ListOffsetsScript>,
    /// Error code for every answer of an API (per partition where it has partitions).
    errors: HashMap<i16, i16>,
    committed: HashMap<(String, String, i32), i64>,
    produced: HashMap<(String, i32), i64>,
    generation: i32,
    assignment: Bytes,
    silent: bool,
    paused: bool,
    counts: HashMap<i16, usize>,
    dials: usize,
    /// Grant fetch sessions (KIP-227).
    sessions: bool,
    /// The last session id granted.
    last_session: i32,
    session_table: HashMap<i32, FakeSession>,
    /// Top-level error code for the next incremental fetch.
    session_error: Option<i16>,
    fetches: Vec<FetchSeen>,
}

/// A scriptable fake broker (see the module documentation). Dropping it stops it.
pub struct FakeBroker {
    addr: String,
    port: i32,
    script: Arc<Mutex<Script>>,
    closer: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.accept.abort();
        self.closer.send_modify(|n| *n += 1);
    }
}

/// The API versions the fake broker announces (it answers at whichever the client picks).
const VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 9),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::ApiVersions, 0, 3),
];

fn lock(script: &Mutex<Script>) -> MutexGuard<'_, Script> {
    script.lock().unwrap_or_else(|p| p.into_inner())
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl FakeBroker {
    /// Starts a fake broker on `127.0.0.1:0` with no topics.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let local = listener.local_addr().expect("local addr");
        let script = Arc::new(Mutex::new(Script::default()));
        let (closer, _) = watch::channel(0u64);
        let accept = {
            let script = script.clone();
            let closer = closer.clone();
            let port = local.port() as i32;
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    lock(&script).dials += 1;
                    let _ = stream.set_nodelay(true);
                    let script = script.clone();
                    let mut closed = closer.subscribe();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = serve(stream, script, port) => {}
                            _ = closed.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            addr: local.to_string(),
            port: local.port() as i32,
            script,
            closer,
            accept,
        }
    }

    /// `host:port` to use as bootstrap.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Declares `topic` with `partitions` partitions, all led by this broker.
    pub fn topic(&self, topic: &str, partitions: i32) -> &Self {
        lock(&self.script)
            .topics
            .push((topic.to_string(), partitions));
        self
    }

    /// Answers every Fetch with `script` (default: no records, no error).
    pub fn on_fetch(&self, script: impl FnMut(&[FetchAsk]) -> Vec<FetchAnswer> + Send + 'static) {
        lock(&self.script).fetch = Some(Box::new(script));
    }

    /// Answers every ListOffsets partition with `script` (default: 0 for every spec).
    pub fn on_list_offsets(
        &self,
        script: impl FnMut(&str, i32, i64, i8) -> (i16, i64) + Send + 'static,
    ) {
        lock(&self.script).list_offsets = Some(Box::new(script));
    }

    /// Every answer of `api` carries `code` (per partition where it has partitions); 0 clears.
    pub fn fail(&self, api: ApiKey, code: i16) {
        lock(&self.script).errors.insert(api as i16, code);
    }

    /// Presets `group`'s committed offset of `topic`/`partition`.
    pub fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        lock(&self.script)
            .committed
            .insert((group.to_string(), topic.to_string(), partition), offset);
    }

    /// `group`'s committed offset of `topic`/`partition`, if any.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        lock(&self.script)
            .committed
            .get(&(group.to_string(), topic.to_string(), partition))
            .copied()
    }

    /// While `on`, requests are read and counted but never answered (connections stay open).
    pub fn go_silent(&self, on: bool) {
        lock(&self.script).silent = on;
    }

    /// While `on`, open connections are not read from: the client's writes back up once the
    /// socket buffers are full.
    pub fn stop_reading(&self, on: bool) {
        lock(&self.script).paused = on;
    }

    /// Closes every open connection (new ones are accepted as before).
    pub fn drop_connections(&self) {
        self.closer.send_modify(|n| *n += 1);
    }

    /// Requests of `api` received so far (answered or not).
    pub fn count(&self, api: ApiKey) -> usize {
        lock(&self.script)
            .counts
            .get(&(api as i16))
            .copied()
            .unwrap_or(0)
    }

    /// Connections accepted so far.
    pub fn dials(&self) -> usize {
        lock(&self.script).dials
    }

    /// While `on`, the broker grants KIP-227 fetch sessions: a Fetch with epoch 0 creates one
    /// (ids 1, 2, ...; a non-zero id with epoch 0 closes that session first) and is answered
    /// in full; an incremental Fetch (epoch 1..) must carry a known id (else top-level
    /// FETCH_SESSION_ID_NOT_FOUND, 70) and the next epoch (else INVALID_FETCH_SESSION_EPOCH,
    /// 71); it updates the session's partitions (listed ones added or changed, forgotten ones
    /// removed), the fetch script is called with all of them, and the answer lists only those
    /// with records or an error. Off (the default), every Fetch is answered in full with
    /// session id 0, whatever its session fields.
    pub fn grant_fetch_sessions(&self, on: bool) {
        lock(&self.script).sessions = on;
    }

    /// The ids of the fetch sessions the broker keeps now, sorted.
    pub fn open_fetch_sessions(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = lock(&self.script).session_table.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Answers the next incremental Fetch (with sessions granted) with top-level error `code`
    /// and no partitions; with FETCH_SESSION_ID_NOT_FOUND (70) the session is also dropped.
    pub fn fail_next_incremental_fetch(&self, code: i16) {
        lock(&self.script).session_error = Some(code);
    }

    /// Every Fetch received so far, in order.
    pub fn fetches(&self) -> Vec<FetchSeen> {
        lock(&self.script).fetches.clone()
    }

    /// The broker's own port, as announced in Metadata.
    pub fn port(&self) -> i32 {
        self.port
    }
}

/// One v2 record batch of `count` records with values `v{offset}`, starting at `base`.
pub fn batch(base: i64, count: usize) -> Bytes {
    batch_with(base, count, 0)
}

/// Like [`batch`], each value padded to at least `value_bytes` bytes (to make a large batch).
pub fn batch_with(base: i64, count: usize, value_bytes: usize) -> Bytes {
    let records: Vec<ProducerRecord> = (0..count)
        .map(|i| {
            let mut v = format!("v{}", base + i as i64).into_bytes();
            v.resize(v.len().max(value_bytes), b'.');
            ProducerRecord::value(v).with_timestamp(0)
        })
        .collect();
    let encoded = encode_batch(&records, Codec::None, 0).expect("encode batch");
    // The base offset is outside the batch CRC (which covers attributes onwards): set it.
    let mut out = BytesMut::from(&encoded[..]);
    out[0..8].copy_from_slice(&base.to_be_bytes());
    out.freeze()
}

async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let len = stream.read_u32().await.ok()? as usize;
    if len > 64 << 20 {
        return None;
    }
    let mut buf = BytesMut::zeroed(len);
    stream.read_exact(&mut buf).await.ok()?;
    Some(buf.freeze())
}

/// Reads requests until the client closes; answers each unless silent.
async fn serve(mut stream: TcpStream, script: Arc<Mutex<Script>>, port: i32) {
    loop {
        while lock(&script).paused {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let Some(mut frame) = read_frame(&mut stream).await else {
            return;
        };
        if frame.len() < 4 {
            return;
        }
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let Ok(api) = ApiKey::try_from(key) else {
            return;
        };
        let Ok(header) = RequestHeader::decode(&mut frame, api.request_header_version(version))
        else {
            return;
        };
        let silent = {
            let mut sc = lock(&script);
            *sc.counts.entry(key).or_default() += 1;
            sc.silent
        };
        if silent {
            continue;
        }
        let mut body = BytesMut::new();
        let response_header_version = if api == ApiKey::ApiVersions {
            0
        } else {
            api.response_header_version(version)
        };
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut body, response_header_version)
            .expect("encode header");
        match answer(api, version, frame, &script, port, &mut body) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => return,
        }
        let mut out = BytesMut::with_capacity(body.len() + 4);
        out.put_u32(body.len() as u32);
        out.extend_from_slice(&body);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Encodes the answer; `Ok(true)`: send it.
fn encode<M: Encodable>(m: &M, version: i16, out: &mut BytesMut) -> anyhow::Result<bool> {
    m.encode(out, version).map(|()| true)
}

/// Decodes the request body of `api` and encodes its answer into `out`; `Ok(false)`: the
/// request takes no answer (Produce with acks=0).
fn answer(
    api: ApiKey,
    v: i16,
    mut body: Bytes,
    script: &Mutex<Script>,
    port: i32,
    out: &mut BytesMut,
) -> anyhow::Result<bool> {
    let mut sc = lock(script);
    let error = sc.errors.get(&(api as i16)).copied().unwrap_or(0);
    match api {
        ApiKey::ApiVersions => {
            let _ = ApiVersionsRequest::decode(&mut body, v);
            let resp = ApiVersionsResponse::default().with_api_keys(
                VERSIONS
                    .iter()
                    .map(|(k, lo, hi)| {
                        ApiVersion::default()
                            .with_api_key(*k as i16)
                            .with_min_version(*lo)
                            .with_max_version(*hi)
                    })
                    .collect(),
            );
            encode(&resp, v, out)
        }
        ApiKey::Metadata => {
            let req = MetadataRequest::decode(&mut body, v)?;
            let wanted: Option<Vec<String>> = req.topics.map(|ts| {
                ts.iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                    .collect()
            });
            let names: Vec<String> = match wanted {
                Some(w) => w,
                None => sc.topics.iter().map(|(t, _)| t.clone()).collect(),
            };
            let topics = names
                .iter()
                .map(|name| {
                    let known = sc.topics.iter().find(|(t, _)| t == name);
                    let topic =
                        MetadataResponseTopic::default().with_name(Some(TopicName(s(name))));
                    match known {
                        None => topic.with_error_code(3), // UNKNOWN_TOPIC_OR_PARTITION
                        Some((_, n)) => topic.with_error_code(error).with_partitions(
                            (0..*n)
                                .map(|p| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_leader_id(0.into())
                                        .with_replica_nodes(vec![0.into()])
                                        .with_isr_nodes(vec![0.into()])
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            let resp = MetadataResponse::default()
                .with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(0.into())
                    .with_host(s("127.0.0.1"))
                    .with_port(port)])
                .with_controller_id(0.into())
                .with_topics(topics);
            encode(&resp, v, out)
        }
        ApiKey::Fetch => {
            let req = FetchRequest::decode(&mut body, v)?;
            let listed: Vec<FetchAsk> = req
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| FetchAsk {
                        topic: t.topic.0.to_string(),
                        partition: p.partition,
                        offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes,
                    })
                })
                .collect();
            let forgotten: Vec<(String, i32)> = req
                .forgotten_topics_data
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
                .collect();
            sc.fetches.push(FetchSeen {
                session_id: req.session_id,
                epoch: req.session_epoch,
                listed: listed.clone(),
                forgotten: forgotten.clone(),
            });
            let (asks, session_id, incremental) = if sc.sessions {
                match fetch_session(&mut sc, &req, listed, &forgotten) {
                    Ok(session) => session,
                    Err(code) => {
                        let resp = FetchResponse::default().with_error_code(code);
                        return encode(&resp, v, out);
                    }
                }
            } else {
                (listed, 0, false)
            };
            let answers = match (&mut sc.fetch, error) {
                (_, code) if code != 0 => asks.iter().map(|_| FetchAnswer::error(code)).collect(),
                (Some(f), _) => f(&asks),
                (None, _) => asks.iter().map(|_| FetchAnswer::default()).collect(),
            };
            let mut responses: Vec<FetchableTopicResponse> = Vec::new();
            for (ask, mut a) in asks.iter().zip(answers) {
                if incremental && a.records.is_empty() && a.error_code == 0 {
                    continue; // nothing new for this partition: an incremental answer omits it
                }
                if a.high_watermark == 0 {
                    // Unscripted: the end of the records answered, as a broker's would be at
                    // least (a read_committed consumer stops at the last stable offset).
                    a.high_watermark = end_of(&a.records).max(ask.offset);
                }
                let pd = PartitionData::default()
                    .with_partition_index(ask.partition)
                    .with_error_code(a.error_code)
                    .with_high_watermark(a.high_watermark)
                    .with_last_stable_offset(a.last_stable_offset.unwrap_or(a.high_watermark))
                    .with_log_start_offset(a.log_start)
                    .with_records(Some(a.records));
                match responses.last_mut() {
                    Some(t) if t.topic.0.as_str() == ask.topic => t.partitions.push(pd),
                    _ => responses.push(
                        FetchableTopicResponse::default()
                            .with_topic(TopicName(s(&ask.topic)))
                            .with_partitions(vec![pd]),
                    ),
                }
            }
            let resp = FetchResponse::default()
                .with_session_id(session_id)
                .with_responses(responses);
            encode(&resp, v, out)
        }
        ApiKey::ListOffsets => {
            let req = ListOffsetsRequest::decode(&mut body, v)?;
            let mut topics = Vec::new();
            for t in &req.topics {
                let mut parts = Vec::new();
                for p in &t.partitions {
                    let (code, offset) = match (&mut sc.list_offsets, error) {
                        (_, code) if code != 0 => (code, -1),
                        (Some(f), _) => f(
                            t.name.0.as_str(),
                            p.partition_index,
                            p.timestamp,
                            req.isolation_level,
                        ),
                        (None, _) => (0, 0),
                    };
                    parts.push(
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                            .with_timestamp(-1)
                            .with_offset(offset),
                    );
                }
                topics.push(
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name.clone())
                        .with_partitions(parts),
                );
            }
            encode(&ListOffsetsResponse::default().with_topics(topics), v, out)
        }
        ApiKey::Produce => {
            let req = ProduceRequest::decode(&mut body, v)?;
            let mut responses = Vec::new();
            for t in &req.topic_data {
                let mut parts = Vec::new();
                for p in &t.partition_data {
                    let count = p
                        .records
                        .as_ref()
                        .filter(|r| r.len() >= 61)
                        .map_or(0, |r| i32::from_be_bytes([r[57], r[58], r[59], r[60]]))
                        .max(0) as i64;
                    let next = sc
                        .produced
                        .entry((t.name.0.to_string(), p.index))
                        .or_default();
                    let base = *next;
                    if error == 0 {
                        *next += count;
                    }
                    parts.push(
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_error_code(error)
                            .with_base_offset(if error == 0 { base } else { -1 }),
                    );
                }
                responses.push(
                    TopicProduceResponse::default()
                        .with_name(t.name.clone())
                        .with_partition_responses(parts),
                );
            }
            if req.acks == 0 {
                return Ok(false);
            }
            encode(
                &ProduceResponse::default().with_responses(responses),
                v,
                out,
            )
        }
        ApiKey::FindCoordinator => {
            let req = FindCoordinatorRequest::decode(&mut body, v)?;
            let resp = if v >= 4 {
                FindCoordinatorResponse::default().with_coordinators(
                    req.coordinator_keys
                        .iter()
                        .map(|k| {
                            Coordinator::default()
                                .with_key(k.clone())
                                .with_node_id(0.into())
                                .with_host(s("127.0.0.1"))
                                .with_port(port)
                                .with_error_code(error)
                        })
                        .collect(),
                )
            } else {
                FindCoordinatorResponse::default()
                    .with_error_code(error)
                    .with_node_id(0.into())
                    .with_host(s("127.0.0.1"))
                    .with_port(port)
            };
            encode(&resp, v, out)
        }
        ApiKey::JoinGroup => {
            let req = JoinGroupRequest::decode(&mut body, v)?;
            let member = if req.member_id.is_empty() {
                s("fake-member-1")
            } else {
                req.member_id.clone()
            };
            let resp = if error != 0 {
                JoinGroupResponse::default()
                    .with_error_code(error)
                    .with_generation_id(-1)
            } else {
                sc.generation += 1;
                let first = req.protocols.first();
                JoinGroupResponse::default()
                    .with_generation_id(sc.generation)
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(first.map(|p| p.name.clone()))
                    .with_leader(member.clone())
                    .with_member_id(member.clone())
                    .with_members(vec![JoinGroupResponseMember::default()
                        .with_member_id(member)
                        .with_metadata(first.map(|p| p.metadata.clone()).unwrap_or_default())])
            };
            encode(&resp, v, out)
        }
        ApiKey::SyncGroup => {
            let req = SyncGroupRequest::decode(&mut body, v)?;
            if let Some(mine) = req
                .assignments
                .iter()
                .find(|a| a.member_id == req.member_id)
            {
                sc.assignment = mine.assignment.clone();
            }
            let resp = SyncGroupResponse::default()
                .with_error_code(error)
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(req.protocol_name.clone())
                .with_assignment(sc.assignment.clone());
            encode(&resp, v, out)
        }
        ApiKey::Heartbeat => {
            let _ = HeartbeatRequest::decode(&mut body, v)?;
            encode(&HeartbeatResponse::default().with_error_code(error), v, out)
        }
        ApiKey::LeaveGroup => {
            let req = LeaveGroupRequest::decode(&mut body, v)?;
            let resp = LeaveGroupResponse::default()
                .with_error_code(error)
                .with_members(
                    req.members
                        .iter()
                        .map(|m| {
                            MemberResponse::default()
                                .with_member_id(m.member_id.clone())
                                .with_group_instance_id(m.group_instance_id.clone())
                        })
                        .collect(),
                );
            encode(&resp, v, out)
        }
        ApiKey::OffsetCommit => {
            let req = OffsetCommitRequest::decode(&mut body, v)?;
            let group = req.group_id.0.to_string();
            let mut topics = Vec::new();
            for t in &req.topics {
                let mut parts = Vec::new();
                for p in &t.partitions {
                    if error == 0 {
                        sc.committed.insert(
                            (group.clone(), t.name.0.to_string(), p.partition_index),
                            p.committed_offset,
                        );
                    }
                    parts.push(
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(error),
                    );
                }
                topics.push(
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(parts),
                );
            }
            encode(&OffsetCommitResponse::default().with_topics(topics), v, out)
        }
        ApiKey::OffsetFetch => {
            let req = OffsetFetchRequest::decode(&mut body, v)?;
            let committed = |sc: &Script, g: &str, t: &str, p: i32| {
                sc.committed
                    .get(&(g.to_string(), t.to_string(), p))
                    .copied()
                    .unwrap_or(-1)
            };
            let resp = if v >= 8 {
                let groups = req
                    .groups
                    .iter()
                    .map(|g| {
                        let gid = g.group_id.0.to_string();
                        let topics = g
                            .topics
                            .iter()
                            .flatten()
                            .map(|t| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(t.name.clone())
                                    .with_partitions(
                                        t.partition_indexes
                                            .iter()
                                            .map(|p| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(*p)
                                                    .with_committed_offset(committed(
                                                        &sc,
                                                        &gid,
                                                        t.name.0.as_str(),
                                                        *p,
                                                    ))
                                                    .with_error_code(error)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect();
                        OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id.clone())
                            .with_topics(topics)
                    })
                    .collect();
                OffsetFetchResponse::default().with_groups(groups)
            } else {
                let gid = req.group_id.0.to_string();
                let topics = req
                    .topics
                    .iter()
                    .flatten()
                    .map(|t| {
                        OffsetFetchResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(*p)
                                            .with_committed_offset(committed(
                                                &sc,
                                                &gid,
                                                t.name.0.as_str(),
                                                *p,
                                            ))
                                            .with_error_code(error)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponse::default().with_topics(topics)
            };
            encode(&resp, v, out)
        }
        other => anyhow::bail!("the fake broker does not answer {other:?}"),
    }
}

/// KIP-227 on the broker side (with sessions granted): the partitions to answer for `req`,
/// the session id to answer with, and whether the answer is incremental; `Err`: the
/// top-level error code to answer with.
fn fetch_session(
    sc: &mut Script,
    req: &FetchRequest,
    listed: Vec<FetchAsk>,
    forgotten: &[(String, i32)],
) -> Result<(Vec<FetchAsk>, i32, bool), i16> {
    let (id, epoch) = (req.session_id, req.session_epoch);
    if epoch <= 0 {
        if id != 0 {
            sc.session_table.remove(&id); // close it (epoch -1), or close and create anew (0)
        }
        if epoch < 0 {
            return Ok((listed, 0, false));
        }
        sc.last_session += 1;
        let new = sc.last_session;
        let partitions = listed.clone();
        sc.session_table.insert(
            new,
            FakeSession {
                next_epoch: 1,
                partitions,
            },
        );
        return Ok((listed, new, false));
    }
    if let Some(code) = sc.session_error.take() {
        if code == 70 {
            sc.session_table.remove(&id);
        }
        return Err(code);
    }
    let Some(session) = sc.session_table.get_mut(&id) else {
        return Err(70); // FETCH_SESSION_ID_NOT_FOUND
    };
    if epoch != session.next_epoch {
        return Err(71); // INVALID_FETCH_SESSION_EPOCH
    }
    session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
    for ask in listed {
        match session
            .partitions
            .iter_mut()
            .find(|p| p.topic == ask.topic && p.partition == ask.partition)
        {
            Some(p) => *p = ask,
            None => session.partitions.push(ask),
        }
    }
    session.partitions.retain(|p| {
        !forgotten
            .iter()
            .any(|(t, n)| *t == p.topic && *n == p.partition)
    });
    Ok((session.partitions.clone(), id, true))
}

/// The offset after the last complete v2 batch in `records` (0 if none): each batch's base
/// offset (bytes 0..8) plus its last offset delta (bytes 23..27) plus one.
fn end_of(records: &[u8]) -> i64 {
    let mut end = 0;
    let mut rest = records;
    while rest.len() >= 27 {
        let base = i64::from_be_bytes(rest[0..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        let delta = i32::from_be_bytes(rest[23..27].try_into().expect("4 bytes"));
        let size = 12 + length.max(0) as usize;
        if length < 0 || size > rest.len() {
            break;
        }
        end = end.max(base + i64::from(delta) + 1);
        rest = &rest[size..];
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_start_at_their_base_offset() {
        let b = batch(150, 3);
        let decoded = krpc_kafka::records::decode_batches(&b, &Arc::from("t"), 0, 0, 1 << 20)
            .expect("decodes");
        let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![150, 151, 152]);
        assert_eq!(decoded.next_offset, Some(153));
    }
}
