//! `krpc wire-demo`: produce records, fetch them back, check them, print timings.

use std::time::{Duration, Instant};

use krpc_kafka::{Codec, FetchConfig, Fetcher, NewTopic, Producer, ProducerConfig, ProducerRecord};

use serde_json::json;

use super::CmdResult;
use crate::broker_args::BrokerArgs;
use crate::output::{print_json, table, OutputArgs, OutputFormat};
use crate::timing_args::FetchArgs;

/// Options of `krpc wire-demo`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    fetch: FetchArgs,
    /// Records to produce and fetch back.
    #[arg(long, default_value_t = 10_000)]
    records: usize,
    /// Compression codec: none, gzip, snappy, lz4.
    #[arg(long, default_value = "none")]
    codec: Codec,
    /// Single-record produce-then-fetch round trips to time.
    #[arg(long, default_value_t = 100)]
    round_trips: usize,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs the demo.
pub async fn run(broker: &BrokerArgs, args: Args) -> CmdResult {
    let client = broker.connect().await?;
    let topic = format!("krpc-wire-demo-{}", std::process::id());
    client
        .create_topics(&[NewTopic::new(&topic, 1)], true)
        .await?;
    // Progress goes to stderr: stdout is the result (a table, or one JSON document).
    eprintln!(
        "connected to {}; topic {topic}",
        broker.bootstrap.as_deref().unwrap_or_default()
    );

    let producer = Producer::new(
        client.clone(),
        ProducerConfig::default().with_codec(args.codec),
    )?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(args.records);
    for i in 0..args.records {
        let record = ProducerRecord::value(format!("record {i:08}"))
            .with_key(format!("k{i}"))
            .with_header("n", i.to_string());
        deliveries.push(producer.send_to(&topic, 0, record).await?);
    }
    producer.flush().await;
    for d in deliveries {
        d.await?;
    }
    let produce_time = started.elapsed();

    let mut fetch_config = FetchConfig::default();
    if let Some(wait) = args.fetch.fetch_max_wait {
        fetch_config.max_wait = wait;
    }
    let mut fetcher = Fetcher::new(client.clone(), fetch_config)?;
    fetcher.assign(&topic, 0, 0);
    let started = Instant::now();
    let mut got = 0usize;
    while got < args.records {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("fetched only {got} of {} records in 60 s", args.records).into());
        }
        for r in fetcher.poll().await? {
            let want = format!("record {:08}", r.offset);
            if r.value.as_deref() != Some(want.as_bytes()) || r.offset != got as i64 {
                return Err(
                    format!("record at offset {} is not what was produced", r.offset).into(),
                );
            }
            got += 1;
        }
    }
    let fetch_time = started.elapsed();

    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    for i in 0..args.round_trips {
        let t = Instant::now();
        producer
            .produce(&topic, ProducerRecord::value(format!("rt {i}")))
            .await?;
        let records = fetcher.poll().await?;
        if records.len() != 1 {
            return Err(format!("round trip {i} fetched {} records", records.len()).into());
        }
        hist.record(t.elapsed().as_micros() as u64)?;
    }
    fetcher.close(client.config().request_timeout).await; // its fetch session, if any

    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p50_ms = hist.value_at_quantile(0.5) as f64 / 1e3;
    let p99_ms = hist.value_at_quantile(0.99) as f64 / 1e3;
    match args.output.format {
        OutputFormat::Json => print_json(&json!({
            "topic": topic,
            "records": args.records,
            "codec": args.codec.name(),
            "produce_ms": ms(produce_time),
            "produce_records_per_s": rate(args.records, produce_time),
            "fetch_ms": ms(fetch_time),
            "fetch_records_per_s": rate(args.records, fetch_time),
            "round_trips": args.round_trips,
            "round_trip_p50_ms": (args.round_trips > 0).then_some(p50_ms),
            "round_trip_p99_ms": (args.round_trips > 0).then_some(p99_ms),
        })),
        OutputFormat::Table => {
            let rows = vec![
                vec![
                    format!("produce {} ({})", args.records, args.codec.name()),
                    format!("{:.1} ms", ms(produce_time)),
                    format!("{:.0}", rate(args.records, produce_time)),
                ],
                vec![
                    format!("fetch {} back, all checked", args.records),
                    format!("{:.1} ms", ms(fetch_time)),
                    format!("{:.0}", rate(args.records, fetch_time)),
                ],
            ];
            println!("{}", table(&["step", "time", "records/s"], &rows));
            if args.round_trips > 0 {
                println!(
                    "produce-then-fetch of one record x{}: p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms",
                    args.round_trips
                );
            }
            println!("wire demo ok");
        }
    }
    Ok(())
}
