//! `krpc status --service S`: who serves a service and how much waits for it. The members of the
//! service's group and their partitions, the backlog per request partition (end offset minus
//! committed offset, or minus the log start where nothing is committed: what
//! `kafka-consumer-groups.sh --describe` calls lag), dead letters and requests completed in
//! the last minute (read from the completions topic: a record completes one request, or many
//! when the server coalesced them).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_rpc::naming::{completions_topic, dead_letter_topic, request_topic, server_group};
use krpc_kafka::{Error as KafkaError, FetchConfig, Fetcher, KafkaClient, OffsetSpec};
use serde_json::{json, Value};

use super::CmdResult;
use crate::broker_args::BrokerArgs;
use crate::output::{print_json, table, OutputArgs, OutputFormat};

/// Options of `krpc status`.
#[derive(clap::Args)]
pub struct Args {
    /// The service.
    #[arg(short = 's', long, env = "KRPC_SERVICE")]
    service: String,
    #[command(flatten)]
    output: OutputArgs,
    /// Print it again every DURATION (e.g. 2s) until interrupted.
    #[arg(long, value_name = "DURATION", value_parser = crate::timing_args::positive_duration)]
    watch: Option<Duration>,
}

/// Prints the status once, or every `--watch` interval.
pub async fn run(broker: &BrokerArgs, args: Args) -> CmdResult {
    let client = broker.connect().await?;
    kafka_rpc::naming::check_service(&args.service)?;
    loop {
        let status = collect(&client, &args.service).await?;
        match args.output.format {
            OutputFormat::Json => print_json(&status),
            OutputFormat::Table => print_table(&status),
        }
        let Some(every) = args.watch else {
            return Ok(());
        };
        tokio::time::sleep(every).await;
        if args.output.format == OutputFormat::Table {
            println!();
        }
    }
}

/// The number of records of `topic` (end offset minus log start, summed), 0 if it does not exist.
async fn stored_records(client: &KafkaClient, topic: &str) -> Result<i64, KafkaError> {
    let ids = match client.topic(topic).await {
        Ok(info) => info.partitions.iter().map(|p| p.id).collect::<Vec<_>>(),
        Err(KafkaError::UnknownTopic { .. }) => return Ok(0),
        Err(e) => return Err(e),
    };
    let earliest = client
        .list_offsets(topic, &ids, OffsetSpec::Earliest)
        .await?;
    let latest = client.list_offsets(topic, &ids, OffsetSpec::Latest).await?;
    Ok(ids.iter().map(|p| latest[p] - earliest[p]).sum())
}

/// How long `krpc status` reads the last minute of completions before it gives up.
const COMPLETIONS_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The records appended to the completions `topic` since `since_ms` (by their timestamps;
/// ListOffsets by time) and the requests they complete (each record read; a coalesced record
/// completes many, see [`kafka_rpc::server::completed_requests`]). `(0, 0)` if the topic does
/// not exist. A record this version cannot read counts as one request.
async fn completed_since(
    client: &KafkaClient,
    topic: &str,
    since_ms: i64,
) -> Result<(i64, i64), Box<dyn std::error::Error + Send + Sync>> {
    let ids = match client.topic(topic).await {
        Ok(info) => info.partitions.iter().map(|p| p.id).collect::<Vec<_>>(),
        Err(KafkaError::UnknownTopic { .. }) => return Ok((0, 0)),
        Err(e) => return Err(e.into()),
    };
    let latest = client.list_offsets(topic, &ids, OffsetSpec::Latest).await?;
    let at = client
        .list_offsets(topic, &ids, OffsetSpec::Timestamp(since_ms))
        .await?;
    let mut fetcher = Fetcher::new(client.clone(), FetchConfig::default())?;
    let mut records = 0;
    for p in &ids {
        // -1: no record at or after the time in that partition.
        if at[p] >= 0 && at[p] < latest[p] {
            fetcher.assign(topic, *p, at[p]);
            records += latest[p] - at[p];
        }
    }
    let mut requests = 0;
    let deadline = Instant::now() + COMPLETIONS_READ_TIMEOUT;
    while ids
        .iter()
        .any(|p| fetcher.position(topic, *p).is_some_and(|at| at < latest[p]))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = tokio::time::timeout(left, fetcher.poll())
            .await
            .map_err(|_| {
                format!(
                    "reading the last minute of {topic} took longer than {COMPLETIONS_READ_TIMEOUT:?}"
                )
            })??;
        for record in batch {
            if record.offset < latest[&record.partition] {
                requests += kafka_rpc::server::completed_requests(&record).unwrap_or(1) as i64;
            }
            if record.offset + 1 >= latest[&record.partition] {
                fetcher.unassign(topic, record.partition);
            }
        }
    }
    fetcher.close(client.config().request_timeout).await; // its fetch session, if any
    Ok((records, requests))
}

