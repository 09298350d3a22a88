//! The Kafka layer alone, and the raw-echo limit of the comparison harness.
//!
//! ```text
//! wire-bench BOOTSTRAP [RECORDS] [--client krpc-kafka|rskafka]... [--run N]
//! wire-bench echo BOOTSTRAP --requests T --replies T [--partitions P] [--reply-size B]
//!                           [--fetch-wait-ms W]
//! wire-bench echo-caller BOOTSTRAP --requests T --replies T [--partitions P] [--in-flight N]
//!                           [--seconds S] [--request-size B] [--reply-size B] [--fetch-wait-ms W]
//! wire-bench roundtrip BOOTSTRAP [--count N] [--block B] [--run R] [--only CLIENT]...
//!                     [--pause-ms MS]
//! wire-bench sizes BOOTSTRAP TOPIC [--records N]
//! ```
//!
//! **Kafka layer** (the default): krpc-kafka and/or rskafka on the same broker (`--client`,
//! repeatable; default both), each on a fresh topic of its own. Produce and fetch throughput
//! of 64-byte records in batches of 1,000 (each batch awaited before the next); the latency of
//! producing one record and fetching it back is the `roundtrip` mode's. Each phase goes in
//! turns: a block of work per client per turn (10 batches; one fetch), the first of each turn
//! rotating
//! from the order the flags give, each client timed over its own turns only (the broker's
//! speed drifts, and one client after the other was not like for like). Each client's process
//! CPU time (getrusage: every thread of this process) over its turns is reported per record:
//! only that client works during its turn. Prints a table on stderr and one JSON line per
//! client on stdout. krpc-kafka's producer runs with idempotence off here, as rskafka's (which
//! has none) and librdkafka's in the harness (`enable.idempotence` defaults to false there):
//! like for like. The `roundtrip` mode measures what the default idempotent producer costs.
//!
//! **Round trip** (`roundtrip`): produce one 64-byte record, wait for its acknowledgement,
//! fetch it back, `--count` times per client, the clients interleaved in blocks of `--block`
//! in one process (the broker's speed drifts as it ages: interleaving puts every client in
//! the same moments): krpc-kafka as above, krpc-kafka without KIP-227 fetch sessions,
//! krpc-kafka with its default idempotent producer, rskafka (one connection carries its
//! produce and its fetch), and rskafka with a client for each (`rskafka two connections`: the
//! shape of krpc-kafka's producer and fetcher); `--only NAME` (repeatable) runs just those.
//! Prints a table on stderr and one JSON line per client on stdout: p50/p99, the p50 of each
//! half (send to acknowledgement; fetch), the process CPU per round trip (measured per block:
//! only that client works then) and how many fetches (polls) of the measured round trips
//! returned no record and were repeated (`empty_fetches`; see `RoundTripper::once`).
//!
//! **Raw echo** (`echo` + `echo-caller`, two processes): the least a request/reply exchange
//! costs through the broker with no RPC logic. The caller produces request records (value:
//! an 8-byte call id, padded to `--request-size`) round-robin over the `--partitions`
//! partitions of the request topic, keeping `--in-flight` outstanding; the echo process
//! fetches them and produces a reply record (the same id, padded to `--reply-size`) to
//! partition 0 of the reply topic, which the caller fetches. Both are krpc-kafka `Producer`s
//! (linger 0, acks all, as the RPC client) and `Fetcher`s (no consumer group). Both create the
//! two topics if missing and read them from offset 0, so use fresh names. The echo runs until
//! killed; the caller prints one JSON line (calls/s, latency p50/p99) after `--seconds`.
//!
//! **sizes**: the mean size (key + value + header keys and values, in bytes) of the first
//! `--records` records of each partition of TOPIC, as one JSON line: the harness sizes the raw
//! echo's records like the RPC run's.

// The option structs are built from their defaults by assigning fields (they are, or are
// becoming, `#[non_exhaustive]`, which rules out struct literals outside their crate).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use krpc_kafka::{
    ClientConfig, FetchConfig, Fetcher, KafkaClient, NewTopic, Producer, ProducerConfig,
    ProducerRecord,
};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;
use serde_json::json;

const BATCH: usize = 1000;
const SIZE: usize = 64;
/// The most empty fetches one round trip repeats before it fails (see `RoundTripper::once`).
const EMPTY_FETCHES_MAX: u32 = 50;

type AnyResult<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// CPU seconds (user + system) used so far by every thread of this process.
fn process_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is zeroed and ours.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Wall time and process CPU of one phase.
struct Phase {
    started: Instant,
    cpu: f64,
}

