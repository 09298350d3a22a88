//! Helpers for RPC tests: `krpc serve` processes and in-process servers.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::process::LineProcess;

/// Starts `krpc serve` for `service` as `server_id`, capturing its stdout and stderr lines.
pub fn serve_process(
    addr: &str,
    service: &str,
    server_id: &str,
    concurrency: usize,
) -> LineProcess {
    let mut cmd = crate::tuning::krpc_command();
    cmd.args([
        "serve",
        "--bootstrap",
        addr,
        "--service",
        service,
        "--server-id",
        server_id,
    ])
    .args(["--concurrency", &concurrency.to_string()])
    .env("KRPC_LOG", "warn,kafka_rpc=info");
    LineProcess::spawn_merged("krpc serve", cmd)
}

/// The request partitions a `krpc serve` process holds, from its last assignment log line.
pub fn served_partitions(p: &LineProcess) -> BTreeSet<i32> {
    let mut held = BTreeSet::new();
    for line in p.lines() {
        if line.contains("partitions revoked") {
            held.clear();
        } else if let Some(at) = line.find("assignment={") {
            let rest = &line[at..];
            let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else {
                continue;
            };
            held = rest[open + 1..close]
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect();
        }
    }
    held
}

/// Waits until `servers` hold disjoint sets of partitions covering 0..partitions, each non-empty.
pub async fn wait_for_servers(servers: &[&LineProcess], partitions: i32, timeout: Duration) {
    crate::wait::until(
        "the servers to split the request partitions",
        timeout,
        || async {
            let held: Vec<BTreeSet<i32>> = servers.iter().map(|s| served_partitions(s)).collect();
            let total: usize = held.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<i32> = held.iter().flatten().copied().collect();
            (total == partitions as usize
                && union == (0..partitions).collect()
                && held.iter().all(|h| !h.is_empty()))
            .then_some(())
        },
    )
    .await
}

/// A kafka-rpc client with its own krpc-kafka client.
pub async fn client(addr: &str) -> kafka_rpc::RpcClient {
    let kafka = crate::kafka::client(addr).await;
    kafka_rpc::RpcClient::connect(kafka, crate::tuning::client_options())
        .await
        .expect("rpc client")
}

/// A server running in a task until the returned sender fires (or drops); the task yields its
/// final counters.
pub fn run_in_background(
    server: kafka_rpc::Server,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<kafka_rpc::ServerStats>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
            .expect("server run")
    });
    (stop, task)
}
