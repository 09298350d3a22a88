//! `krpc topics list|create|grow|describe`.

use krpc_kafka::{NewTopic, OffsetSpec};

use serde_json::json;

use super::CmdResult;
use crate::broker_args::BrokerArgs;
use crate::output::{print_json, table, OutputArgs, OutputFormat};

/// Topic administration.
#[derive(clap::Subcommand)]
pub enum Command {
    /// List the cluster's topics with their partition counts.
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Replication factor (-1: the broker's default).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// A topic config, KEY=VALUE (repeatable), as `kafka-topics.sh --config`:
        /// e.g. `--config retention.ms=3600000`.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
        configs: Vec<(String, String)>,
    },
    /// Grow a topic to more partitions (CreatePartitions). Keyed records map to other
    /// partitions afterwards; running kafka-rpc servers notice within their metadata max age
    /// and grow the service's completion and dead-letter topics to match.
    Grow {
        /// Topic name.
        name: String,
        /// The new total number of partitions (more than it has now).
        #[arg(long)]
        partitions: i32,
    },
    /// Show a topic's partitions, leaders and offsets.
    Describe {
        /// Topic name.
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "{text:?} is not KEY=VALUE, e.g. retention.ms=3600000"
        )),
    }
}

/// Runs a topics subcommand.
pub async fn run(broker: &BrokerArgs, cmd: Command) -> CmdResult {
    match cmd {
        Command::List { output } => {
            let client = broker.connect().await?;
            client.refresh_metadata(&[]).await?;
            let md = client.metadata_snapshot();
            let mut topics: Vec<_> = md.topics.values().collect();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            match output.format {
                OutputFormat::Json => print_json(&json!(topics
                    .iter()
                    .map(|t| json!({ "topic": t.name, "partitions": t.partitions.len() }))
                    .collect::<Vec<_>>())),
                OutputFormat::Table => {
                    let rows: Vec<Vec<String>> = topics
                        .iter()
                        .map(|t| vec![t.name.clone(), t.partitions.len().to_string()])
                        .collect();
                    println!("{}", table(&["topic", "partitions"], &rows));
                }
            }
        }
        Command::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            if partitions < 1 {
                return Err(format!("--partitions must be at least 1, got {partitions}").into());
            }
            let client = broker.connect().await?;
            let topic = NewTopic::new(&name, partitions)
                .with_replication_factor(replication_factor)
                .with_configs(configs);
            client.create_topics(&[topic], false).await?;
            let plural = if partitions == 1 { "" } else { "s" };
            println!("created {name} with {partitions} partition{plural}");
        }
        Command::Grow { name, partitions } => {
            let client = broker.connect().await?;
            let before = client.partition_count(&name).await?;
            if partitions <= before {
                return Err(format!(
                    "{name} has {before} partitions; --partitions must be more than that (Kafka never shrinks a topic)"
                )
                .into());
            }
            client.create_partitions(&name, partitions).await?;
            println!("grew {name} from {before} to {partitions} partitions");
        }
        Command::Describe { name, output } => {
            let client = broker.connect().await?;
            let info = client.topic(&name).await?;
            let ids: Vec<i32> = info.partitions.iter().map(|p| p.id).collect();
            let earliest = client
                .list_offsets(&name, &ids, OffsetSpec::Earliest)
                .await?;
            let latest = client.list_offsets(&name, &ids, OffsetSpec::Latest).await?;
            let md = client.metadata_snapshot();
            let offset = |map: &std::collections::HashMap<i32, i64>, id: i32| {
                map.get(&id).map_or_else(|| "?".to_string(), i64::to_string)
            };
            let rows: Vec<Vec<String>> = info
                .partitions
                .iter()
                .map(|p| {
                    let leader = md.brokers.get(&p.leader).map_or("none", String::as_str);
                    vec![
                        p.id.to_string(),
                        leader.to_string(),
                        offset(&earliest, p.id),
                        offset(&latest, p.id),
                    ]
                })
                .collect();
            // Configs set on the topic (not the broker's defaults); a broker without
            // DescribeConfigs is said so, not an error of the whole command.
            let configs: Vec<(String, String)> = match client.describe_topic_configs(&name).await {
                Ok(configs) => configs
                    .iter()
                    .filter(|(_, c)| !c.is_default)
                    .map(|(k, c)| (k.clone(), c.value.clone().unwrap_or("(hidden)".into())))
                    .collect(),
                Err(e) => {
                    eprintln!("krpc: cannot read the configs of {name}: {e}");
                    Vec::new()
                }
            };
            match output.format {
                OutputFormat::Json => print_json(&json!({
                    "topic": name,
                    "partitions": rows.iter().map(|r| json!({
                        "partition": r[0].parse::<i32>().ok(),
                        "leader": r[1],
                        "earliest": r[2].parse::<i64>().ok(),
                        "latest": r[3].parse::<i64>().ok(),
                    })).collect::<Vec<_>>(),
                    "configs": configs
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(v)))
                        .collect::<serde_json::Map<_, _>>(),
                })),
                OutputFormat::Table => {
                    println!("topic {name}: {} partitions", rows.len());
                    println!(
                        "{}",
                        table(&["partition", "leader", "earliest", "latest"], &rows)
                    );
                    for (k, v) in &configs {
                        println!("config {k}={v}");
                    }
                }
            }
        }
    }
    Ok(())
}