impl Phase {
    fn start() -> Self {
        Self {
            started: Instant::now(),
            cpu: process_cpu(),
        }
    }

    /// (wall seconds, CPU seconds) since the start.
    fn end(&self) -> (f64, f64) {
        (
            self.started.elapsed().as_secs_f64(),
            process_cpu() - self.cpu,
        )
    }
}

struct Result {
    client: &'static str,
    produce_per_s: f64,
    fetch_per_s: f64,
    /// Process CPU per record, µs.
    produce_cpu_us: f64,
    fetch_cpu_us: f64,
}

/// Every benchmark topic's name has this many characters (`rdkafka_raw.py` pads its own to
/// the same width).
const TOPIC_NAME_WIDTH: usize = 64;

/// A fresh topic for client `name`, padded with `-` to [`TOPIC_NAME_WIDTH`]: the test broker's
/// fetch lists every stored batch of the partition by a key holding the topic's name, so its
/// cost grows with the batches produced and with the name's length. Measured 2026-12-01 on
/// one broker: rskafka's fetches took the broker 13-60 µs less at the median than krpc-kafka's
/// with a topic name 3 characters shorter, the same when the names had the same length. Like
/// for like, every client's topic is the same length.
fn topic(name: &str, run: u32) -> String {
    let t = format!("wire-bench-{name}-r{run}-{}-", std::process::id());
    assert!(
        t.len() <= TOPIC_NAME_WIDTH,
        "topic name {t:?} is longer than {TOPIC_NAME_WIDTH}: the clients' would differ"
    );
    format!("{t:-<TOPIC_NAME_WIDTH$}")
}

/// Records produced per client turn in the interleaved produce phase.
const PRODUCE_BLOCK: usize = 10 * BATCH;

/// One client of the Kafka-layer measurement, on a fresh topic of its own (one partition).
enum Thrower {
    KrpcKafka {
        /// Batches of [`BATCH`] records (a linger long enough that `flush` closes each).
        producer: Producer,
        fetcher: Box<Fetcher>,
        topic: String,
    },
    Rskafka {
        partition: rskafka::client::partition::PartitionClient,
        /// Where the throughput fetch goes on.
        offset: i64,
    },
}

/// The wall time, CPU and work of one client's turns, summed.
#[derive(Default)]
struct Turns {
    wall: f64,
    cpu: f64,
    records: usize,
}

impl Turns {
    fn add(&mut self, phase: Phase, records: usize) {
        let (wall, cpu) = phase.end();
        self.wall += wall;
        self.cpu += cpu;
        self.records += records;
    }
}

fn rskafka_record() -> Record {
    Record {
        key: None,
        value: Some(vec![b'x'; SIZE]),
        headers: BTreeMap::new(),
        timestamp: chrono::Utc::now(),
    }
}

impl Thrower {
    async fn new(name: &str, addr: &str, run: u32) -> AnyResult<Self> {
        let t = topic(name, run);
        match name {
            "krpc-kafka" => {
                let client = KafkaClient::connect(ClientConfig::new(addr)).await?;
                client.create_topics(&[NewTopic::new(&t, 1)], false).await?;
                // Idempotence off: rskafka's producer has none (see the module documentation).
                let producer = Producer::new(
                    client.clone(),
                    ProducerConfig::default()
                        .with_linger(Duration::from_secs(60))
                        .with_max_batch_bytes(16 << 20)
                        .with_enable_idempotence(false),
                )?;
                let mut fetcher = Fetcher::new(
                    client,
                    FetchConfig::default()
                        .with_max_wait(Duration::from_millis(10))
                        .with_partition_max_bytes(16 << 20)
                        .with_max_bytes(64 << 20),
                )?;
                fetcher.assign(&t, 0, 0);
                // Its connection (a lane of its own) dialled before the timed turns, as
                // rskafka's, which its produce turns open: an empty fetch.
                fetcher.poll().await?;
                Ok(Self::KrpcKafka {
                    producer,
                    fetcher: Box::new(fetcher),
                    topic: t,
                })
            }
            "rskafka" => {
                let client = ClientBuilder::new(vec![addr.to_string()]).build().await?;
                client
                    .controller_client()?
                    .create_topic(&t, 1, 1, 10_000)
                    .await?;
                let partition = client
                    .partition_client(&t, 0, UnknownTopicHandling::Retry)
                    .await?;
                Ok(Self::Rskafka {
                    partition,
                    offset: 0,
                })
            }
            other => Err(format!("unknown --client {other:?}").into()),
        }
    }

