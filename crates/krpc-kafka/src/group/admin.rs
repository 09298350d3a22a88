//! Looking at groups from outside (what `kafka-consumer-groups.sh --list / --describe` and the
//! Java `Admin::listConsumerGroups / describeConsumerGroups / listConsumerGroupOffsets` show):
//! ListGroups (API 16) on every broker, DescribeGroups (API 15) and OffsetFetch (API 9) on the
//! group's coordinator.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest, GroupId, ListGroupsRequest};
use kafka_protocol::protocol::StrBytes;

use super::coordinator::find_coordinator;
use super::offset_commit::{fetch_committed, Offsets};
use super::payload::{decode_assignment, Assignment};
use crate::client::{KafkaClient, Lane};
use crate::error::{check_code, Result};

/// A group as ListGroups names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListedGroup {
    /// Group id.
    pub group_id: String,
    /// `consumer` for consumer groups (and kafka-rpc servers); empty for groups that only
    /// commit offsets.
    pub protocol_type: String,
    /// The state (`Stable`, `Empty`, ...), from ListGroups v4 (KIP-518); empty before.
    pub state: String,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty` or `Dead`.
    pub state: String,
    /// The assignor the group chose (`range`, `roundrobin`, ...; empty while rebalancing).
    pub protocol: String,
    /// The members, sorted by member id.
    pub members: Vec<GroupMemberDescription>,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupMemberDescription {
    /// Member id the coordinator gave it.
    pub member_id: String,
    /// Static membership id (KIP-345), if any.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The host the coordinator saw it connect from.
    pub client_host: String,
    /// Its partitions, decoded from the consumer protocol's assignment (empty while the group
    /// rebalances, or when the assignment is not in the consumer protocol).
    pub assignment: Assignment,
}

impl KafkaClient {
    /// Every group the cluster knows: ListGroups sent to each broker (each lists the groups it
    /// coordinates), sorted by id.
    ///
    /// # Errors
    /// A broker that cannot be reached or answers with an error, named.
    pub async fn list_groups(&self) -> Result<Vec<ListedGroup>> {
        self.refresh_metadata(&[]).await?;
        let brokers: Vec<String> = self.metadata_snapshot().brokers.into_values().collect();
        let mut groups = BTreeMap::new();
        for addr in brokers {
            let conn = self.connection(&addr, Lane::Default).await?;
            let resp = conn.send(&ListGroupsRequest::default()).await?;
            check_code(
                resp.error_code,
                conn.broker(),
                ApiKey::ListGroups,
                String::new,
            )?;
            for g in resp.groups {
                groups.insert(
                    g.group_id.0.to_string(),
                    ListedGroup {
                        group_id: g.group_id.0.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                        state: g.group_state.to_string(),
                    },
                );
            }
        }
        Ok(groups.into_values().collect())
    }

    /// The state and members of `group` (DescribeGroups on its coordinator). A group the
    /// coordinator does not know is described as `Dead` with no members (older brokers answer
    /// that; newer ones GROUP_ID_NOT_FOUND, read the same way).
    ///
    /// # Errors
    /// No coordinator, or the coordinator's error for the group, named.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let addr = find_coordinator(self, group).await?;
        let conn = self.connection(&addr, Lane::Default).await?;
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
        let resp = conn.send(&req).await?;
        let Some(g) = resp.groups.into_iter().next() else {
            return Err(crate::Error::Malformed {
                broker: conn.broker().to_string(),
                what: "DescribeGroups response".into(),
                reason: format!("no entry for group {group}"),
            });
        };
        // Newer brokers answer GROUP_ID_NOT_FOUND for a group they do not know; older ones
        // describe it as Dead with no members. Both mean the same here.
        if g.error_code == ResponseError::GroupIdNotFound.code() {
            return Ok(GroupDescription {
                group_id: group.to_string(),
                state: "Dead".into(),
                protocol: String::new(),
                members: Vec::new(),
            });
        }
        check_code(g.error_code, conn.broker(), ApiKey::DescribeGroups, || {
            format!(" group {group}")
        })?;
        let is_consumer = g.protocol_type.as_str() == "consumer";
        let mut members: Vec<GroupMemberDescription> = g
            .members
            .into_iter()
            .map(|m| GroupMemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                // An assignment this crate cannot read is shown as none, not as an error: the
                // group belongs to someone else and may use another protocol.
                assignment: if is_consumer && !m.member_assignment.is_empty() {
                    decode_assignment(m.member_assignment).unwrap_or_default()
                } else {
                    Assignment::new()
                },
            })
            .collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        Ok(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol: g.protocol_data.to_string(),
            members,
        })
    }

    /// The committed offsets of `group` for every partition of `topics` (OffsetFetch on the
    /// coordinator; -1 where the group has committed nothing).
    ///
    /// # Errors
    /// Unknown topic, no coordinator, or the coordinator's error, named.
    pub async fn group_committed(&self, group: &str, topics: &[&str]) -> Result<Offsets> {
        let mut wanted: HashMap<String, Vec<i32>> = HashMap::new();
        for t in topics {
            let info = self.topic(t).await?;
            wanted.insert(
                t.to_string(),
                info.partitions.iter().map(|p| p.id).collect(),
            );
        }
        let addr = find_coordinator(self, group).await?;
        let conn = self.connection(&addr, Lane::Default).await?;
        fetch_committed(&conn, group, &wanted).await
    }
}
