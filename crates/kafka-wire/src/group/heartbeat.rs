//! The heartbeat task: runs beside the consumer on the coordinator's own connection, so a
//! long-poll fetch never delays it.

use std::sync::Weak;
use std::time::Instant;

use super::state::Shared;
use super::{membership, GroupConfig};
use crate::client::Client;

/// Sends heartbeats while the member is stable; flags a rejoin when the coordinator asks for
/// one or when none succeeded for a whole session timeout. Ends when the member is dropped.
pub(super) async fn heartbeat_loop(client: Client, config: GroupConfig, shared: Weak<Shared>) {
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(config.heartbeat_interval).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (coordinator, generation, member_id) = {
            let m = shared.member();
            if !m.stable {
                last_ok = Instant::now();
                continue;
            }
            (m.coordinator.clone(), m.generation, m.member_id.clone())
        };
        let Some(addr) = coordinator else {
            shared.set_rejoin(true);
            continue;
        };
        let result = match client.connection(&addr, shared.lane).await {
            Ok(conn) => membership::heartbeat(&conn, &config, generation, &member_id).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => last_ok = Instant::now(),
            Err(e) => {
                if !shared.on_coordinator_error(&e) && last_ok.elapsed() >= config.session_timeout {
                    tracing::warn!(group = %config.group_id, error = %e, "no heartbeat for a session timeout; rejoining");
                    let mut m = shared.member();
                    m.stable = false;
                    m.coordinator = None;
                    shared.set_rejoin(true);
                }
            }
        }
    }
}