    /// Produces one batch of [`BATCH`] records and waits for its acknowledgement.
    async fn produce_batch(&mut self) -> AnyResult<()> {
        match self {
            Self::KrpcKafka {
                producer, topic, ..
            } => {
                let value = vec![b'x'; SIZE];
                for _ in 0..BATCH {
                    producer
                        .send_to(topic, 0, ProducerRecord::value(value.clone()))
                        .await?;
                }
                producer.flush().await;
            }
            Self::Rskafka { partition, .. } => {
                let batch: Vec<Record> = (0..BATCH).map(|_| rskafka_record()).collect();
                partition.produce(batch, Compression::NoCompression).await?;
            }
        }
        Ok(())
    }

    /// One fetch from where the last one ended (up to 16 MiB); returns how many records came.
    async fn fetch_some(&mut self) -> AnyResult<usize> {
        match self {
            Self::KrpcKafka { fetcher, .. } => Ok(fetcher.poll().await?.len()),
            Self::Rskafka { partition, offset } => {
                let (batch, _high_watermark) =
                    partition.fetch_records(*offset, 1..(16 << 20), 10).await?;
                if let Some(last) = batch.last() {
                    *offset = last.offset + 1;
                }
                Ok(batch.len())
            }
        }
    }
}

/// The Kafka-layer measurement of `names`, interleaved: each phase goes in turns, a block of
/// work per client per turn, the client that goes first rotating, each client's time and CPU
/// summed over its own turns only. The broker's speed drifts (its partitions grow, it warms
/// up): measured one client after the other, whichever went second was up to a quarter faster
/// at producing (2026-12-01); in turns, every client meets the same broker.
async fn kafka_layer_interleaved(
    names: &[String],
    addr: &str,
    records: usize,
    run: u32,
) -> AnyResult<Vec<Result>> {
    let mut clients = Vec::new();
    for name in names {
        clients.push(Thrower::new(name, addr, run).await?);
    }
    let n = clients.len();
    let order = |turn: usize| (0..n).map(move |k| (turn + k) % n);

    let mut produce: Vec<Turns> = (0..n).map(|_| Turns::default()).collect();
    for turn in 0..records.div_ceil(PRODUCE_BLOCK) {
        for i in order(turn) {
            let batches = (records - produce[i].records).min(PRODUCE_BLOCK) / BATCH;
            let phase = Phase::start();
            for _ in 0..batches {
                clients[i].produce_batch().await?;
            }
            produce[i].add(phase, batches * BATCH);
        }
    }

    let mut fetch: Vec<Turns> = (0..n).map(|_| Turns::default()).collect();
    let mut turn = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while (0..n).any(|i| fetch[i].records < produce[i].records) {
        if Instant::now() > deadline {
            return Err(format!(
                "fetched {:?} of {records} records per client in 300 s",
                fetch.iter().map(|f| f.records).collect::<Vec<_>>()
            )
            .into());
        }
        for i in order(turn) {
            if fetch[i].records >= produce[i].records {
                continue;
            }
            let phase = Phase::start();
            let got = clients[i].fetch_some().await?;
            fetch[i].add(phase, got);
        }
        turn += 1;
    }

    Ok(clients
        .iter()
        .enumerate()
        .map(|(i, c)| Result {
            client: match c {
                Thrower::KrpcKafka { .. } => "krpc-kafka",
                Thrower::Rskafka { .. } => "rskafka",
            },
            produce_per_s: produce[i].records as f64 / produce[i].wall,
            fetch_per_s: fetch[i].records as f64 / fetch[i].wall,
            produce_cpu_us: produce[i].cpu * 1e6 / produce[i].records as f64,
            fetch_cpu_us: fetch[i].cpu * 1e6 / fetch[i].records as f64,
        })
        .collect())
}

/// One client of the interleaved round-trip measurement: its own topic (one partition).
enum RoundTripper {
    KrpcKafka {
        producer: Producer,
        fetcher: Box<Fetcher>,
        topic: String,
    },
    /// rskafka's produce and fetch through one partition client: one connection for both.
    Rskafka(rskafka::client::partition::PartitionClient),
    /// rskafka with a client for producing and another for fetching, each with its own
    /// connection: the shape of krpc-kafka's `Producer` and `Fetcher` (and of the Java
    /// clients' producer and consumer), whose fetches must not hold produce answers behind a
    /// long poll on a shared connection (a broker answers one connection's requests in order).
    /// Measured beside the shared-connection row, it shows what the second connection costs.
    RskafkaTwoConnections {
        producing: rskafka::client::partition::PartitionClient,
        fetching: rskafka::client::partition::PartitionClient,
    },
}

