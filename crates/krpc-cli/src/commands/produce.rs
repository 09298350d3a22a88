//! `krpc produce TOPIC`: writes records to any topic, for debugging, in the manner of
//! `kcat -P`: the VALUE given, or one record per line of stdin, with a key (`-k`, or split off
//! each line at `--key-delimiter` as `kcat -K`), headers (`-H name=value`), a partition, a
//! codec. Every record's delivery is awaited; any failure fails the command.

use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead;
use std::str::FromStr;

use base64::Engine as _;
use bytes::Bytes;
use krpc_kafka::producer::Delivery;
use krpc_kafka::{Codec, Producer, ProducerRecord, RecordMetadata};
use serde_json::json;

use super::CmdResult;
use crate::broker_args::BrokerArgs;
use crate::exit::UsageError;
use crate::output::{table, OutputArgs, OutputFormat};

/// How the key and value given are written (`--key-format`, `--value-format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// The text as is (UTF-8).
    Text,
    /// Hex digits, decoded to bytes.
    Hex,
    /// Base64 (standard alphabet), decoded to bytes.
    Base64,
}

/// `--compression` (Java: `compression.type`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4.
    Lz4,
    /// zstd.
    Zstd,
}

/// Options of `krpc produce`.
#[derive(clap::Args)]
#[command(after_help = "\
Without VALUE, every line of stdin is a record (an empty line is an empty value). Output:
-o table (default) prints a summary (records written per partition, first and last offset);
-o json prints {\"topic\", \"partition\", \"offset\"} per record written, one per line. Exit
code 1 (or 3 when the broker cannot be reached) when any record is not delivered: the
records before and after it are still sent, and each failure is named on stderr. A bad input
line (not hex, ...) stops the input there instead (exit 2), after the records before it.

Examples:
  krpc produce orders -k user-1 -H source=cli '{\"id\": 1}'
  printf 'k1:v1\\nk2:v2\\n' | krpc produce orders --key-delimiter :
  echo deadbeef | krpc produce orders --value-format hex")]
pub struct Args {
    /// The topic to write to (it must exist: `krpc topics create`).
    topic: String,
    /// The value of the one record to write; without it, one record per line of stdin.
    value: Option<String>,
    /// Write to this partition; without it, the partition comes from the key (murmur2, as the
    /// Java client), or round robin for records without one.
    #[arg(short = 'p', long)]
    partition: Option<i32>,
    /// The key of every record.
    #[arg(short = 'k', long, conflicts_with = "key_delimiter")]
    key: Option<String>,
    /// Split each stdin line at the first DELIMITER into key and value (kcat -K); a line
    /// without it is a value with no key.
    #[arg(short = 'K', long, value_name = "DELIMITER", conflicts_with = "value")]
    key_delimiter: Option<String>,
    /// A header of every record, `name=value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = header)]
    headers: Vec<(String, String)>,
    /// How the key is written.
    #[arg(long, value_enum, default_value_t = InputFormat::Text, value_name = "FORMAT")]
    key_format: InputFormat,
    /// How values are written.
    #[arg(long, value_enum, default_value_t = InputFormat::Text, value_name = "FORMAT")]
    value_format: InputFormat,
    /// Compression of the batches (Java: `compression.type`) [default: none, or `codec` of
    /// the config file's `[producer]`].
    #[arg(short = 'z', long, value_enum, value_name = "CODEC")]
    compression: Option<Compression>,
    #[command(flatten)]
    output: OutputArgs,
}

fn header(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))
}

/// The bytes `input` stands for in `format`. Text is taken as is, UTF-8 or not (as kcat
/// does); hex and base64 must be ASCII.
fn decode(input: &[u8], format: InputFormat) -> Result<Bytes, String> {
    if format == InputFormat::Text {
        return Ok(Bytes::copy_from_slice(input));
    }
    let text = std::str::from_utf8(input).map_err(|_| "not text".to_string())?;
    match format {
        InputFormat::Text => unreachable!("returned above"),
        InputFormat::Hex => hex::decode(text.trim())
            .map(Bytes::from)
            .map_err(|e| format!("not hex: {e}")),
        InputFormat::Base64 => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(Bytes::from)
            .map_err(|e| format!("not base64: {e}")),
    }
}

/// Records written so far, for the output.
struct Written {
    json: bool,
    per_partition: BTreeMap<i32, (usize, i64, i64)>,
    total: usize,
}

impl Written {
    fn add(&mut self, meta: &RecordMetadata) {
        self.total += 1;
        if self.json {
            println!(
                "{}",
                json!({"topic": &*meta.topic, "partition": meta.partition, "offset": meta.offset})
            );
        }
        let e = self
            .per_partition
            .entry(meta.partition)
            .or_insert((0, meta.offset, meta.offset));
        e.0 += 1;
        e.1 = e.1.min(meta.offset);
        e.2 = e.2.max(meta.offset);
    }
}

/// `hay` split at the first `needle`.
fn split_once<'a>(hay: &'a [u8], needle: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = hay.windows(needle.len()).position(|w| w == needle)?;
    Some((&hay[..at], &hay[at + needle.len()..]))
}

