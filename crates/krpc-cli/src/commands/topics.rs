//! `krpc topics list|create|grow|describe`.

use krpc_kafka::{NewTopic, OffsetSpec};

use super::CmdResult;
use crate::broker_args::BrokerArgs;

/// Topic administration.
#[derive(clap::Subcommand)]
pub enum Command {
    /// List the cluster's topics with their partition counts.
    List {
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Create a topic.
    Create {
        #[command(flatten)]
        broker: BrokerArgs,
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
        #[command(flatten)]
        broker: BrokerArgs,
        /// Topic name.
        name: String,
        /// The new total number of partitions (more than it has now).
        #[arg(long)]
        partitions: i32,
    },
    /// Show a topic's partitions, leaders and offsets.
    Describe {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Topic name.
        name: String,
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
pub async fn run(cmd: Command) -> CmdResult {
    match cmd {
        Command::List { broker } => {
            let client = broker.connect().await?;
            client.refresh_metadata(&[]).await?;
            let md = client.metadata_snapshot();
            let mut topics: Vec<_> = md.topics.values().collect();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            for t in topics {
                println!("{}\t{} partitions", t.name, t.partitions.len());
            }
        }
        Command::Create {
            broker,
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            if partitions < 1 {
                return Err(format!("--partitions must be at least 1, got {partitions}").into());
            }
            let client = broker.connect().await?;
            let mut topic = NewTopic::new(&name, partitions).replication_factor(replication_factor);
            topic.configs = configs;
            client.create_topics(&[topic], false).await?;
            println!("created {name} with {partitions} partitions");
        }
        Command::Grow {
            broker,
            name,
            partitions,
        } => {
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
        Command::Describe { broker, name } => {
            let client = broker.connect().await?;
            let info = client.topic(&name).await?;
            let ids: Vec<i32> = info.partitions.iter().map(|p| p.id).collect();
            let earliest = client
                .list_offsets(&name, &ids, OffsetSpec::Earliest)
                .await?;
            let latest = client.list_offsets(&name, &ids, OffsetSpec::Latest).await?;
            let md = client.metadata_snapshot();
            println!("topic {name}: {} partitions", ids.len());
            println!("partition\tleader\tearliest\tlatest");
            for p in &info.partitions {
                let leader = md.brokers.get(&p.leader).map_or("none", String::as_str);
                println!(
                    "{}\t{}\t{}\t{}",
                    p.id, leader, earliest[&p.id], latest[&p.id]
                );
            }
            // Configs set on the topic (not the broker's defaults); a broker without
            // DescribeConfigs is said so, not an error of the whole command.
            match client.describe_topic_configs(&name).await {
                Ok(configs) => {
                    for (k, c) in configs.iter().filter(|(_, c)| !c.is_default) {
                        println!("config {k}={}", c.value.as_deref().unwrap_or("(hidden)"));
                    }
                }
                Err(e) => eprintln!("krpc: cannot read the configs of {name}: {e}"),
            }
        }
    }
    Ok(())
}
