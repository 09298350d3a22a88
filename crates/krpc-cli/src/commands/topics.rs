//! `krpc topics list|create|grow|describe`.

use kafka_wire::{NewTopic, OffsetSpec};

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
        } => {
            if partitions < 1 {
                return Err(format!("--partitions must be at least 1, got {partitions}").into());
            }
            let client = broker.connect().await?;
            let topic = NewTopic::new(&name, partitions).replication_factor(replication_factor);
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
        }
    }
    Ok(())
}
