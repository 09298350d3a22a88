//! `krpc consume TOPIC`: prints the records of any topic, for debugging, in the manner of
//! `kcat -C` and `kafkactl consume`: from the beginning, the end, an offset or N from the end;
//! up to the end offsets seen at start (or on and on with `--follow`), or `--count` records.
//! Keys and values are shown as text, hex, base64, JSON or msgpack-as-JSON; bytes that do not
//! fit the format asked for are shown in hex with a marker, never dropped.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine as _;
use krpc_kafka::{ConsumerRecord, Fetcher, IsolationLevel, OffsetSpec};
use serde_json::{json, Value};

use super::CmdResult;
use crate::broker_args::BrokerArgs;
use crate::exit::UsageError;
use crate::output::{table_growing, OutputArgs, OutputFormat};
use crate::timing_args::{positive_duration, FetchArgs};

/// Where to start reading each partition (`--offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The log start offset (kcat `-o beginning`).
    Beginning,
    /// The high watermark: only records written from now on (kcat `-o end`).
    End,
    /// This offset (clamped to the partition's log).
    Offset(i64),
    /// This many records before the high watermark (kcat `-o -N`).
    FromEnd(i64),
}

fn start_at(text: &str) -> Result<StartAt, String> {
    match text {
        "beginning" | "earliest" | "start" => Ok(StartAt::Beginning),
        "end" | "latest" => Ok(StartAt::End),
        _ => match text.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(StartAt::Offset(n)),
            Ok(n) => Ok(StartAt::FromEnd(n.saturating_neg())),
            Err(_) => Err(format!(
                "{text:?} is not an offset: beginning, end, N (an offset) or -N (N before the end)"
            )),
        },
    }
}

/// How a key, a value or a header value is shown.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    /// UTF-8 text; bytes that are not printable UTF-8 are shown in hex, marked.
    Text,
    /// Lowercase hex.
    Hex,
    /// Base64 (standard alphabet, padded).
    Base64,
    /// A JSON document, embedded as JSON in `-o json`; other bytes as text (or hex), marked.
    Json,
    /// MessagePack, shown as JSON (kafka-rpc's payloads): bin as a hex string, map keys that
    /// are not strings as their text (1 as "1"; a map whose keys then collide as a list of
    /// [key, value] pairs), ext as {"type": N, "data": hex}, NaN and infinities as strings;
    /// other bytes in hex, marked.
    Msgpack,
}

/// `--isolation`: the Java consumer's `isolation.level`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum Isolation {
    /// Every record, those of aborted or open transactions included.
    ReadUncommitted,
    /// Only records of committed transactions (and non-transactional ones), up to the last
    /// stable offset.
    ReadCommitted,
}

/// Options of `krpc consume`.
#[derive(clap::Args)]
#[command(after_help = "\
Output: -o table (default) prints PARTITION, OFFSET, TIMESTAMP, KEY, HEADERS and VALUE columns,
the rows of each fetch as they come (a column widens when a longer cell comes);
-o json prints one JSON object per line (JSON Lines, for jq): topic, partition, offset,
timestamp (ms since the epoch), timestamp_type, key, headers [{key, value}], value. Bytes that
are not what the format expects are shown in hex: in a table as `[hex] 00ff`, in JSON as the
hex string with key_encoding/value_encoding \"hex\" (and \"text\" for a JSON or msgpack format
that did not parse). A null key or value is (null) / null.

Examples:
  krpc consume orders -o json | jq .value
  krpc consume orders -p 0 --offset -10        # the last 10 records of partition 0
  krpc consume orders --offset end --follow    # what is written from now on")]
