//! FindCoordinator: which broker coordinates a consumer group.

use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest};
use kafka_protocol::protocol::StrBytes;

use crate::client::KafkaClient;
use crate::error::{check_code, Error, Result};

/// The `host:port` of the coordinator of `group`, retried while the broker says it is loading.
pub async fn find_coordinator(client: &KafkaClient, group: &str) -> Result<String> {
    let mut backoff = client.backoff();
    loop {
        match find_once(client, group).await {
            Err(e) if e.is_retriable() => {
                if !backoff.wait().await {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

async fn find_once(client: &KafkaClient, group: &str) -> Result<String> {
    let conn = client.any_connection().await?;
    let version = conn.version::<FindCoordinatorRequest>()?;
    let key = StrBytes::from_string(group.to_string());
    // v4+ asks for a batch of keys; earlier versions for one.
    let req = if version >= 4 {
        FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![key])
    } else {
        FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_key(key)
    };
    let resp = conn.send(&req).await?;
    let context = || format!(" group {group}");
    let (code, host, port) = if version >= 4 {
        let c = resp.coordinators.first().ok_or_else(|| Error::Malformed {
            broker: conn.broker().to_string(),
            what: "FindCoordinator response".into(),
            reason: format!("no coordinator entry for group {group}"),
        })?;
        (c.error_code, c.host.to_string(), c.port)
    } else {
        (resp.error_code, resp.host.to_string(), resp.port)
    };
    check_code(code, conn.broker(), ApiKey::FindCoordinator, context)?;
    Ok(format!("{host}:{port}"))
}
