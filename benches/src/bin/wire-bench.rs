//! The Kafka layer alone: krpc-kafka against rskafka on the same broker. Produce and fetch
//! throughput of 64-byte records in batches of 1,000 (each batch awaited before the next), and
//! the latency of producing one record and fetching it back. Prints a table and JSON lines.
//!
//! Usage: `wire-bench BOOTSTRAP [RECORDS]`

use std::collections::BTreeMap;
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
const ROUND_TRIPS: usize = 200;

struct Result {
    client: &'static str,
    produce_per_s: f64,
    fetch_per_s: f64,
    rt_p50_ms: f64,
    rt_p99_ms: f64,
}

fn topic(name: &str) -> String {
    format!("wire-bench-{name}-{}", std::process::id())
}

async fn bench_krpc_kafka(addr: &str, records: usize) -> Result {
    let client = KafkaClient::connect(ClientConfig::new(addr))
        .await
        .expect("connect");
    let t = topic("krpc-kafka");
    client
        .create_topics(&[NewTopic::new(&t, 1)], false)
        .await
        .expect("create");
    let config = ProducerConfig::default()
        .with_linger(Duration::from_secs(60))
        .with_max_batch_bytes(16 << 20);
    let producer = Producer::new(client.clone(), config).expect("producer config");
    let value = vec![b'x'; SIZE];
    let started = Instant::now();
    for _ in 0..records / BATCH {
        for _ in 0..BATCH {
            producer
                .send_to(&t, 0, ProducerRecord::value(value.clone()))
                .await
                .expect("send");
        }
        producer.flush().await;
    }
    let produce = started.elapsed();

    let fetch_config = FetchConfig::default()
        .with_max_wait(Duration::from_millis(10))
        .with_partition_max_bytes(16 << 20)
        .with_max_bytes(64 << 20);
    let mut fetcher = Fetcher::new(client.clone(), fetch_config).expect("fetch config");
    fetcher.assign(&t, 0, 0);
    let started = Instant::now();
    let mut got = 0;
    while got < records {
        got += fetcher.poll().await.expect("fetch").len();
    }
    let fetch = started.elapsed();

    let single = Producer::new(
        client.clone(),
        ProducerConfig::default().with_linger(Duration::ZERO),
    )
    .expect("producer config");
    let mut hist = Histogram::<u64>::new(3).unwrap();
    for _ in 0..ROUND_TRIPS {
        let t0 = Instant::now();
        let md = single
            .send_to(&t, 0, ProducerRecord::value(value.clone()))
            .await
            .unwrap()
            .await
            .expect("produce");
        fetcher.assign(&t, 0, md.offset);
        let back = fetcher.poll().await.expect("fetch");
        assert_eq!(back.first().map(|r| r.offset), Some(md.offset));
        hist.record(t0.elapsed().as_micros() as u64).unwrap();
    }
    Result {
        client: "krpc-kafka",
        produce_per_s: records as f64 / produce.as_secs_f64(),
        fetch_per_s: records as f64 / fetch.as_secs_f64(),
        rt_p50_ms: hist.value_at_quantile(0.5) as f64 / 1e3,
        rt_p99_ms: hist.value_at_quantile(0.99) as f64 / 1e3,
    }
}

async fn bench_rskafka(addr: &str, records: usize) -> Result {
    let client = ClientBuilder::new(vec![addr.to_string()])
        .build()
        .await
        .expect("rskafka connect");
    let t = topic("rskafka");
    client
        .controller_client()
        .expect("controller")
        .create_topic(&t, 1, 1, 10_000)
        .await
        .expect("create");
    let partition = client
        .partition_client(&t, 0, UnknownTopicHandling::Retry)
        .await
        .expect("partition client");
    let record = || Record {
        key: None,
        value: Some(vec![b'x'; SIZE]),
        headers: BTreeMap::new(),
        timestamp: chrono::Utc::now(),
    };
    let started = Instant::now();
    for _ in 0..records / BATCH {
        let batch: Vec<Record> = (0..BATCH).map(|_| record()).collect();
        partition
            .produce(batch, Compression::NoCompression)
            .await
            .expect("produce");
    }
    let produce = started.elapsed();

    let started = Instant::now();
    let mut offset = 0;
    let mut got = 0;
    while got < records {
        let (batch, _high_watermark) = partition
            .fetch_records(offset, 1..(16 << 20), 10)
            .await
            .expect("fetch");
        got += batch.len();
        if let Some(last) = batch.last() {
            offset = last.offset + 1;
        }
    }
    let fetch = started.elapsed();

    let mut hist = Histogram::<u64>::new(3).unwrap();
    for _ in 0..ROUND_TRIPS {
        let t0 = Instant::now();
        let offsets = partition
            .produce(vec![record()], Compression::NoCompression)
            .await
            .expect("produce");
        let (back, _) = partition
            .fetch_records(offsets[0], 1..(1 << 20), 10)
            .await
            .expect("fetch");
        assert_eq!(back.first().map(|r| r.offset), Some(offsets[0]));
        hist.record(t0.elapsed().as_micros() as u64).unwrap();
    }
    Result {
        client: "rskafka",
        produce_per_s: records as f64 / produce.as_secs_f64(),
        fetch_per_s: records as f64 / fetch.as_secs_f64(),
        rt_p50_ms: hist.value_at_quantile(0.5) as f64 / 1e3,
        rt_p99_ms: hist.value_at_quantile(0.99) as f64 / 1e3,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let records: usize =
        args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000) / BATCH * BATCH;
    let ours = bench_krpc_kafka(&addr, records).await;
    let peer = bench_rskafka(&addr, records).await;
    eprintln!("{records} records of {SIZE} bytes, batches of {BATCH}; {ROUND_TRIPS} produce-then-fetch round trips");
    eprintln!(
        "{:<12} {:>14} {:>14} {:>12} {:>12}",
        "client", "produce rec/s", "fetch rec/s", "rt p50 ms", "rt p99 ms"
    );
    for r in [&ours, &peer] {
        eprintln!(
            "{:<12} {:>14.0} {:>14.0} {:>12.2} {:>12.2}",
            r.client, r.produce_per_s, r.fetch_per_s, r.rt_p50_ms, r.rt_p99_ms
        );
        println!(
            "{}",
            json!({"system": r.client, "test": "wire", "records": records, "produce_per_s": r.produce_per_s,
                   "fetch_per_s": r.fetch_per_s, "roundtrip_p50_ms": r.rt_p50_ms, "roundtrip_p99_ms": r.rt_p99_ms})
        );
    }
}
