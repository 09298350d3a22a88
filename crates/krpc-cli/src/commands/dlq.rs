//! `krpc dlq list|show|replay --service S`: the service's dead-letter topic
//! (`krpc.<service>.dead-letters`), read with the provenance headers servers write
//! (wire/WIRE.md, "Dead letters"), and replay of chosen records to the request topic.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_rpc::naming::{dead_letter_topic, request_topic};
use kafka_rpc::server::dead_letter::{replay, DeadLetter};
use krpc_kafka::{ConsumerRecord, KafkaClient, Producer};
use serde_json::{json, Value};

use super::CmdResult;
use crate::broker_args::BrokerArgs;
use crate::config_file::ConfigFile;
use crate::output::{print_json, table, OutputArgs, OutputFormat};
use crate::timing_args::FetchArgs;
use crate::topic_reader::read_to_end;

/// How long reading the dead-letter topic may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The service and the reading options every dlq subcommand takes.
#[derive(clap::Args)]
pub struct Common {
    /// The service whose dead letters to read.
    #[arg(short = 's', long, env = "KRPC_SERVICE")]
    service: String,
    #[command(flatten)]
    fetch: FetchArgs,
}

/// Dead-letter subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// List the dead letters: where each came from and why.
    List {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one dead letter whole: every header and the value.
    Show {
        #[command(flatten)]
        common: Common,
        /// Which one, as PARTITION:OFFSET of the dead-letter topic (from `dlq list`).
        #[arg(value_parser = position)]
        at: (i32, i64),
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Send dead-lettered requests to the request topic again, each with a new request id and
    /// no deadline, as one-way calls (their callers have stopped waiting). Raw undecodable
    /// batches, sealed payloads and records that are not requests are refused, each named; the
    /// command fails if any was.
    Replay {
        #[command(flatten)]
        common: Common,
        /// The records, as PARTITION:OFFSET of the dead-letter topic (repeatable).
        #[arg(value_parser = position, required_unless_present = "all")]
        at: Vec<(i32, i64)>,
        /// Replay every dead letter.
        #[arg(long, conflicts_with = "at")]
        all: bool,
    },
}

fn position(text: &str) -> Result<(i32, i64), String> {
    let (p, o) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not PARTITION:OFFSET, e.g. 0:42"))?;
    Ok((
        p.parse().map_err(|e| format!("partition {p:?}: {e}"))?,
        o.parse().map_err(|e| format!("offset {o:?}: {e}"))?,
    ))
}

async fn read(
    common: &Common,
    file: &ConfigFile,
    client: &KafkaClient,
    from: &BTreeMap<i32, i64>,
) -> Result<Vec<ConsumerRecord>, String> {
    kafka_rpc::naming::check_service(&common.service)?;
    let topic = dead_letter_topic(&common.service);
    match client.topic(&topic).await {
        // No server of the service ever dead-lettered anything (servers create it at start).
        Err(krpc_kafka::Error::UnknownTopic { .. }) => {
            eprintln!("krpc: {topic} does not exist: no dead letters");
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.to_string()),
        Ok(_) => {}
    }
    let mut config = file.fetch();
    if let Some(wait) = common.fetch.fetch_max_wait {
        config.max_wait = wait;
    }
    read_to_end(client, &topic, from, config, READ_TIMEOUT).await
}

/// A header value for people: UTF-8 text if it is printable, the provenance integers as
/// numbers, anything else as hex.
fn header_text(key: &str, value: Option<&[u8]>) -> String {
    let Some(v) = value else {
        return "(null)".into();
    };
    match (key, v.len()) {
        ("krpc-dlq-partition" | "krpc-reply-partition", 4) => {
            i32::from_be_bytes(v.try_into().unwrap_or_default()).to_string()
        }
        ("krpc-dlq-offset" | "krpc-dlq-offset-end" | "krpc-sent-ms" | "krpc-deadline-ms", 8) => {
            i64::from_be_bytes(v.try_into().unwrap_or_default()).to_string()
        }
        _ => match std::str::from_utf8(v) {
            Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
            _ => hex::encode(v),
        },
    }
}

fn letter_json(l: &DeadLetter) -> Value {
    json!({
        "partition": l.partition,
        "offset": l.offset,
        "timestamp_ms": l.timestamp_ms,
        "reason": l.reason,
        "source_topic": l.source_topic,
        "source_partition": l.source_partition,
        "source_offset": l.source_offset,
        "source_offset_end": l.source_offset_end,
        "server": l.server,
        "method": l.method,
        "request_id": l.request_id,
        "value_bytes": l.value_len,
        "value_dropped_bytes": l.value_dropped,
    })
}

/// Runs a dlq subcommand.
pub async fn run(broker: &BrokerArgs, cmd: Command) -> CmdResult {
    match cmd {
        Command::List { common, output } => {
            let client = broker.connect().await?;
            let letters: Vec<DeadLetter> = read(&common, &broker.file, &client, &BTreeMap::new())
                .await?
                .iter()
                .map(DeadLetter::from_record)
                .collect();
            match output.format {
                OutputFormat::Json => {
                    print_json(&Value::Array(letters.iter().map(letter_json).collect()))
                }
                OutputFormat::Table => {
                    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                    let rows: Vec<Vec<String>> = letters
                        .iter()
                        .map(|l| {
                            let source =
                                match (&l.source_topic, l.source_partition, l.source_offset) {
                                    (Some(t), Some(p), Some(o)) => format!("{t}/{p}@{o}"),
                                    _ => "-".into(),
                                };
                            vec![
                                format!("{}:{}", l.partition, l.offset),
                                humantime::format_rfc3339_millis(
                                    std::time::UNIX_EPOCH
                                        + Duration::from_millis(l.timestamp_ms.max(0) as u64),
                                )
                                .to_string(),
                                or_dash(&l.method),
                                or_dash(&l.reason),
                                source,
                                or_dash(&l.request_id),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &["at", "time", "method", "reason", "source", "request id"],
                            &rows
                        )
                    );
                    eprintln!("{} dead letters", letters.len());
                }
            }
        }
        Command::Show { common, at, output } => {
            let client = broker.connect().await?;
            let records = read(
                &common,
                &broker.file,
                &client,
                &BTreeMap::from([(at.0, at.1)]),
            )
            .await?;
            let record = records
                .iter()
                .find(|r| r.partition == at.0 && r.offset == at.1)
                .ok_or_else(|| {
                    format!("no dead letter at {}:{} (see `krpc dlq list`)", at.0, at.1)
                })?;
            let headers: Vec<Value> = record
                .headers
                .iter()
                .map(|h| json!({"key": h.key, "value": header_text(&h.key, h.value.as_deref())}))
                .collect();
            let value = record.value.as_deref();
            // The arguments of a native request are msgpack: shown as JSON when they decode.
            let decoded = value.and_then(super::consume::msgpack_document);
            let mut doc = letter_json(&DeadLetter::from_record(record));
            doc["headers"] = Value::Array(headers);
            doc["key_hex"] = json!(record.key.as_deref().map(hex::encode));
            doc["value_hex"] = json!(value.map(hex::encode));
            doc["value_msgpack"] = json!(decoded);
            match output.format {
                OutputFormat::Json => print_json(&doc),
                OutputFormat::Table => {
                    let rows: Vec<Vec<String>> = record
                        .headers
                        .iter()
                        .map(|h| vec![h.key.clone(), header_text(&h.key, h.value.as_deref())])
                        .collect();
                    println!(
                        "dead letter {}:{} ({} bytes of value)",
                        at.0,
                        at.1,
                        value.map_or(0, <[u8]>::len)
                    );
                    println!("{}", table(&["header", "value"], &rows));
                    match decoded {
                        Some(v) => println!("value (msgpack): {v}"),
                        None => println!(
                            "value (hex): {}",
                            value.map(hex::encode).unwrap_or_else(|| "(null)".into())
                        ),
                    }
                }
            }
        }
        Command::Replay { common, at, all } => {
            let client = broker.connect().await?;
            let from: BTreeMap<i32, i64> = if all {
                BTreeMap::new()
            } else {
                // Read each partition from its lowest chosen offset.
                let mut m = BTreeMap::new();
                for (p, o) in &at {
                    let e = m.entry(*p).or_insert(*o);
                    *e = (*e).min(*o);
                }
                m
            };
            let records = read(&common, &broker.file, &client, &from).await?;
            let chosen: Vec<&ConsumerRecord> = if all {
                records.iter().collect()
            } else {
                let mut chosen = Vec::new();
                for (p, o) in &at {
                    match records.iter().find(|r| r.partition == *p && r.offset == *o) {
                        Some(r) => chosen.push(r),
                        None => {
                            return Err(
                                format!("no dead letter at {p}:{o} (see `krpc dlq list`)").into()
                            )
                        }
                    }
                }
                chosen
            };
            let target = request_topic(&common.service);
            let producer = Producer::new(client.clone(), broker.file.producer())?;
            let (mut replayed, mut refused) = (0usize, 0usize);
            for r in chosen {
                match replay(r) {
                    Ok((record, id)) => {
                        let meta = producer.produce(&target, record).await?;
                        replayed += 1;
                        println!(
                            "replayed {}:{} as request {id} -> {target}/{}@{}",
                            r.partition, r.offset, meta.partition, meta.offset
                        );
                    }
                    Err(e) => {
                        refused += 1;
                        eprintln!("not replayed {}:{}: {e}", r.partition, r.offset);
                    }
                }
            }
            println!("{replayed} replayed, {refused} refused");
            if refused > 0 {
                return Err(
                    format!("{refused} dead letters could not be replayed (named above)").into(),
                );
            }
        }
    }
    Ok(())
}