/// The record of one input (the VALUE given, or stdin line number `line`).
fn record(args: &Args, line: usize, text: &[u8]) -> Result<ProducerRecord, UsageError> {
    let at = |what: &str, e: String| {
        UsageError(if args.value.is_some() {
            format!("the {what}: {e}")
        } else {
            format!("stdin line {line}: the {what}: {e}")
        })
    };
    let (key, value) = match &args.key_delimiter {
        Some(d) if !d.is_empty() => match split_once(text, d.as_bytes()) {
            Some((k, v)) => (Some(k), v),
            None => (None, text),
        },
        _ => (args.key.as_deref().map(str::as_bytes), text),
    };
    let mut record =
        ProducerRecord::value(decode(value, args.value_format).map_err(|e| at("value", e))?);
    if let Some(k) = key {
        record.key = Some(decode(k, args.key_format).map_err(|e| at("key", e))?);
    }
    for (name, value) in &args.headers {
        record = record.with_header(name.clone(), value.clone().into_bytes());
    }
    Ok(record)
}

/// Writes the records and prints where they went.
pub async fn run(broker: &BrokerArgs, args: Args) -> CmdResult {
    // A bad VALUE is refused before anything is sent.
    let single = match &args.value {
        Some(v) => Some(record(&args, 0, v.as_bytes())?),
        None => None,
    };
    let client = broker.connect().await?;
    let topic = args.topic.as_str();
    // Checked first, so an unknown topic or partition fails at once (a send to a partition
    // that does not exist would wait for the delivery timeout).
    let info = client.topic(topic).await?;
    if let Some(p) = args.partition {
        if !info.partitions.iter().any(|i| i.id == p) {
            return Err(UsageError(format!(
                "topic {topic} has no partition {p} (it has {})",
                info.partitions.len()
            ))
            .into());
        }
    }
    let mut config = broker.file.producer();
    if let Some(c) = args.compression {
        config.codec = Codec::from_str(&format!("{c:?}").to_lowercase())?;
    }
    let producer = Producer::new(client.clone(), config)?;
    let mut written = Written {
        json: args.output.format == OutputFormat::Json,
        per_partition: BTreeMap::new(),
        total: 0,
    };
    // Deliveries in input order; the oldest are awaited when too many wait.
    let mut pending: VecDeque<(usize, Delivery)> = VecDeque::new();
    let mut failed: Vec<(usize, krpc_kafka::Error)> = Vec::new();
    let send = |record: ProducerRecord| {
        let producer = producer.clone();
        async move {
            match args.partition {
                Some(p) => producer.send_to(topic, p, record).await,
                None => producer.send(topic, record).await,
            }
        }
    };
    let mut settle = |line: usize,
                      outcome: krpc_kafka::Result<RecordMetadata>,
                      written: &mut Written| match outcome {
        Ok(meta) => written.add(&meta),
        Err(e) => {
            eprintln!("krpc: record {line} not delivered: {e}");
            failed.push((line, e));
        }
    };
    // A line that cannot be read or made a record stops the input, but the records before it
    // are still awaited and reported: the user learns what was written.
    let mut input_error: Option<Box<dyn std::error::Error + Send + Sync>> = None;
    match single {
        Some(record) => match send(record).await {
            Ok(delivery) => settle(1, delivery.await, &mut written),
            Err(e) => settle(1, Err(e), &mut written),
        },
        None => {
            let stdin = std::io::stdin();
            // Lines of bytes: a value need not be UTF-8.
            for (i, line) in stdin.lock().split(b'\n').enumerate() {
                let line_no = i + 1;
                let mut line = match line {
                    Ok(line) => line,
                    Err(e) => {
                        input_error = Some(format!("reading stdin line {line_no}: {e}").into());
                        break;
                    }
                };
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let record = match record(&args, line_no, &line) {
                    Ok(record) => record,
                    Err(e) => {
                        input_error = Some(Box::new(e));
                        break;
                    }
                };
                match send(record).await {
                    Ok(delivery) => pending.push_back((line_no, delivery)),
                    Err(e) => settle(line_no, Err(e), &mut written),
                }
                while pending.len() >= 1000 {
                    let (n, d) = pending.pop_front().expect("not empty");
                    settle(n, d.await, &mut written);
                }
            }
            while let Some((n, d)) = pending.pop_front() {
                settle(n, d.await, &mut written);
            }
        }
    }
    if !written.json {
        let rows: Vec<Vec<String>> = written
            .per_partition
            .iter()
            .map(|(p, (n, first, last))| {
                vec![
                    p.to_string(),
                    n.to_string(),
                    first.to_string(),
                    last.to_string(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &["partition", "records", "first offset", "last offset"],
                &rows
            )
        );
        let n = written.total;
        eprintln!(
            "{n} record{} written to {topic}",
            if n == 1 { "" } else { "s" }
        );
    }
    if let Some(e) = input_error {
        eprintln!(
            "krpc: input stopped at the line below; {} record{} before it written, {} not delivered",
            written.total,
            if written.total == 1 { "" } else { "s" },
            failed.len()
        );
        return Err(e);
    }
    if let Some((line, error)) = failed.into_iter().next() {
        let n = written.total;
        return Err(Box::new(NotDelivered {
            text: format!(
                "record {line} (and any after it named above) not delivered; {n} written"
            ),
            source: error,
        }));
    }
    Ok(())
}

/// Some records were not delivered; the first failure is the source (for the exit code).
#[derive(Debug)]
struct NotDelivered {
    text: String,
    source: krpc_kafka::Error,
}

impl std::fmt::Display for NotDelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.text, self.source)
    }
}

impl std::error::Error for NotDelivered {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
