//! kafka-rpc servers under everyday cluster events, against the real broker (issue 10, faults 4
//! and 5): a rebalance while a server drains long work, and a request topic that grows while
//! servers run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_rpc::{CallOptions, HandlerError, Server, ServerOptions};
use krpc_tests::{rpc, wait, Broker};

fn service(prefix: &str) -> String {
    krpc_tests::unique_topic(prefix).replace('.', "-")
}

/// A server whose `sleep(ms)` counts its runs in `runs` and `started`.
fn sleep_server(
    kafka: kafka_rpc::kafka_wire::Client,
    options: ServerOptions,
    runs: Arc<AtomicUsize>,
) -> Server {
    Server::new(kafka, options).method("sleep", move |(ms,): (u64,)| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, HandlerError>(ms)
        }
    })
}

/// Fault 4 (KIP-62): server A holds a call that runs far longer than the session timeout when
/// server B joins. A drains it before rejoining; its heartbeats must go on meanwhile, or the
/// coordinator expels it after one session timeout, B runs the call again, A's commit fails and
/// the group rebalances a second time. On the old code A stopped heartbeating at the rebalance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_draining_long_work_keeps_its_membership_when_another_joins() {
    let addr = Broker::shared().addr().to_string();
    let svc = service("long-drain");
    let options = |id: &str| {
        let mut o = ServerOptions::new(&svc);
        o.server_id = id.to_string();
        // Test-sized: a session far shorter than the call, so losing heartbeats shows.
        o.session_timeout = Duration::from_secs(3);
        o.heartbeat_interval = Duration::from_millis(300);
        o.rebalance_timeout = Duration::from_secs(30);
        o.drain_timeout = Duration::from_secs(20);
        o
    };
    let runs_a = Arc::new(AtomicUsize::new(0));
    let runs_b = Arc::new(AtomicUsize::new(0));
    let server_a = sleep_server(
        krpc_tests::kafka::client(&addr).await,
        options("server-a"),
        runs_a.clone(),
    );
    let counters_a = server_a.counters();
    let (stop_a, task_a) = rpc::run_in_background(server_a);
    wait::until(
        "A to get its partitions",
        Duration::from_secs(30),
        || async { (counters_a.snapshot().assignments >= 1).then_some(()) },
    )
    .await;

    let client = rpc::client(&addr).await;
    let call = {
        let (client, svc) = (client.clone(), svc.clone());
        tokio::spawn(async move {
            client
                .call::<_, u64>(
                    &svc,
                    "sleep",
                    &(9_000u64,),
                    CallOptions::default().timeout(Duration::from_secs(60)),
                )
                .await
        })
    };
    wait::until("A to start the call", Duration::from_secs(30), || async {
        (runs_a.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;

    let server_b = sleep_server(
        krpc_tests::kafka::client(&addr).await,
        options("server-b"),
        runs_b.clone(),
    );
    let counters_b = server_b.counters();
    let (stop_b, task_b) = rpc::run_in_background(server_b);

    let reply = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call is answered within 60 s")
        .expect("call task")
        .expect("call");
    assert_eq!(reply.value, 9_000);
    assert_eq!(reply.meta.server_id, "server-a");
    wait::until(
        "B to get its partitions",
        Duration::from_secs(40),
        || async { (counters_b.snapshot().assignments >= 1).then_some(()) },
    )
    .await;
    // Give a second rebalance (A expelled, then rejoining) the time it would take to show.
    let settle = std::time::Instant::now() + Duration::from_secs(5);
    wait::until("a quiet group", Duration::from_secs(10), || async {
        (std::time::Instant::now() >= settle).then_some(())
    })
    .await;
    // Counted before stopping: a server leaving rebalances the other.
    let (a, b) = (counters_a.snapshot(), counters_b.snapshot());
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    let (_, _) = (task_a.await.unwrap(), task_b.await.unwrap());
    assert_eq!(runs_a.load(Ordering::SeqCst), 1, "A ran the call once");
    assert_eq!(runs_b.load(Ordering::SeqCst), 0, "B did not run it again");
    assert_eq!(a.commit_failures, 0, "A's commits all succeeded: {a}");
    assert_eq!(
        a.assignments, 2,
        "A: its first assignment and B's join, no more: {a}"
    );
    assert_eq!(
        b.assignments, 1,
        "B joined once, with no second rebalance: {b}"
    );
}
