//! RPC end to end through a fault-injecting proxy in front of the real broker (issue 10, harness
//! part b): a server whose broker connections go half-open for 20 s under load, and a client
//! whose connections (its reply reader's included) are reset mid-call. Zero calls lost.
//!
//! The broker advertises the proxy's address, so every connection of every client goes through
//! it; faults single out the server's or the client's connections by Kafka client id.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_rpc::krpc_kafka::{ClientConfig, KafkaClient};
use kafka_rpc::{CallOptions, HandlerError, Server};
use krpc_tests::proxy::{FaultProxy, Target};
use krpc_tests::{rpc, wait, Broker, Storage};

const SERVER_ID: &str = "proxied-server";
const CALLER_ID: &str = "proxied-caller";

/// Logs to the test's output when `RUST_LOG` is set.
fn logs() {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

fn service(prefix: &str) -> String {
    krpc_tests::unique_topic(prefix).replace('.', "-")
}

/// A broker that advertises a proxy, and the proxy; `None` with an external broker.
fn broker_behind_proxy() -> Option<(Broker, FaultProxy)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let port = listener.local_addr().expect("proxy port").port();
    let broker = Broker::start_advertising(Storage::Memory, port)?;
    let proxy = FaultProxy::start(listener, broker.addr());
    Some((broker, proxy))
}

/// A krpc-kafka client through `proxy` named `client_id`, with test-sized timeouts.
async fn kafka_client(proxy: &FaultProxy, client_id: &str) -> KafkaClient {
    let config = ClientConfig::new(proxy.addr())
        .with_client_id(client_id)
        .with_connect_timeout(Duration::from_secs(5))
        .with_request_timeout(Duration::from_secs(5));
    KafkaClient::connect(config)
        .await
        .expect("connect through the proxy")
}

/// A server whose `work(i, ms)` sleeps `ms` and returns `i`, counting runs.
fn work_server(kafka: KafkaClient, svc: &str, runs: Arc<AtomicUsize>) -> Server {
    let mut o = krpc_tests::tuning::server_options(svc);
    o.server_id = "behind-proxy".into();
    o.session_timeout = Duration::from_secs(6);
    o.heartbeat_interval = Duration::from_millis(500);
    Server::new(kafka, o).expect("valid server options").method(
        "work",
        move |(i, ms): (u64, u64)| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, HandlerError>(i)
            }
        },
    )
}

/// The server's connections go silent for good (half-open: open, no FIN, no bytes) and its new
/// connections are blackholed for 20 s, while a client keeps calling. Every call is answered,
/// and the server recovers by itself: it must give up the silent connections (request
/// timeout) and dial new ones once the path heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_broker_connections_go_half_open_for_20_s_loses_no_call() {
    logs();
    let Some((_broker, proxy)) = broker_behind_proxy() else {
        eprintln!("skipped: an external broker cannot advertise the proxy");
        return;
    };
    let svc = service("half-open");
    let runs = Arc::new(AtomicUsize::new(0));
    let server = work_server(kafka_client(&proxy, SERVER_ID).await, &svc, runs.clone());
    let counters = server.counters();
    let (stop, task) = rpc::run_in_background(server);
    let client = kafka_rpc::RpcClient::connect(
        kafka_client(&proxy, CALLER_ID).await,
        krpc_tests::tuning::client_options(),
    )
    .await
    .expect("rpc client");

    // Load: four callers, each calling in turn until told to stop.
    let answered = Arc::new(AtomicUsize::new(0));
    let stop_load = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4u64 {
        let (client, svc, answered, stop_load) = (
            client.clone(),
            svc.clone(),
            answered.clone(),
            stop_load.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut results = Vec::new();
            let mut i = w * 1_000_000;
            while !stop_load.load(Ordering::SeqCst) {
                let r = client
                    .call::<_, u64>(
                        &svc,
                        "work",
                        &(i, 20u64),
                        CallOptions::default().with_timeout(Duration::from_secs(120)),
                    )
                    .await;
                if r.is_ok() {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                results.push((i, r.map(|r| r.value)));
                i += 1;
            }
            results
        }));
    }
    wait::until("calls to flow", Duration::from_secs(60), || async {
        (answered.load(Ordering::SeqCst) >= 40).then_some(())
    })
    .await;

    let server_side = Target::ClientId(SERVER_ID.into());
    proxy.blackhole(server_side.clone());
    let stalled = proxy.stall(&server_side);
    assert!(
        stalled >= 2,
        "the server's connections were stalled ({stalled})"
    );
    let during = answered.load(Ordering::SeqCst);
    // The fault lasts 20 s; calls sent meanwhile wait in the request topic.
    tokio::time::sleep(Duration::from_secs(20)).await;
    proxy.heal();
    let healed_at = Instant::now();
    let accepted_at_heal = proxy.accepted();
    wait::until(
        "the server to answer again after the path healed",
        Duration::from_secs(90),
        || async {
            let _ = accepted_at_heal;
            (answered.load(Ordering::SeqCst) >= during + 40).then_some(())
        },
    )
    .await;
    let recovery = healed_at.elapsed();
    stop_load.store(true, Ordering::SeqCst);
    let mut total = 0;
    for w in workers {
        for (i, r) in w.await.expect("worker") {
            assert_eq!(r.expect("every call is answered"), i);
            total += 1;
        }
    }
    stop.send(()).unwrap();
    let stats = task.await.expect("the server ran until stopped");
    eprintln!(
        "{total} calls answered; recovered {recovery:?} after the path healed; {stats}; {} runs",
        runs.load(Ordering::SeqCst)
    );
    assert!(counters.snapshot().ok >= total as u64);
}

