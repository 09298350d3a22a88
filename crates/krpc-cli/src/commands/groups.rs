//! `krpc groups list|describe`: consumer groups as `kafka-consumer-groups.sh` shows them.

use krpc_kafka::OffsetSpec;
use serde_json::{json, Value};

use super::CmdResult;
use crate::broker_args::BrokerArgs;
use crate::output::{print_json, table, OutputArgs, OutputFormat};

/// Group inspection.
#[derive(clap::Subcommand)]
pub enum Command {
    /// List the cluster's groups with their state (ListGroups on every broker).
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show a group's members, their partitions, and the lag of each partition of the topics
    /// its members read (end offset minus committed offset).
    Describe {
        /// Group id (a kafka-rpc service's servers are `krpc.<service>.servers`).
        group: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Runs a groups subcommand.
pub async fn run(broker: &BrokerArgs, cmd: Command) -> CmdResult {
    match cmd {
        Command::List { output } => {
            let client = broker.connect().await?;
            let groups = client.list_groups().await?;
            match output.format {
                OutputFormat::Json => print_json(&Value::Array(
                    groups
                        .iter()
                        .map(|g| json!({"group": g.group_id, "protocol_type": g.protocol_type, "state": g.state}))
                        .collect(),
                )),
                OutputFormat::Table => {
                    let rows: Vec<Vec<String>> = groups
                        .iter()
                        .map(|g| vec![g.group_id.clone(), g.protocol_type.clone(), g.state.clone()])
                        .collect();
                    println!("{}", table(&["group", "protocol type", "state"], &rows));
                }
            }
        }
        Command::Describe { group, output } => {
            let client = broker.connect().await?;
            let described = client.describe_group(&group).await?;
            let mut topics: Vec<String> = described
                .members
                .iter()
                .flat_map(|m| m.assignment.keys().cloned())
                .collect();
            topics.sort();
            topics.dedup();
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let committed = client.group_committed(&group, &names).await?;
            let mut lag_rows = Vec::new();
            for t in &topics {
                let ids: Vec<i32> = client
                    .topic(t)
                    .await?
                    .partitions
                    .iter()
                    .map(|p| p.id)
                    .collect();
                let latest = client.list_offsets(t, &ids, OffsetSpec::Latest).await?;
                for p in ids {
                    let c = committed
                        .get(t)
                        .and_then(|m| m.get(&p))
                        .copied()
                        .unwrap_or(-1);
                    let owner = described
                        .members
                        .iter()
                        .find(|m| m.assignment.get(t).is_some_and(|ps| ps.contains(&p)))
                        .map(|m| m.member_id.clone());
                    lag_rows.push(json!({
                        "topic": t,
                        "partition": p,
                        "end_offset": latest[&p],
                        "committed_offset": (c >= 0).then_some(c),
                        "lag": (c >= 0).then(|| (latest[&p] - c).max(0)),
                        "member_id": owner,
                    }));
                }
            }
            let value = json!({
                "group": described.group_id,
                "state": described.state,
                "protocol": described.protocol,
                "members": described.members.iter().map(|m| json!({
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "client_id": m.client_id,
                    "host": m.client_host,
                    "assignment": m.assignment,
                })).collect::<Vec<_>>(),
                "partitions": lag_rows,
            });
            match output.format {
                OutputFormat::Json => print_json(&value),
                OutputFormat::Table => {
                    println!(
                        "group {} ({}, assignor {}, {} members)",
                        described.group_id,
                        described.state,
                        if described.protocol.is_empty() {
                            "-"
                        } else {
                            &described.protocol
                        },
                        described.members.len()
                    );
                    let text = |v: &Value| match v {
                        Value::Null => "-".to_string(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let rows: Vec<Vec<String>> = value["partitions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            [
                                "topic",
                                "partition",
                                "end_offset",
                                "committed_offset",
                                "lag",
                                "member_id",
                            ]
                            .iter()
                            .map(|k| text(&r[*k]))
                            .collect()
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "topic",
                                "partition",
                                "end offset",
                                "committed",
                                "lag",
                                "member"
                            ],
                            &rows
                        )
                    );
                }
            }
        }
    }
    Ok(())
}