pub struct Args {
    /// The topic to read.
    topic: String,
    /// Read only this partition (repeatable); all partitions without it.
    #[arg(short = 'p', long = "partition", value_name = "PARTITION")]
    partitions: Vec<i32>,
    /// Where to start in each partition: beginning, end, an offset N, or -N (N records before
    /// the end).
    #[arg(long, default_value = "beginning", value_name = "OFFSET", value_parser = start_at, allow_hyphen_values = true)]
    offset: StartAt,
    /// Stop after this many records (over all partitions).
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    /// Keep reading past the end offsets seen at start, until Ctrl-C (or --count). Without it,
    /// the command stops at the end offsets the partitions had when it started.
    #[arg(short = 'f', long)]
    follow: bool,
    #[command(flatten)]
    output: OutputArgs,
    /// How keys are shown.
    #[arg(long, value_enum, default_value_t = DataFormat::Text, value_name = "FORMAT")]
    key_format: DataFormat,
    /// How values are shown.
    #[arg(long, value_enum, default_value_t = DataFormat::Text, value_name = "FORMAT")]
    value_format: DataFormat,
    /// Which records to read (Java: `isolation.level`) [default: read_uncommitted, or
    /// `isolation_level` of the config file's `[fetch]`]. With read_committed, "the end"
    /// (`--offset end`, -N, and where the read stops without --follow) is the last stable
    /// offset: records of a transaction still open are not waited for.
    #[arg(long, value_enum, value_name = "LEVEL")]
    isolation: Option<Isolation>,
    /// Without --follow: give up (exit 1, naming the partitions not read to their end) when no
    /// record came for this long while some remained to read.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = positive_duration)]
    timeout: Duration,
    #[command(flatten)]
    fetch: FetchArgs,
}

/// Whether `bytes` can be shown as text: UTF-8 with no control character but tab and newlines.
fn is_text(bytes: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(bytes).ok()?;
    (!s.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')))
    .then_some(s)
}

/// `bytes` shown as `format` asks: the JSON value, and the encoding actually used when it had
/// to fall back (`"hex"`, or `"text"` for JSON/msgpack that did not parse).
fn render(bytes: &[u8], format: DataFormat) -> (Value, Option<&'static str>) {
    let hex = || Value::String(hex::encode(bytes));
    let text = || match is_text(bytes) {
        Some(s) => (Value::String(s.to_string()), None),
        None => (hex(), Some("hex")),
    };
    match format {
        DataFormat::Text => text(),
        DataFormat::Hex => (hex(), None),
        DataFormat::Base64 => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            None,
        ),
        DataFormat::Json => match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => (v, None),
            Err(_) => match text() {
                (v, None) => (v, Some("text")),
                fallback => fallback,
            },
        },
        DataFormat::Msgpack => match msgpack_document(bytes) {
            Some(v) => (v, None),
            None => (hex(), Some("hex")),
        },
    }
}

/// `bytes` as one msgpack document shown as JSON (see [`DataFormat::Msgpack`]); `None` when
/// they are not exactly one document (a prefix would decode text: "hello" starts with the
/// fixint 104) or hold a string that is not UTF-8. rmpv reads every msgpack type (serde_json's
/// Value refuses bin and non-string keys), bounded in depth and preallocation.
pub(crate) fn msgpack_document(bytes: &[u8]) -> Option<Value> {
    let mut cursor = std::io::Cursor::new(bytes);
    let value = rmpv::decode::read_value(&mut cursor).ok()?;
    if cursor.position() != bytes.len() as u64 {
        return None;
    }
    msgpack_json(value)
}

/// A msgpack value as JSON (see [`DataFormat::Msgpack`]); `None` when a string is not UTF-8
/// (the whole value is then shown in hex, marked, rather than altered).
fn msgpack_json(v: rmpv::Value) -> Option<Value> {
    use rmpv::Value as M;
    let float = |f: f64, text: String| {
        serde_json::Number::from_f64(f).map_or(Value::String(text), Value::Number)
    };
    Some(match v {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => json!(u),
            (None, Some(i)) => json!(i),
            (None, None) => return None,
        },
        // Through its shortest text, so 0.1f32 shows as 0.1.
        M::F32(f) => float(f.to_string().parse().unwrap_or(f64::NAN), f.to_string()),
        M::F64(f) => float(f, f.to_string()),
        M::String(s) => Value::String(s.into_str()?),
        M::Binary(b) => Value::String(hex::encode(b)),
        M::Array(items) => Value::Array(
            items
                .into_iter()
                .map(msgpack_json)
                .collect::<Option<Vec<_>>>()?,
        ),
        M::Map(pairs) => {
            let pairs = pairs
                .into_iter()
                .map(|(k, v)| Some((msgpack_json(k)?, msgpack_json(v)?)))
                .collect::<Option<Vec<_>>>()?;
            let key_text = |k: &Value| match k {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut map = serde_json::Map::new();
            for (k, v) in &pairs {
                if map.insert(key_text(k), v.clone()).is_some() {
                    // Two keys with one text (1 and "1"): every pair, none dropped.
                    return Some(Value::Array(
                        pairs.into_iter().map(|(k, v)| json!([k, v])).collect(),
                    ));
                }
            }
            Value::Object(map)
        }
        M::Ext(kind, data) => json!({"type": kind, "data": hex::encode(data)}),
    })
}

