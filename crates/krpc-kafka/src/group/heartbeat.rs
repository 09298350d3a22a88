//! The heartbeat task: runs beside the consumer on the coordinator's own connection, so a
//! long-poll fetch never delays it.
//!
//! As in the Java consumer since KIP-62, heartbeats do not depend on the caller polling: they go
//! on while the group is stable, after the coordinator announced a rebalance, and while the
//! caller finishes the work of revoked partitions, so a member that takes a while to rejoin
//! keeps its session. They pause only while our own JoinGroup/SyncGroup is in flight (the
//! coordinator counts a member waiting there as alive). The rejoin itself is due within the
//! rebalance timeout (`max.poll.interval.ms`); a caller that takes longer is removed by the
//! coordinator when the join phase ends, and the next heartbeat's UNKNOWN_MEMBER_ID makes it
//! rejoin as a new member.

use std::sync::Weak;
use std::time::Instant;

use super::state::{Reaction, Shared};
use super::{membership, GroupConfig};
use crate::client::KafkaClient;

/// Sends heartbeats while the member holds a generation; flags a rejoin when the coordinator
/// asks for one or when none succeeded for a whole session timeout. Ends when the member is
/// dropped or hit a fatal error.
pub(super) async fn heartbeat_loop(client: KafkaClient, config: GroupConfig, shared: Weak<Shared>) {
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(config.heartbeat_interval).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.fatal().is_some() {
            return;
        }
        let (generation, member_id) = {
            let m = shared.member();
            if !m.heartbeats() {
                last_ok = Instant::now();
                continue;
            }
            (m.generation, m.member_id.clone())
        };
        let result = match shared.coordinator(&client, &config.group_id).await {
            Ok(conn) => membership::heartbeat(&conn, &config, generation, &member_id).await,
            Err(e) => Err(e),
        };
        tracing::trace!(group = %config.group_id, generation, member = %member_id, ?result, "heartbeat");
        match result {
            Ok(()) => last_ok = Instant::now(),
            // The coordinator got it: our session is alive; the rejoin is flagged.
            Err(e) if shared.on_coordinator_error(&e) == Reaction::Rejoin => {
                last_ok = Instant::now();
            }
            Err(e) => {
                tracing::debug!(group = %config.group_id, error = %e, "heartbeat failed");
                if last_ok.elapsed() >= config.session_timeout && shared.member().heartbeats() {
                    tracing::warn!(group = %config.group_id, error = %e, "no heartbeat for a session timeout; rejoining");
                    shared.member().coordinator = None;
                    shared.set_rejoin(true);
                }
            }
        }
    }
}
