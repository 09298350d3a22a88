//! The group membership requests: JoinGroup, SyncGroup, Heartbeat, LeaveGroup.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::GroupConfig;
use crate::connection::Connection;
use crate::error::{check_code, Result};

/// What JoinGroup told this member.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The new generation.
    pub generation: i32,
    /// Our member id.
    pub member_id: String,
    /// The leader's member id.
    pub leader: String,
    /// The assignment protocol the group chose.
    pub protocol: String,
    /// Every member with its subscription bytes (only the leader gets this).
    pub members: Vec<(String, Bytes)>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn ms(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

/// JoinGroup, repeating once with the member id the broker assigns when it requires one.
pub async fn join(
    conn: &Connection,
    cfg: &GroupConfig,
    member_id: &str,
    metadata: Bytes,
) -> Result<Joined> {
    let mut member_id = member_id.to_string();
    loop {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&cfg.group_id)))
            .with_session_timeout_ms(ms(cfg.session_timeout))
            .with_rebalance_timeout_ms(ms(cfg.rebalance_timeout))
            .with_member_id(s(&member_id))
            .with_group_instance_id(cfg.instance_id.as_deref().map(s))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(
                cfg.assignors
                    .iter()
                    .map(|a| {
                        JoinGroupRequestProtocol::default()
                            .with_name(StrBytes::from_static_str(a.name()))
                            .with_metadata(metadata.clone())
                    })
                    .collect(),
            );
        // The broker holds JoinGroup until every member has joined: up to the rebalance timeout.
        let timeout = cfg.rebalance_timeout + Duration::from_secs(5);
        let resp = conn.send_timeout(&req, timeout).await?;
        if resp.error_code == ResponseError::MemberIdRequired.code() && member_id.is_empty() {
            member_id = resp.member_id.to_string();
            continue;
        }
        check_code(resp.error_code, conn.broker(), ApiKey::JoinGroup, || {
            format!(" group {}", cfg.group_id)
        })?;
        return Ok(Joined {
            generation: resp.generation_id,
            member_id: resp.member_id.to_string(),
            leader: resp.leader.to_string(),
            protocol: resp
                .protocol_name
                .map(|p| p.to_string())
                .unwrap_or_default(),
            members: resp
                .members
                .into_iter()
                .map(|m| (m.member_id.to_string(), m.metadata))
                .collect(),
        });
    }
}

/// SyncGroup: the leader sends every member's assignment, everyone gets their own back.
pub async fn sync(
    conn: &Connection,
    cfg: &GroupConfig,
    joined: &Joined,
    assignments: Vec<(String, Bytes)>,
) -> Result<Bytes> {
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(&cfg.group_id)))
        .with_generation_id(joined.generation)
        .with_member_id(s(&joined.member_id))
        .with_group_instance_id(cfg.instance_id.as_deref().map(s))
        .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
        .with_protocol_name(Some(s(&joined.protocol)))
        .with_assignments(
            assignments
                .into_iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(&m))
                        .with_assignment(a)
                })
                .collect(),
        );
    let timeout = cfg.rebalance_timeout + Duration::from_secs(5);
    let resp = conn.send_timeout(&req, timeout).await?;
    check_code(resp.error_code, conn.broker(), ApiKey::SyncGroup, || {
        format!(" group {}", cfg.group_id)
    })?;
    Ok(resp.assignment)
}

/// One Heartbeat for `generation`.
pub async fn heartbeat(
    conn: &Connection,
    cfg: &GroupConfig,
    generation: i32,
    member_id: &str,
) -> Result<()> {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(&cfg.group_id)))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_group_instance_id(cfg.instance_id.as_deref().map(s));
    let resp = conn.send(&req).await?;
    check_code(resp.error_code, conn.broker(), ApiKey::Heartbeat, || {
        format!(" group {} generation {generation}", cfg.group_id)
    })
}

/// LeaveGroup, so the group rebalances at once instead of after the session timeout.
pub async fn leave(conn: &Connection, cfg: &GroupConfig, member_id: &str) -> Result<()> {
    let version = conn.version::<LeaveGroupRequest>()?;
    let req = if version >= 3 {
        LeaveGroupRequest::default()
            .with_group_id(GroupId(s(&cfg.group_id)))
            .with_members(vec![MemberIdentity::default()
                .with_member_id(s(member_id))
                .with_group_instance_id(cfg.instance_id.as_deref().map(s))
                .with_reason(Some(StrBytes::from_static_str(
                    "the consumer is closing",
                )))])
    } else {
        LeaveGroupRequest::default()
            .with_group_id(GroupId(s(&cfg.group_id)))
            .with_member_id(s(member_id))
    };
    let resp = conn.send(&req).await?;
    check_code(resp.error_code, conn.broker(), ApiKey::LeaveGroup, || {
        format!(" group {}", cfg.group_id)
    })?;
    for m in &resp.members {
        check_code(m.error_code, conn.broker(), ApiKey::LeaveGroup, || {
            format!(" group {} member {member_id}", cfg.group_id)
        })?;
    }
    Ok(())
}
