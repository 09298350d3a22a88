//! What the test broker needs that Apache Kafka does not, set here once for every test.
//!
//! The library's defaults are the Java client's (`fetch.max.wait.ms` 500 ms, `session.timeout.ms`
//! 45 s, ...). nisshi answers a waiting fetch only when its wait runs out (it polls its storage
//! instead of waking on a produce), so with the defaults every reply would take about 250 ms;
//! and tests that kill a server should not wait 45 s for its partitions to move. So the tests
//! use short fetch waits and the group timings the suites were written for. Each test that
//! builds RPC options or runs `krpc` takes them from here.

use std::process::Command;
use std::time::Duration;

/// Fetch max wait for consumers against nisshi: about 5 ms of added latency per fetch.
pub const FETCH_MAX_WAIT: Duration = Duration::from_millis(10);
/// Session timeout of test servers: a killed server's partitions move within about this long.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat interval of test servers.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Rebalance timeout (JoinGroup) of test servers.
pub const REBALANCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Drain timeout of test servers: below the rebalance timeout, as `Server::new` requires.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Commit interval of test servers: redeliveries after a kill stay few.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(200);

/// Server options for `service` with the test broker's timings.
pub fn server_options(service: &str) -> kafka_rpc::ServerOptions {
    kafka_rpc::ServerOptions::new(service)
        .with_fetch_max_wait(FETCH_MAX_WAIT)
        .with_session_timeout(SESSION_TIMEOUT)
        .with_heartbeat_interval(HEARTBEAT_INTERVAL)
        .with_rebalance_timeout(REBALANCE_TIMEOUT)
        .with_drain_timeout(DRAIN_TIMEOUT)
        .with_commit_interval(COMMIT_INTERVAL)
}

/// Client options with the test broker's reply fetch wait. They also let the client create a
/// service's request topic (`create_request_topics`, off by default): the suites start servers
/// and clients at the same time, or clients first (calls waiting in Kafka), and must not race a
/// server's topic creation. The default refusal of unknown services is tested in `rpc.rs`
/// (`a_call_to_a_service_with_no_request_topic_is_refused_and_creates_no_topic`).
pub fn client_options() -> kafka_rpc::ClientOptions {
    kafka_rpc::ClientOptions::default()
        .with_reply_fetch_max_wait(FETCH_MAX_WAIT)
        .with_create_request_topics(true)
}

/// Python kafka-rpc 1.0.8 client options for `name` with the test broker's reply fetch wait.
pub fn legacy_client_options(name: &str) -> kafka_rpc::LegacyClientOptions {
    kafka_rpc::LegacyClientOptions::new(name).with_reply_fetch_max_wait(FETCH_MAX_WAIT)
}

/// The `krpc` binary as a command, with the test broker's timings in its environment
/// (`KRPC_FETCH_MAX_WAIT`, `KRPC_SESSION_TIMEOUT`, `KRPC_HEARTBEAT_INTERVAL`,
/// `KRPC_COMMIT_INTERVAL`), so every `krpc serve`, `call` and `bench` a test runs uses them.
pub fn krpc_command() -> Command {
    let mut cmd = Command::new(crate::bin_path::krpc());
    for (name, value) in [
        ("KRPC_FETCH_MAX_WAIT", FETCH_MAX_WAIT),
        ("KRPC_SESSION_TIMEOUT", SESSION_TIMEOUT),
        ("KRPC_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL),
        ("KRPC_COMMIT_INTERVAL", COMMIT_INTERVAL),
    ] {
        cmd.env(name, format!("{}ms", value.as_millis()));
    }
    // `call` and `bench` may run before the `serve` they call has made its topics (see
    // `client_options`).
    cmd.env("KRPC_CREATE_REQUEST_TOPICS", "true");
    cmd
}