impl RoundTripper {
    async fn krpc_kafka(
        addr: &str,
        topic: String,
        idempotent: bool,
        sessions: bool,
    ) -> AnyResult<Self> {
        let client = KafkaClient::connect(ClientConfig::new(addr)).await?;
        client
            .create_topics(&[NewTopic::new(&topic, 1)], false)
            .await?;
        let producer = Producer::new(
            client.clone(),
            ProducerConfig::default()
                .with_linger(Duration::ZERO)
                .with_enable_idempotence(idempotent),
        )?;
        let fetcher = Fetcher::new(
            client,
            FetchConfig::default()
                .with_max_wait(Duration::from_millis(10))
                .with_sessions(sessions),
        )?;
        Ok(Self::KrpcKafka {
            producer,
            fetcher: Box::new(fetcher),
            topic,
        })
    }

    async fn rskafka(addr: &str, topic: String) -> AnyResult<Self> {
        Ok(Self::Rskafka(
            Self::rskafka_partition(addr, &topic, true).await?,
        ))
    }

    async fn rskafka_two_connections(addr: &str, topic: String) -> AnyResult<Self> {
        Ok(Self::RskafkaTwoConnections {
            producing: Self::rskafka_partition(addr, &topic, true).await?,
            fetching: Self::rskafka_partition(addr, &topic, false).await?,
        })
    }

    /// A partition client of partition 0 of `topic` on a client of its own (its own
    /// connections), creating the topic first if `create`.
    async fn rskafka_partition(
        addr: &str,
        topic: &str,
        create: bool,
    ) -> AnyResult<rskafka::client::partition::PartitionClient> {
        let client = ClientBuilder::new(vec![addr.to_string()]).build().await?;
        if create {
            client
                .controller_client()?
                .create_topic(topic, 1, 1, 10_000)
                .await?;
        }
        Ok(client
            .partition_client(topic, 0, UnknownTopicHandling::Retry)
            .await?)
    }

    /// Produces one record, waits for its acknowledgement and fetches it back; returns how
    /// long the produce (to its acknowledgement) took and how many fetches (polls) returned
    /// no record first. The test broker now and then answers the first fetch of an
    /// acknowledged record with nothing after its 10 ms wait (both libraries, more often as
    /// the broker ages); such a fetch is repeated (at most `EMPTY_FETCHES_MAX` times), counted
    /// and reported, and its time stays in the round trip. For krpc-kafka the count also holds
    /// a poll that sent no fetch (a partition backing off after a retriable error).
    async fn once(&mut self) -> AnyResult<(Duration, u32)> {
        let t0 = Instant::now();
        let produced;
        let mut empty = 0;
        match self {
            Self::KrpcKafka {
                producer,
                fetcher,
                topic,
            } => {
                let md = producer
                    .send_to(topic, 0, ProducerRecord::value(vec![b'x'; SIZE]))
                    .await?
                    .await?;
                produced = t0.elapsed();
                fetcher.assign(topic, 0, md.offset);
                let mut back = fetcher.poll().await?;
                while back.is_empty() && empty < EMPTY_FETCHES_MAX {
                    empty += 1;
                    back = fetcher.poll().await?;
                }
                fetched_back(back.first().map(|r| r.offset), md.offset)?;
            }
            Self::Rskafka(partition) => {
                (produced, empty) = Self::rskafka_once(partition, partition, t0).await?;
            }
            Self::RskafkaTwoConnections {
                producing,
                fetching,
            } => {
                (produced, empty) = Self::rskafka_once(producing, fetching, t0).await?;
            }
        }
        Ok((produced, empty))
    }

    /// rskafka's round trip: produce through `producing`, fetch through `fetching`; returns
    /// the time from `t0` to the acknowledgement and the empty fetches (as [`Self::once`]).
    async fn rskafka_once(
        producing: &rskafka::client::partition::PartitionClient,
        fetching: &rskafka::client::partition::PartitionClient,
        t0: Instant,
    ) -> AnyResult<(Duration, u32)> {
        let record = Record {
            key: None,
            value: Some(vec![b'x'; SIZE]),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        };
        let offsets = producing
            .produce(vec![record], Compression::NoCompression)
            .await?;
        let produced = t0.elapsed();
        let mut empty = 0;
        let (mut back, _) = fetching.fetch_records(offsets[0], 1..(1 << 20), 10).await?;
        while back.is_empty() && empty < EMPTY_FETCHES_MAX {
            empty += 1;
            (back, _) = fetching.fetch_records(offsets[0], 1..(1 << 20), 10).await?;
        }
        fetched_back(back.first().map(|r| r.offset), offsets[0])?;
        Ok((produced, empty))
    }
}