/// Gathers the status as JSON (the table is drawn from it).
async fn collect(
    client: &KafkaClient,
    service: &str,
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let topic = request_topic(service);
    let group = server_group(service);
    let info = match client.topic(&topic).await {
        Ok(info) => info,
        Err(KafkaError::UnknownTopic { .. }) => {
            return Err(format!(
                "service {service} has no request topic ({topic} does not exist): no call was ever made to it and no server ever ran"
            )
            .into())
        }
        Err(e) => return Err(e.into()),
    };
    let ids: Vec<i32> = info.partitions.iter().map(|p| p.id).collect();
    let earliest = client
        .list_offsets(&topic, &ids, OffsetSpec::Earliest)
        .await?;
    let latest = client
        .list_offsets(&topic, &ids, OffsetSpec::Latest)
        .await?;
    let committed = client.group_committed(&group, &[topic.as_str()]).await?;
    let committed = committed.get(&topic).cloned().unwrap_or_default();
    let described = client.describe_group(&group).await?;
    let mut owner: BTreeMap<i32, String> = BTreeMap::new();
    let members: Vec<Value> = described
        .members
        .iter()
        .map(|m| {
            let parts = m.assignment.get(&topic).cloned().unwrap_or_default();
            for p in &parts {
                owner.insert(*p, m.client_id.clone());
            }
            json!({
                "member_id": m.member_id,
                "client_id": m.client_id,
                "host": m.client_host,
                "partitions": parts,
            })
        })
        .collect();
    let mut total = 0;
    let partitions: Vec<Value> = ids
        .iter()
        .map(|p| {
            let c = committed.get(p).copied().unwrap_or(-1);
            let from = if c < 0 {
                earliest[p]
            } else {
                c.max(earliest[p])
            };
            let backlog = (latest[p] - from).max(0);
            total += backlog;
            json!({
                "partition": p,
                "log_start_offset": earliest[p],
                "end_offset": latest[p],
                "committed_offset": (c >= 0).then_some(c),
                "backlog": backlog,
                "served_by": owner.get(p),
            })
        })
        .collect();
    let minute_ago = now_ms() - 60_000;
    let (completion_records, completed) =
        completed_since(client, &completions_topic(service), minute_ago).await?;
    Ok(json!({
        "service": service,
        "group": group,
        "group_state": described.state,
        "members": members,
        "partitions": partitions,
        "backlog": total,
        "dead_letters": stored_records(client, &dead_letter_topic(service)).await?,
        "completions_last_minute": completed,
        "completion_records_last_minute": completion_records,
    }))
}

fn print_table(s: &Value) {
    let text = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!(
        "service {}  group {} ({}, {} members)",
        text(&s["service"]),
        text(&s["group"]),
        text(&s["group_state"]),
        s["members"].as_array().map_or(0, Vec::len)
    );
    println!(
        "backlog {}  dead letters {}  completions in the last minute {}",
        s["backlog"], s["dead_letters"], s["completions_last_minute"]
    );
    let rows: Vec<Vec<String>> = s["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            [
                "partition",
                "end_offset",
                "committed_offset",
                "backlog",
                "served_by",
            ]
            .iter()
            .map(|k| text(&p[*k]))
            .collect()
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "partition",
                "end offset",
                "committed",
                "backlog",
                "served by"
            ],
            &rows
        )
    );
}

/// Milliseconds since the Unix epoch, as record timestamps are.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