/// A call is in flight when every connection of the calling client (its reply reader's, its
/// producer's, its metadata's) is reset. The reply reader reconnects and the caller gets its
/// reply; the call ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_reply_connection_is_reset_mid_call_gets_its_reply() {
    logs();
    let Some((_broker, proxy)) = broker_behind_proxy() else {
        eprintln!("skipped: an external broker cannot advertise the proxy");
        return;
    };
    let svc = service("reset-reply");
    let runs = Arc::new(AtomicUsize::new(0));
    let server = work_server(kafka_client(&proxy, SERVER_ID).await, &svc, runs.clone());
    let (stop, task) = rpc::run_in_background(server);
    let client = kafka_rpc::RpcClient::connect(
        kafka_client(&proxy, CALLER_ID).await,
        krpc_tests::tuning::client_options(),
    )
    .await
    .expect("rpc client");
    // The service is up: a first call is answered.
    client
        .call::<_, u64>(
            &svc,
            "work",
            &(1u64, 0u64),
            CallOptions::default().with_timeout(Duration::from_secs(60)),
        )
        .await
        .expect("first call");
    let caller = Target::ClientId(CALLER_ID.into());
    assert!(
        proxy.open(&caller) >= 2,
        "the caller's connections go through the proxy"
    );

    let call = {
        let (client, svc) = (client.clone(), svc.clone());
        tokio::spawn(async move {
            client
                .call::<_, u64>(
                    &svc,
                    "work",
                    &(2u64, 3_000u64),
                    CallOptions::default().with_timeout(Duration::from_secs(60)),
                )
                .await
        })
    };
    wait::until(
        "the server to start the call",
        Duration::from_secs(30),
        || async { (runs.load(Ordering::SeqCst) == 2).then_some(()) },
    )
    .await;
    let reset = proxy.reset(&caller);
    assert!(reset >= 2, "the caller's connections were reset ({reset})");
    let reply = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the reply arrives within 60 s")
        .expect("call task")
        .expect("the call is answered despite the reset");
    assert_eq!(reply.value, 2);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the call ran once");
    stop.send(()).unwrap();
    task.await.expect("the server ran until stopped");
}

/// Every byte between the server and the broker is delayed by 300 ms, so each fetch takes
/// longer than the server's commit interval (200 ms). Calls are still answered: the server
/// commits beside its poll. (It used to cancel the poll on every commit tick, so with a broker
/// this slow it never consumed a request.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_broker_answers_slower_than_its_commit_interval_still_serves() {
    logs();
    let Some((_broker, proxy)) = broker_behind_proxy() else {
        eprintln!("skipped: an external broker cannot advertise the proxy");
        return;
    };
    let svc = service("slow-broker");
    let runs = Arc::new(AtomicUsize::new(0));
    let server = work_server(kafka_client(&proxy, SERVER_ID).await, &svc, runs.clone());
    let counters = server.counters();
    let (stop, task) = rpc::run_in_background(server);
    let client = kafka_rpc::RpcClient::connect(
        kafka_client(&proxy, CALLER_ID).await,
        krpc_tests::tuning::client_options(),
    )
    .await
    .expect("rpc client");
    let call = |i: u64| {
        let (client, svc) = (client.clone(), svc.clone());
        async move {
            client
                .call::<_, u64>(
                    &svc,
                    "work",
                    &(i, 0u64),
                    CallOptions::default().with_timeout(Duration::from_secs(60)),
                )
                .await
        }
    };
    assert_eq!(call(1).await.expect("first call").value, 1);
    let slowed = proxy.delay(
        &Target::ClientId(SERVER_ID.into()),
        Duration::from_millis(300),
    );
    assert!(
        slowed >= 2,
        "the server's connections were slowed ({slowed})"
    );
    for i in 2..5 {
        assert_eq!(
            call(i).await.expect("a call through the slow path").value,
            i
        );
    }
    stop.send(()).unwrap();
    task.await.expect("the server ran until stopped");
    assert_eq!(counters.snapshot().ok, 4);
}