/// Whether a round trip's fetch returned the record it produced (`first`: the offset of the
/// first record fetched).
fn fetched_back(first: Option<i64>, produced: i64) -> AnyResult<()> {
    if first == Some(produced) {
        Ok(())
    } else {
        Err(format!("fetched {first:?}, not offset {produced}").into())
    }
}

async fn roundtrip(flags: Flags) -> AnyResult<()> {
    let addr = flags
        .positional
        .first()
        .cloned()
        .ok_or("BOOTSTRAP is required")?;
    let count: usize = flags.get("count", 600)?;
    let block: usize = flags.get("block", 20)?.max(1);
    let run: u32 = flags.get("run", 0)?;
    // `--only NAME` (repeatable): just those clients (the others are not even created), e.g.
    // to profile one.
    let only = flags.named.get("only");
    let wanted = |name: &str| only.is_none_or(|o| o.iter().any(|x| x == name));
    let mut clients: Vec<(&str, RoundTripper)> = Vec::new();
    /// Which client a row measures.
    enum Kind {
        KrpcKafka { idempotent: bool, sessions: bool },
        Rskafka,
        RskafkaTwoConnections,
    }
    let krpc = |idempotent, sessions| Kind::KrpcKafka {
        idempotent,
        sessions,
    };
    let kinds = [
        ("krpc-kafka", krpc(false, true)),
        ("krpc-kafka no sessions", krpc(false, false)),
        ("krpc-kafka idempotent", krpc(true, true)),
        ("rskafka", Kind::Rskafka),
        ("rskafka two connections", Kind::RskafkaTwoConnections),
    ];
    // A misspelt `--only` would otherwise measure nothing and succeed.
    for name in only.into_iter().flatten() {
        if !kinds.iter().any(|(known, _)| known == name) {
            let names: Vec<&str> = kinds.iter().map(|(known, _)| *known).collect();
            return Err(format!("--only {name:?}: no such client (clients: {names:?})").into());
        }
    }
    // Whole blocks: the count measured is a multiple of `--block`.
    let count = count.div_ceil(block) * block;
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    for (name, kind) in kinds {
        if !wanted(name) {
            continue;
        }
        let t = topic(&format!("rt-{}", name.replace(' ', "-")), run);
        clients.push((
            name,
            match kind {
                Kind::KrpcKafka {
                    idempotent,
                    sessions,
                } => RoundTripper::krpc_kafka(&addr, t, idempotent, sessions).await?,
                Kind::Rskafka => RoundTripper::rskafka(&addr, t).await?,
                Kind::RskafkaTwoConnections => {
                    RoundTripper::rskafka_two_connections(&addr, t).await?
                }
            },
        ));
    }
    // Warm-up: connections dialled, producer ids fetched, fetch sessions opened.
    for (_, c) in clients.iter_mut() {
        for _ in 0..block {
            c.once().await?;
        }
    }
    // `--pause-ms MS`: a quiet moment before and after the measured round trips, each marked
    // on stderr, for a profiler driven from outside to start and stop in (`callgrind_control
    // -z` / `-d`: instruction counts of the round trips alone; see BENCHMARKS.md).
    let pause = Duration::from_millis(flags.get("pause-ms", 0)?);
    if !pause.is_zero() {
        eprintln!("wire-bench: measuring in {pause:?}");
        tokio::time::sleep(pause).await;
    }
    let n = clients.len();
    let mut hists: Vec<Histogram<u64>> = (0..n).map(|_| Histogram::new(3).unwrap()).collect();
    // The produce half (to its acknowledgement) and the fetch half (the rest), each alone.
    let mut produce_hists: Vec<Histogram<u64>> =
        (0..n).map(|_| Histogram::new(3).unwrap()).collect();
    let mut fetch_hists: Vec<Histogram<u64>> = (0..n).map(|_| Histogram::new(3).unwrap()).collect();
    let mut cpu = vec![0.0f64; n];
    let mut empty = vec![0u64; n];
    for b in 0..count / block {
        // Rotate who goes first in each block.
        for k in 0..n {
            let i = (b + k) % n;
            let started = process_cpu();
            for _ in 0..block {
                let t0 = Instant::now();
                let (produced, empties) = clients[i].1.once().await?;
                empty[i] += u64::from(empties);
                let elapsed = t0.elapsed();
                hists[i].record(elapsed.as_micros() as u64)?;
                produce_hists[i].record(produced.as_micros() as u64)?;
                fetch_hists[i].record(elapsed.saturating_sub(produced).as_micros() as u64)?;
            }
            cpu[i] += process_cpu() - started;
        }
    }
    if !pause.is_zero() {
        eprintln!("wire-bench: measured; pausing {pause:?}");
        tokio::time::sleep(pause).await;
    }
    eprintln!(
        "{count} round trips per client, interleaved in blocks of {block}: produce one {SIZE}-byte record, await its ack, fetch it back"
    );
    eprintln!(
        "{:<24} {:>10} {:>10} {:>14} {:>12} {:>12} {:>13}",
        "client",
        "p50 ms",
        "p99 ms",
        "produce p50 ms",
        "fetch p50 ms",
        "CPU µs/rt",
        "empty fetches"
    );
    for (i, (name, _)) in clients.iter().enumerate() {
        let h = &hists[i];
        let per = cpu[i] * 1e6 / h.len() as f64;
        let p50 = h.value_at_quantile(0.5) as f64 / 1e3;
        let p99 = h.value_at_quantile(0.99) as f64 / 1e3;
        let produce_p50 = produce_hists[i].value_at_quantile(0.5) as f64 / 1e3;
        let fetch_p50 = fetch_hists[i].value_at_quantile(0.5) as f64 / 1e3;
        eprintln!(
            "{name:<24} {p50:>10.3} {p99:>10.3} {produce_p50:>14.3} {fetch_p50:>12.3} {per:>12.1} {:>13}",
            empty[i]
        );
        println!(
            "{}",
            json!({"test": "roundtrip", "system": name, "run": run, "count": h.len(),
                   "p50_ms": p50, "p99_ms": p99, "produce_p50_ms": produce_p50,
                   "fetch_p50_ms": fetch_p50, "cpu_us_per_roundtrip": per,
                   "empty_fetches": empty[i]})
        );
    }
    Ok(())
}

