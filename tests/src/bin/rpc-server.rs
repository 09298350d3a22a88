//! A server process for the reliability tests. Methods: `work(n, ms)` sleeps `ms`, prints
//! `exec N` (so the test can count executions across processes) and returns `n`; `add(a, b)`.
//! Exits cleanly on SIGTERM, printing `stats ...`; the tests also kill it with -9.
//!
//! Usage: rpc-server BOOTSTRAP SERVICE SERVER_ID SESSION_MS COMMIT_INTERVAL_MS

use std::time::Duration;

use kafka_rpc::krpc_kafka::{ClientConfig, KafkaClient};
use kafka_rpc::{HandlerError, Server};

#[tokio::main]
async fn main() {
    tracing_subscriber_init();
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, service, server_id, session_ms, commit_ms] = &args[..] else {
        eprintln!("usage: rpc-server BOOTSTRAP SERVICE SERVER_ID SESSION_MS COMMIT_INTERVAL_MS");
        std::process::exit(2);
    };
    let kafka = KafkaClient::connect(ClientConfig::new(bootstrap))
        .await
        .expect("connect");
    let mut options = krpc_tests::tuning::server_options(service);
    options.server_id = server_id.clone();
    options.session_timeout = Duration::from_millis(session_ms.parse().unwrap());
    options.heartbeat_interval = options.session_timeout / 6;
    options.commit_interval = Duration::from_millis(commit_ms.parse().unwrap());
    let server = Server::new(kafka, options)
        .expect("valid server options")
        .method("work", |(n, ms): (u64, u64)| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            println!("exec {n}");
            Ok::<_, HandlerError>(n)
        })
        .method("add", |(a, b): (i64, i64)| async move {
            Ok::<_, HandlerError>(a + b)
        });
    let stats = server
        .run(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM");
            term.recv().await;
        })
        .await
        .expect("serve");
    println!("stats {stats}");
}

/// Logs the server's state changes (assignments) to stderr, where the tests read them.
fn tracing_subscriber_init() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,kafka_rpc=info,kafka_rpc::server::dispatch=debug",
        ))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
