//! What an idle server and an idle client cost a cluster with the library's defaults (which
//! are the Java client's: `fetch.max.wait.ms` 500 ms, `heartbeat.interval.ms` 3 s, commits only
//! when progress moved): the requests each sends per second, counted by API at a Kafka-aware
//! proxy in front of the real broker. With the old defaults (10 ms fetch waits) an idle server
//! sent about a hundred fetches a second and so did an idle client.
//!
//! The broker holds a fetch for its whole max wait when no record arrives, as Apache Kafka does,
//! so what is counted here is what a real cluster would see from an idle member.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use kafka_rpc::{CallOptions, ClientOptions, HandlerError, RpcClient, Server, ServerOptions};
use krpc_tests::frame_proxy::FrameProxy;
use krpc_tests::{kafka, rpc, Broker};

/// How long the idle window is measured for.
const WINDOW: Duration = Duration::from_secs(10);
/// "A few requests a second at most" (issue 15), for each of the server and the client.
const MOST_PER_SECOND: f64 = 5.0;

fn per_second(
    before: &HashMap<ApiKey, usize>,
    after: &HashMap<ApiKey, usize>,
    secs: f64,
) -> (f64, String) {
    let mut total = 0usize;
    let mut by_api: Vec<(String, usize)> = after
        .iter()
        .map(|(api, n)| {
            (
                format!("{api:?}"),
                n - before.get(api).copied().unwrap_or(0),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    by_api.sort();
    let text = by_api
        .iter()
        .map(|(api, n)| {
            total += n;
            format!("{api} {:.2}/s", *n as f64 / secs)
        })
        .collect::<Vec<_>>()
        .join(", ");
    (total as f64 / secs, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_and_client_send_a_few_requests_a_second_with_the_defaults() {
    let addr = Broker::shared().addr().to_string();
    let service = krpc_tests::unique_topic("idle").replace('.', "-");
    let server_proxy = FrameProxy::start(&addr).await;
    let client_proxy = FrameProxy::start(&addr).await;

    // The defaults, deliberately: this measures what they cost.
    let server = Server::new(
        kafka::client(server_proxy.addr()).await,
        ServerOptions::new(&service),
    )
    .expect("valid server options")
    .method("add", |(a, b): (i64, i64)| async move {
        Ok::<_, HandlerError>(a + b)
    });
    let (stop, task) = rpc::run_in_background(server);
    let client = RpcClient::connect(
        kafka::client(client_proxy.addr()).await,
        // The server task may not have made its topics yet.
        ClientOptions::default().with_create_request_topics(true),
    )
    .await
    .expect("client");
    // One call: the server has joined its group and fetches, the client's reply reader runs.
    let sum: i64 = client
        .call(
            &service,
            "add",
            &(40, 2),
            CallOptions::default().with_timeout(Duration::from_secs(60)),
        )
        .await
        .expect("a call with the defaults")
        .value;
    assert_eq!(sum, 42);

    let (server_before, client_before) = (server_proxy.requests(), client_proxy.requests());
    let started = Instant::now();
    tokio::time::sleep(WINDOW).await; // the measured window: nothing happens in it on purpose
    let secs = started.elapsed().as_secs_f64();
    let (server_rate, server_apis) = per_second(&server_before, &server_proxy.requests(), secs);
    let (client_rate, client_apis) = per_second(&client_before, &client_proxy.requests(), secs);
    println!("idle server, defaults: {server_rate:.2} requests/s ({server_apis})");
    println!("idle client, defaults: {client_rate:.2} requests/s ({client_apis})");

    assert!(
        server_rate > 0.0,
        "an idle server still long-polls and heartbeats"
    );
    assert!(
        server_rate <= MOST_PER_SECOND,
        "an idle server sent {server_rate:.1} requests/s ({server_apis})"
    );
    assert!(
        client_rate <= MOST_PER_SECOND,
        "an idle client sent {client_rate:.1} requests/s ({client_apis})"
    );
    drop(client);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the server stops")
        .expect("server task");
}