/// Flags after the positional arguments: `--name value` pairs (a repeated flag keeps every
/// value) and the positionals.
struct Flags {
    positional: Vec<String>,
    named: HashMap<String, Vec<String>>,
}

impl Flags {
    fn parse(args: impl Iterator<Item = String>) -> AnyResult<Self> {
        let mut flags = Flags {
            positional: Vec::new(),
            named: HashMap::new(),
        };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            match arg.strip_prefix("--") {
                Some(name) => {
                    let value = args
                        .next()
                        .ok_or_else(|| format!("--{name} needs a value"))?;
                    flags.named.entry(name.to_string()).or_default().push(value);
                }
                None => flags.positional.push(arg),
            }
        }
        Ok(flags)
    }

    fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> AnyResult<T> {
        match self.named.get(name).and_then(|v| v.last()) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: cannot parse {v:?}").into()),
        }
    }

    fn required(&self, name: &str) -> AnyResult<String> {
        self.named
            .get(name)
            .and_then(|v| v.last().cloned())
            .ok_or_else(|| format!("--{name} is required").into())
    }
}

async fn kafka_layer(flags: Flags) -> AnyResult<()> {
    let addr = flags
        .positional
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let records: usize = flags
        .positional
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000)
        / BATCH
        * BATCH;
    if records == 0 {
        return Err(format!("RECORDS must be at least one batch ({BATCH})").into());
    }
    let run: u32 = flags.get("run", 0)?;
    let clients = flags
        .named
        .get("client")
        .cloned()
        .unwrap_or_else(|| vec!["krpc-kafka".into(), "rskafka".into()]);
    let results = kafka_layer_interleaved(&clients, &addr, records, run).await?;
    eprintln!(
        "{records} records of {SIZE} bytes, batches of {BATCH}; the clients in turns (produce {PRODUCE_BLOCK} records, one fetch per turn)"
    );
    eprintln!(
        "{:<12} {:>14} {:>14} {:>14} {:>14}",
        "client", "produce rec/s", "fetch rec/s", "produce CPU µs", "fetch CPU µs"
    );
    for r in &results {
        eprintln!(
            "{:<12} {:>14.0} {:>14.0} {:>14.3} {:>14.3}",
            r.client, r.produce_per_s, r.fetch_per_s, r.produce_cpu_us, r.fetch_cpu_us
        );
        println!(
            "{}",
            json!({"system": r.client, "test": "wire", "run": run, "records": records,
                   "produce_per_s": r.produce_per_s, "fetch_per_s": r.fetch_per_s,
                   "produce_cpu_us_per_record": r.produce_cpu_us,
                   "fetch_cpu_us_per_record": r.fetch_cpu_us})
        );
    }
    Ok(())
}