/// A record as one line of `-o json`, its fields in this order.
#[derive(serde::Serialize)]
struct RecordLine<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    /// Milliseconds since the epoch.
    timestamp: i64,
    /// `create_time` or `log_append_time`.
    timestamp_type: &'static str,
    key: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_encoding: Option<&'static str>,
    headers: Vec<Value>,
    value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_encoding: Option<&'static str>,
}

/// A record's line of `-o json`.
fn record_line(
    r: &ConsumerRecord,
    key_format: DataFormat,
    value_format: DataFormat,
) -> RecordLine<'_> {
    let field = |bytes: Option<&[u8]>, format: DataFormat| match bytes {
        Some(b) => render(b, format),
        None => (Value::Null, None),
    };
    let (key, key_encoding) = field(r.key.as_deref(), key_format);
    let (value, value_encoding) = field(r.value.as_deref(), value_format);
    let headers = r
        .headers
        .iter()
        .map(|h| {
            let (value, fallback) = field(h.value.as_deref(), DataFormat::Text);
            let mut header = json!({"key": h.key, "value": value});
            if let Some(encoding) = fallback {
                header["value_encoding"] = json!(encoding);
            }
            header
        })
        .collect();
    RecordLine {
        topic: &r.topic,
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        timestamp_type: if r.log_append_time {
            "log_append_time"
        } else {
            "create_time"
        },
        key,
        key_encoding,
        headers,
        value,
        value_encoding,
    }
}

/// A rendered field as a table cell: text on one line (newlines and tabs escaped), JSON
/// compact, a fallback marked with its encoding.
fn cell(value: &Value, fallback: Option<&Value>) -> String {
    let text = match value {
        Value::Null => "(null)".to_string(),
        Value::String(s) => s
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
            .replace('\t', "\\t"),
        other => other.to_string(),
    };
    match fallback.and_then(Value::as_str) {
        Some(encoding) => format!("[{encoding}] {text}"),
        None => text,
    }
}

/// A record as a table row (from its JSON form, so both outputs show the same thing).
fn record_row(v: &Value) -> Vec<String> {
    let time = v["timestamp"]
        .as_i64()
        .filter(|t| *t >= 0)
        .map(|t| {
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + Duration::from_millis(t as u64),
            )
            .to_string()
        })
        .unwrap_or_else(|| "-".into());
    let headers: Vec<String> = v["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            format!(
                "{}={}",
                h["key"].as_str().unwrap_or_default(),
                cell(&h["value"], h.get("value_encoding"))
            )
        })
        .collect();
    vec![
        v["partition"].to_string(),
        v["offset"].to_string(),
        time,
        cell(&v["key"], v.get("key_encoding")),
        headers.join(", "),
        cell(&v["value"], v.get("value_encoding")),
    ]
}

const COLUMNS: [&str; 6] = [
    "partition",
    "offset",
    "timestamp",
    "key",
    "headers",
    "value",
];

/// Where the records go: JSON lines as they come, or table rows printed after each fetch (the
/// header once, the columns as wide as the widest cell so far), never all held to the end.
struct Printer {
    format: OutputFormat,
    rows: Vec<Vec<String>>,
    header_printed: bool,
    /// The content width of each table column so far.
    widths: Vec<u16>,
    printed: u64,
}

impl Printer {
    fn add(&mut self, line: &RecordLine<'_>) -> std::io::Result<()> {
        self.printed += 1;
        match self.format {
            OutputFormat::Json => {
                let text = serde_json::to_string(line).map_err(std::io::Error::other)?;
                writeln!(std::io::stdout().lock(), "{text}")
            }
            OutputFormat::Table => {
                let value = serde_json::to_value(line).map_err(std::io::Error::other)?;
                self.rows.push(record_row(&value));
                Ok(())
            }
        }
    }

    /// After each fetch: the rows so far are printed (a table per fetch).
    fn batch_done(&mut self) -> std::io::Result<()> {
        if !self.rows.is_empty() {
            self.print_rows()?;
        }
        std::io::stdout().flush()
    }

