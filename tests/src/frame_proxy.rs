//! A Kafka-aware loopback TCP proxy in front of a real broker: it reads the frames it forwards,
//! so it can count the requests of each API (what a client costs a cluster) and provoke what
//! the broker alone cannot: a Produce response lost after the broker stored the batch.
//! (`proxy.rs` is the byte-level one: stalls, resets, blackholes.)
//!
//! It forwards frames both ways, rewrites Metadata and FindCoordinator responses so that clients keep talking
//! through it, and, while [`FrameProxy::lose_produce_responses`] is above zero, swallows the
//! next Produce response and closes that client connection (the broker has written the batch;
//! the client sees a broken connection and retries). [`FrameProxy::hide_leader`] makes
//! Metadata responses say a partition has no leader (LEADER_NOT_AVAILABLE), which a
//! one-broker nisshi never does. [`FrameProxy::fake_produce_acks`] answers the next Produce
//! requests itself with success and never forwards them: the client believes the batch
//! written, the broker never sees it (a sequence gap for an idempotent producer).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorResponse, MetadataResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; it stops with the test's runtime.
pub struct FrameProxy {
    addr: String,
    lose: Arc<AtomicUsize>,
    lost: Arc<AtomicUsize>,
    fake_acks: Arc<AtomicUsize>,
    produce_requests: Arc<AtomicUsize>,
    requests: Counts,
    hidden: Hidden,
}

/// Requests forwarded so far, by API key.
type Counts = Arc<Mutex<HashMap<i16, usize>>>;
/// Partitions whose leader Metadata responses hide: (topic, partition).
type Hidden = Arc<Mutex<HashSet<(String, i32)>>>;

impl FrameProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> FrameProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let proxy = FrameProxy {
            addr: format!("127.0.0.1:{port}"),
            lose: Default::default(),
            lost: Default::default(),
            fake_acks: Default::default(),
            produce_requests: Default::default(),
            requests: Default::default(),
            hidden: Default::default(),
        };
        let knobs = Knobs {
            lose: proxy.lose.clone(),
            lost: proxy.lost.clone(),
            fake_acks: proxy.fake_acks.clone(),
            produces: proxy.produce_requests.clone(),
            counts: proxy.requests.clone(),
            hidden: proxy.hidden.clone(),
        };
        let upstream = upstream.to_string();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(pipe(client, server, port, knobs.clone()));
            }
        });
        proxy
    }

    /// The proxy's `host:port`, to bootstrap from.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Swallows the next `n` Produce responses, closing each one's client connection.
    pub fn lose_produce_responses(&self, n: usize) {
        self.lose.store(n, Ordering::SeqCst);
    }

    /// Answers the next `n` Produce requests here, with success for every partition (base
    /// offset 0), without forwarding them: the broker never stores those batches.
    pub fn fake_produce_acks(&self, n: usize) {
        self.fake_acks.store(n, Ordering::SeqCst);
    }

    /// From now on, Metadata responses say `topic`/`partition` has no leader (leader -1,
    /// LEADER_NOT_AVAILABLE), until [`FrameProxy::show_leader`]. Clients that cached the
    /// leader keep it until they refresh.
    pub fn hide_leader(&self, topic: &str, partition: i32) {
        self.hidden
            .lock()
            .unwrap()
            .insert((topic.to_string(), partition));
    }

    /// Metadata responses name `topic`/`partition`'s leader again.
    pub fn show_leader(&self, topic: &str, partition: i32) {
        self.hidden
            .lock()
            .unwrap()
            .remove(&(topic.to_string(), partition));
    }

    /// Produce responses swallowed so far.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }

    /// Produce requests forwarded so far.
    pub fn produce_requests(&self) -> usize {
        self.produce_requests.load(Ordering::SeqCst)
    }

    /// Requests forwarded so far, by API (every client connection through the proxy).
    pub fn requests(&self) -> HashMap<ApiKey, usize> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(&key, &n)| ApiKey::try_from(key).ok().map(|api| (api, n)))
            .collect()
    }
}

async fn read_frame(stream: &mut tokio::net::tcp::OwnedReadHalf) -> Option<Bytes> {
    let len = stream.read_i32().await.ok()?;
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    stream.read_exact(&mut buf).await.ok()?;
    Some(buf.into())
}

/// What the test sets and reads, shared by every connection's pipe.
#[derive(Clone)]
struct Knobs {
    lose: Arc<AtomicUsize>,
    lost: Arc<AtomicUsize>,
    fake_acks: Arc<AtomicUsize>,
    produces: Arc<AtomicUsize>,
    counts: Counts,
    hidden: Hidden,
}