/// The raw echo's settings, shared by both sides.
struct Echo {
    client: KafkaClient,
    requests: String,
    replies: String,
    producer: Producer,
    fetch: FetchConfig,
    reply_size: usize,
}

impl Echo {
    async fn new(flags: &Flags) -> AnyResult<Self> {
        let addr = flags
            .positional
            .first()
            .cloned()
            .ok_or("BOOTSTRAP is required")?;
        let client = KafkaClient::connect(ClientConfig::new(addr)).await?;
        let requests = flags.required("requests")?;
        let replies = flags.required("replies")?;
        let partitions: i32 = flags.get("partitions", 16)?;
        client
            .create_topics(
                &[
                    NewTopic::new(&requests, partitions),
                    NewTopic::new(&replies, 1),
                ],
                true,
            )
            .await?;
        for t in [&requests, &replies] {
            client.wait_for_leaders(t, Duration::from_secs(30)).await?;
        }
        // As the RPC client and server: no linger (a request or reply goes out at once, in a
        // batch with whatever else is ready in the same scheduler turn), acks all.
        let producer = Producer::new(
            client.clone(),
            ProducerConfig::default()
                .with_linger(Duration::from_millis(flags.get("linger-ms", 0)?)),
        )?;
        let fetch = FetchConfig::default()
            .with_max_wait(Duration::from_millis(flags.get("fetch-wait-ms", 10)?));
        Ok(Self {
            client,
            requests,
            replies,
            producer,
            fetch,
            reply_size: flags.get("reply-size", 64)?,
        })
    }
}

/// Pads `id` to `size` bytes (at least its 8).
fn padded(id: u64, size: usize) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.resize(size.max(8), b'x');
    v
}

/// The id at the start of a record value (None: shorter than 8 bytes).
fn id_of(value: Option<&[u8]>) -> Option<u64> {
    Some(u64::from_be_bytes(value?.get(..8)?.try_into().ok()?))
}

/// Awaits a delivery in the background; failures are counted and the first few logged.
fn watch(delivery: krpc_kafka::producer::Delivery, failed: Arc<AtomicU64>) {
    tokio::spawn(async move {
        if let Err(e) = delivery.await {
            if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("wire-bench: a produce failed: {e}");
            }
        }
    });
}

async fn echo(flags: Flags) -> AnyResult<()> {
    let echo = Echo::new(&flags).await?;
    let mut fetcher = Fetcher::new(echo.client.clone(), echo.fetch.clone())?;
    for p in 0..echo.client.partition_count(&echo.requests).await? {
        fetcher.assign(&echo.requests, p, 0);
    }
    let failed = Arc::new(AtomicU64::new(0));
    eprintln!("wire-bench echo: {} -> {}", echo.requests, echo.replies);
    loop {
        for record in fetcher.poll().await? {
            let Some(id) = id_of(record.value.as_deref()) else {
                return Err(format!(
                    "{}/{} at {}: a request without an 8-byte id",
                    record.topic, record.partition, record.offset
                )
                .into());
            };
            let reply = ProducerRecord::value(padded(id, echo.reply_size));
            let delivery = echo.producer.send_to(&echo.replies, 0, reply).await?;
            watch(delivery, failed.clone());
        }
    }
}