    fn print_rows(&mut self) -> std::io::Result<()> {
        let text = table_growing(&COLUMNS, &std::mem::take(&mut self.rows), &mut self.widths);
        let text = if self.header_printed {
            // The header once, at the top.
            text.split_once('\n')
                .map_or("", |(_, rest)| rest)
                .to_string()
        } else {
            text
        };
        self.header_printed = true;
        if !text.is_empty() {
            writeln!(std::io::stdout().lock(), "{text}")?;
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if self.format == OutputFormat::Table {
            if !self.rows.is_empty() || !self.header_printed {
                self.print_rows()?;
            }
            let n = self.printed;
            eprintln!("{n} record{}", if n == 1 { "" } else { "s" });
        }
        std::io::stdout().flush()
    }
}

/// Reads and prints the records.
pub async fn run(broker: &BrokerArgs, args: Args) -> CmdResult {
    let client = broker.connect().await?;
    let topic = args.topic.as_str();
    let info = client.topic(topic).await?;
    let all: Vec<i32> = info.partitions.iter().map(|p| p.id).collect();
    let partitions = if args.partitions.is_empty() {
        all.clone()
    } else {
        for p in &args.partitions {
            if !all.contains(p) {
                return Err(UsageError(format!(
                    "topic {topic} has no partition {p} (it has {})",
                    all.len()
                ))
                .into());
            }
        }
        let mut chosen = args.partitions.clone();
        chosen.sort_unstable();
        chosen.dedup();
        chosen
    };
    let mut config = broker.file.fetch();
    if let Some(wait) = args.fetch.fetch_max_wait {
        config.max_wait = wait;
    }
    if let Some(level) = args.isolation {
        config.isolation_level = match level {
            Isolation::ReadUncommitted => IsolationLevel::ReadUncommitted,
            Isolation::ReadCommitted => IsolationLevel::ReadCommitted,
        };
    }
    let earliest = client
        .list_offsets(topic, &partitions, OffsetSpec::Earliest)
        .await?;
    // The end a fetch of this isolation level reaches: the high watermark, or read committed
    // the last stable offset (a read-committed fetch stops there while a transaction is open,
    // so waiting for the high watermark would wait for the transaction).
    let latest = client
        .list_offsets_isolated(
            topic,
            &partitions,
            OffsetSpec::Latest,
            config.isolation_level,
        )
        .await?;
    let mut fetcher = Fetcher::new(client.clone(), config)?;
    // Without --follow each partition is read up to its end offset now; `ends` holds those
    // not yet read to it.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for &p in &partitions {
        let (low, high) = (earliest[&p], latest[&p]);
        let start = match args.offset {
            StartAt::Beginning => low,
            StartAt::End => high,
            StartAt::FromEnd(n) => high.saturating_sub(n).max(low),
            StartAt::Offset(n) if n < low => {
                eprintln!("krpc: {topic}/{p}: offset {n} is below the log start {low}; reading from {low}");
                low
            }
            StartAt::Offset(n) if n > high => {
                eprintln!(
                    "krpc: {topic}/{p}: offset {n} is past the end {high}; reading from {high}"
                );
                high
            }
            StartAt::Offset(n) => n,
        };
        if args.follow || start < high {
            fetcher.assign(topic, p, start);
        }
        if !args.follow && start < high {
            ends.insert(p, high);
        }
    }
    let mut printer = Printer {
        format: args.output.format,
        rows: Vec::new(),
        header_printed: false,
        widths: Vec::new(),
        printed: 0,
    };
    let limit = args.count.unwrap_or(u64::MAX);
    let mut last_progress = Instant::now();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut stopped_by_user = false;
    'read: while printer.printed < limit && (args.follow || !ends.is_empty()) {
        let records = if args.follow {
            tokio::select! {
                records = fetcher.poll() => records?,
                _ = &mut interrupted => {
                    stopped_by_user = true;
                    break 'read;
                }
            }
        } else {
            let idle = last_progress + args.timeout;
            if Instant::now() >= idle {
                let left: Vec<String> = ends
                    .iter()
                    .map(|(p, end)| {
                        let at = fetcher.position(topic, *p).unwrap_or(-1);
                        format!("{topic}/{p} at offset {at} of {end}")
                    })
                    .collect();
                printer.finish()?;
                return Err(format!(
                    "no record came for {:?} while some remained; not read to the end: {}",
                    args.timeout,
                    left.join(", ")
                )
                .into());
            }
            tokio::time::timeout_at(idle.into(), fetcher.poll())
                .await
                .unwrap_or(Ok(Vec::new()))?
        };
        if !records.is_empty() {
            last_progress = Instant::now();
        }
        for r in &records {
            if !args.follow && ends.get(&r.partition).is_none_or(|end| r.offset >= *end) {
                continue;
            }
            printer.add(&record_line(r, args.key_format, args.value_format))?;
            if printer.printed >= limit {
                break;
            }
        }
        printer.batch_done()?;
        ends.retain(|p, end| {
            let done = fetcher.position(topic, *p).is_some_and(|pos| pos >= *end);
            if done {
                fetcher.unassign(topic, *p);
            }
            !done
        });
    }
    printer.finish()?;
    // Its fetch session, if any, closed before exiting. After Ctrl-C the close waits behind
    // the long poll it cut short (one request at a time per connection) and, if the broker is
    // the reason for the Ctrl-C, for nothing: at most a second then.
    let close_wait = if stopped_by_user {
        Duration::from_secs(1).min(client.config().request_timeout)
    } else {
        client.config().request_timeout
    };
    fetcher.close(close_wait).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review S14: msgpack bin, integer-keyed maps and ext were shown entirely in hex (marked,
    /// as if not msgpack): serde_json's Value accepts none of them.
    #[test]
    fn msgpack_bin_non_string_keys_and_ext_are_shown_as_json() {
        use rmpv::Value as M;
        let value = M::Map(vec![
            (M::from("args"), M::Array(vec![M::Binary(vec![0, 1, 0xff])])),
            (
                M::from("counts"),
                M::Map(vec![(M::from(1), M::from("one")), (M::from(-2), M::Nil)]),
            ),
            (
                M::from("flags"),
                M::Map(vec![(M::Boolean(true), M::F32(0.1))]),
            ),
            (M::from("ext"), M::Ext(5, vec![0xab])),
            (M::from("nan"), M::F64(f64::NAN)),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        assert_eq!(
            render(&bytes, DataFormat::Msgpack),
            (
                json!({
                    "args": ["0001ff"],
                    "counts": {"1": "one", "-2": null},
                    "flags": {"true": 0.1},
                    "ext": {"type": 5, "data": "ab"},
                    "nan": "NaN",
                }),
                None
            )
        );
        // Keys whose text collides: every pair kept, as a list.
        let mut bytes = Vec::new();
        let colliding = M::Map(vec![
            (M::from(1), M::from("a")),
            (M::from("1"), M::from("b")),
        ]);
        rmpv::encode::write_value(&mut bytes, &colliding).unwrap();
        assert_eq!(
            render(&bytes, DataFormat::Msgpack),
            (json!([[1, "a"], ["1", "b"]]), None)
        );
    }

    #[test]
    fn offsets_parse_as_kcat_writes_them() {
        assert_eq!(start_at("beginning"), Ok(StartAt::Beginning));
        assert_eq!(start_at("end"), Ok(StartAt::End));
        assert_eq!(start_at("42"), Ok(StartAt::Offset(42)));
        assert_eq!(start_at("-10"), Ok(StartAt::FromEnd(10)));
        assert!(start_at("soon").is_err());
    }

    #[test]
    fn bytes_that_do_not_fit_the_format_are_shown_in_hex_and_marked() {
        assert_eq!(render(b"hello", DataFormat::Text), (json!("hello"), None));
        assert_eq!(
            render(&[0xff, 0xfe, 0x00], DataFormat::Text),
            (json!("fffe00"), Some("hex"))
        );
        assert_eq!(
            render(&[0, 0, 0, 5], DataFormat::Text),
            (json!("00000005"), Some("hex")),
            "control characters are not text"
        );
        assert_eq!(
            render(br#"{"a": 1}"#, DataFormat::Json),
            (json!({"a": 1}), None)
        );
        assert_eq!(
            render(b"not json", DataFormat::Json),
            (json!("not json"), Some("text"))
        );
        assert_eq!(
            render(&[0x92, 0x01, 0xa1, b'x'], DataFormat::Msgpack),
            (json!([1, "x"]), None)
        );
        assert_eq!(
            render(b"hello", DataFormat::Msgpack),
            (json!("68656c6c6f"), Some("hex")),
            "a msgpack prefix is not a msgpack value"
        );
        assert_eq!(render(b"hi", DataFormat::Base64), (json!("aGk="), None));
        assert_eq!(
            render(&[0xa2, 0xff, 0xfe], DataFormat::Msgpack),
            (json!("a2fffe"), Some("hex")),
            "a msgpack string that is not UTF-8"
        );
        assert_eq!(cell(&json!("fffe00"), Some(&json!("hex"))), "[hex] fffe00");
        assert_eq!(cell(&json!("a\nb"), None), "a\\nb");
    }
}