async fn pipe(client: TcpStream, server: TcpStream, port: u16, knobs: Knobs) {
    let Knobs {
        lose,
        lost,
        fake_acks,
        produces,
        counts,
        hidden,
    } = knobs;
    let (mut client_rd, client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    // Both directions answer the client: the broker's responses and the faked acks.
    let client_wr = Arc::new(tokio::sync::Mutex::new(client_wr));
    let faker = client_wr.clone();
    // correlation id -> (api key, api version) of requests in flight
    let pending: Arc<Mutex<HashMap<i32, (i16, i16)>>> = Default::default();
    let requests = pending.clone();
    let upward = tokio::spawn(async move {
        while let Some(frame) = read_frame(&mut client_rd).await {
            let mut head = &frame[..];
            if head.len() >= 8 {
                let (key, version, id) = (head.get_i16(), head.get_i16(), head.get_i32());
                *counts.lock().unwrap().entry(key).or_default() += 1;
                if key == ApiKey::Produce as i16 {
                    produces.fetch_add(1, Ordering::SeqCst);
                    if fake_acks
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        let ack = fake_produce_ack(frame.clone(), version);
                        let mut out = BytesMut::with_capacity(ack.len() + 4);
                        out.put_i32(ack.len() as i32);
                        out.put_slice(&ack);
                        if faker.lock().await.write_all(&out).await.is_err() {
                            break;
                        }
                        continue;
                    }
                }
                requests.lock().unwrap().insert(id, (key, version));
            }
            let mut out = BytesMut::with_capacity(frame.len() + 4);
            out.put_i32(frame.len() as i32);
            out.put_slice(&frame);
            if server_wr.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    while let Some(frame) = read_frame(&mut server_rd).await {
        let id = i32::from_be_bytes(frame[0..4].try_into().unwrap());
        let api = pending.lock().unwrap().remove(&id);
        let frame = match api {
            Some((key, _))
                if key == ApiKey::Produce as i16
                    && lose
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok() =>
            {
                lost.fetch_add(1, Ordering::SeqCst);
                break; // the broker stored it; the client never hears
            }
            Some((key, version)) if key == ApiKey::Metadata as i16 => {
                rewrite_metadata(frame, version, port, &hidden)
            }
            Some((key, version)) if key == ApiKey::FindCoordinator as i16 => {
                rewrite_coordinator(frame, version, port)
            }
            _ => frame,
        };
        let mut out = BytesMut::with_capacity(frame.len() + 4);
        out.put_i32(frame.len() as i32);
        out.put_slice(&frame);
        if client_wr.lock().await.write_all(&out).await.is_err() {
            break;
        }
    }
    upward.abort();
}

/// A successful Produce response to the request `frame` (header and body, no size prefix):
/// error 0 and base offset 0 for every partition it names.
fn fake_produce_ack(frame: Bytes, version: i16) -> Bytes {
    let mut buf = frame;
    let request_header_version = ApiKey::Produce.request_header_version(version);
    let header = RequestHeader::decode(&mut buf, request_header_version).expect("request header");
    let req = ProduceRequest::decode(&mut buf, version).expect("produce request");
    let responses = req
        .topic_data
        .iter()
        .map(|t| {
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_base_offset(0)
                                .with_log_append_time_ms(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    let resp = ProduceResponse::default().with_responses(responses);
    let header_version = ApiKey::Produce.response_header_version(version);
    let mut out = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(header.correlation_id)
        .encode(&mut out, header_version)
        .unwrap();
    resp.encode(&mut out, version).unwrap();
    out.freeze()
}

/// Points every broker of a Metadata response at the proxy, and hides the leaders of the
/// `hidden` partitions.
fn rewrite_metadata(frame: Bytes, version: i16, port: u16, hidden: &Hidden) -> Bytes {
    let header_version = ApiKey::Metadata.response_header_version(version);
    let mut buf = frame.clone();
    let header = ResponseHeader::decode(&mut buf, header_version).expect("response header");
    let mut resp = MetadataResponse::decode(&mut buf, version).expect("metadata response");
    for b in &mut resp.brokers {
        b.host = StrBytes::from_static_str("127.0.0.1");
        b.port = port as i32;
    }
    let hidden = hidden.lock().unwrap();
    for t in &mut resp.topics {
        let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
            continue;
        };
        for p in &mut t.partitions {
            if hidden.contains(&(name.clone(), p.partition_index)) {
                p.leader_id = (-1).into();
                p.error_code = 5; // LEADER_NOT_AVAILABLE
            }
        }
    }
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).unwrap();
    resp.encode(&mut out, version).unwrap();
    out.freeze()
}

/// Points the coordinator of a FindCoordinator response (v0-3: one; v4+: one per group) at the
/// proxy, so group traffic (heartbeats, commits) goes through it too.
fn rewrite_coordinator(frame: Bytes, version: i16, port: u16) -> Bytes {
    let header_version = ApiKey::FindCoordinator.response_header_version(version);
    let mut buf = frame.clone();
    let header = ResponseHeader::decode(&mut buf, header_version).expect("response header");
    let mut resp =
        FindCoordinatorResponse::decode(&mut buf, version).expect("find coordinator response");
    if version < 4 {
        resp.host = StrBytes::from_static_str("127.0.0.1");
        resp.port = port as i32;
    }
    for c in &mut resp.coordinators {
        c.host = StrBytes::from_static_str("127.0.0.1");
        c.port = port as i32;
    }
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).unwrap();
    resp.encode(&mut out, version).unwrap();
    out.freeze()
}