async fn echo_caller(flags: Flags) -> AnyResult<()> {
    let echo = Echo::new(&flags).await?;
    let in_flight: usize = flags.get("in-flight", 128)?;
    let seconds: f64 = flags.get("seconds", 10.0)?;
    let request_size: usize = flags.get("request-size", 64)?;
    let mut fetcher = Fetcher::new(echo.client.clone(), echo.fetch.clone())?;
    fetcher.assign(&echo.replies, 0, 0);
    let failed = Arc::new(AtomicU64::new(0));
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let mut next_id = 0u64;
    let send = |id: u64| {
        let record = ProducerRecord::value(padded(id, request_size));
        let (producer, topic) = (echo.producer.clone(), echo.requests.clone());
        async move { producer.send(&topic, record).await }
    };

    // One call first: the echo may still be starting; it is not part of the measure.
    watch(send(next_id).await?, failed.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    'warm: loop {
        for r in fetcher.poll().await? {
            if id_of(r.value.as_deref()) == Some(next_id) {
                break 'warm;
            }
        }
        if Instant::now() > deadline {
            return Err("the echo did not answer within 60 s".into());
        }
    }
    next_id += 1;

    let mut hist = Histogram::<u64>::new(3)?;
    let cpu_before = process_cpu();
    let started = Instant::now();
    let stop_at = started + Duration::from_secs_f64(seconds);
    while sent.len() < in_flight {
        sent.insert(next_id, Instant::now());
        watch(send(next_id).await?, failed.clone());
        next_id += 1;
    }
    let mut last = started;
    let drain_deadline = stop_at + Duration::from_secs(30);
    while !sent.is_empty() {
        for r in fetcher.poll().await? {
            let Some(t0) = id_of(r.value.as_deref()).and_then(|id| sent.remove(&id)) else {
                continue; // a reply of an earlier run or of the warm-up
            };
            last = Instant::now();
            hist.record((last - t0).as_micros().max(1) as u64)?;
            if last < stop_at {
                sent.insert(next_id, Instant::now());
                watch(send(next_id).await?, failed.clone());
                next_id += 1;
            }
        }
        if Instant::now() > drain_deadline {
            return Err(format!("{} echoes unanswered 30 s after the run", sent.len()).into());
        }
    }
    let elapsed = (last - started).as_secs_f64();
    let cpu = process_cpu() - cpu_before;
    let calls = hist.len();
    println!(
        "{}",
        json!({"system": "krpc-kafka", "test": "raw_echo", "in_flight": in_flight,
               "request_size": request_size, "reply_size": echo.reply_size,
               "calls": calls, "seconds": elapsed, "calls_per_s": calls as f64 / elapsed,
               "p50_ms": hist.value_at_quantile(0.5) as f64 / 1e3,
               "p99_ms": hist.value_at_quantile(0.99) as f64 / 1e3,
               "cpu_s": cpu, "produce_errors": failed.load(Ordering::Relaxed)})
    );
    Ok(())
}

async fn sizes(flags: Flags) -> AnyResult<()> {
    let addr = flags.positional.first().ok_or("BOOTSTRAP is required")?;
    let topic = flags.positional.get(1).ok_or("TOPIC is required")?;
    let per_partition: usize = flags.get("records", 200)?;
    let client = KafkaClient::connect(ClientConfig::new(addr.clone())).await?;
    let fetch = FetchConfig::default().with_max_wait(Duration::from_millis(10));
    let (mut count, mut bytes) = (0usize, 0usize);
    for p in 0..client.partition_count(topic).await? {
        let mut fetcher = Fetcher::new(client.clone(), fetch.clone())?;
        fetcher.assign(topic, p, 0);
        let mut seen = 0;
        // Until this partition gives nothing (its end) or enough records.
        while seen < per_partition {
            let records = fetcher.poll().await?;
            if records.is_empty() {
                break;
            }
            for r in records.iter().take(per_partition - seen) {
                let len = |b: &Option<bytes::Bytes>| b.as_ref().map_or(0, |b| b.len());
                bytes += len(&r.key)
                    + len(&r.value)
                    + r.headers
                        .iter()
                        .map(|h| h.key.len() + len(&h.value))
                        .sum::<usize>();
                seen += 1;
            }
        }
        count += seen;
    }
    println!(
        "{}",
        json!({"topic": topic, "records": count,
               "mean_bytes": if count > 0 { bytes as f64 / count as f64 } else { 0.0 }})
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let result = match args.peek().map(String::as_str) {
        Some(cmd @ ("echo" | "echo-caller" | "sizes" | "roundtrip")) => {
            let cmd = cmd.to_string();
            args.next();
            match Flags::parse(args) {
                Err(e) => Err(e),
                Ok(flags) => match cmd.as_str() {
                    "echo" => echo(flags).await,
                    "echo-caller" => echo_caller(flags).await,
                    "roundtrip" => roundtrip(flags).await,
                    _ => sizes(flags).await,
                },
            }
        }
        _ => match Flags::parse(args) {
            Err(e) => Err(e),
            Ok(flags) => kafka_layer(flags).await,
        },
    };
    if let Err(e) = result {
        eprintln!("wire-bench: {e}");
        std::process::exit(1);
    }
}
