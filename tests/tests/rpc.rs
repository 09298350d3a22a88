//! The RPC layer against the real broker: many clients and servers in separate processes, many
//! client instances in one process, calls and jobs queued while no server runs, and every
//! failure answered with a status.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_rpc::{CallOptions, HandlerError, NotifyOptions, Server, StatusCode};
use krpc_tests::process::LineProcess;
use krpc_tests::{rpc, wait, Broker};

fn service(prefix: &str) -> String {
    krpc_tests::unique_topic(prefix).replace('.', "-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_client_processes_and_three_server_processes_make_10000_correct_calls() {
    let addr = Broker::shared().addr().to_string();
    let svc = service("spread");
    let servers: Vec<LineProcess> = (0..3)
        .map(|i| rpc::serve_process(&addr, &svc, &format!("s{i}"), 64))
        .collect();
    let refs: Vec<&LineProcess> = servers.iter().collect();
    rpc::wait_for_servers(&refs, 16, Duration::from_secs(60)).await;

    let callers: Vec<LineProcess> = (0..2)
        .map(|c| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rpc-caller"));
            // Distinct salts: a reply delivered to the wrong client would carry a wrong sum.
            cmd.args([
                &addr,
                &svc,
                "5000",
                "64",
                &format!("{}", (c + 1) * 1_000_000),
            ]);
            LineProcess::spawn("rpc-caller", cmd)
        })
        .collect();
    let mut by_server: BTreeMap<String, u64> = BTreeMap::new();
    for mut caller in callers {
        caller.close_and_wait(Duration::from_secs(300));
        let summary: serde_json::Value =
            serde_json::from_str(caller.lines().last().expect("a summary line")).unwrap();
        assert_eq!(summary["ok"], 5000, "every call correct: {summary}");
        assert_eq!(summary["wrong"], 0, "{summary}");
        assert_eq!(summary["failed"], 0, "{summary}");
        for (server, n) in summary["by_server"].as_object().unwrap() {
            *by_server.entry(server.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    assert_eq!(by_server.values().sum::<u64>(), 10_000);
    assert_eq!(
        by_server.len(),
        3,
        "all three servers answered: {by_server:?}"
    );
    for (server, n) in &by_server {
        assert!(
            *n >= 1_500,
            "server {server} answered only {n} of 10000: {by_server:?}"
        );
    }
}

/// An in-process server of `svc` with the methods the tests use; runs until `stop` fires.
fn spawn_server(
    kafka: kafka_rpc::kafka_wire::Client,
    svc: &str,
    jobs: Arc<Mutex<HashSet<u32>>>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<kafka_rpc::ServerStats>,
) {
    let mut options = krpc_tests::tuning::server_options(svc);
    options.server_id = format!("{svc}-server");
    let server = Server::new(kafka, options)
        .method("add", |(a, b): (i64, i64)| async move {
            Ok::<_, HandlerError>(a + b)
        })
        .method("fail", |(why,): (String,)| async move {
            Err::<(), _>(HandlerError::from(why))
        })
        .method("panic", |(): ()| async move {
            if true {
                panic!("the handler blew up");
            }
            Ok::<(), HandlerError>(())
        })
        .method_blocking("job", move |(n,): (u32,)| {
            jobs.lock().unwrap().insert(n);
            Ok::<_, HandlerError>(())
        });
    rpc::run_in_background(server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_client_instances_in_one_process_each_get_their_own_replies() {
    let addr = Broker::shared().addr().to_string();
    let svc = service("twenty");
    let kafka = krpc_tests::kafka::client(&addr).await;
    let (stop, server) = spawn_server(kafka.clone(), &svc, Default::default());
    let clients: Vec<kafka_rpc::Client> =
        futures::future::join_all((0..20).map(|_| rpc::client(&addr))).await;
    let slots: HashSet<i32> = clients.iter().map(|c| c.reply_to().partition).collect();
    assert!(
        slots.len() < 20,
        "20 instances over 16 slots share some slots: {slots:?}"
    );
    let calls = clients.iter().enumerate().flat_map(|(c, client)| {
        let svc = svc.clone();
        (0..25).map(move |i| {
            let (client, svc) = (client.clone(), svc.clone());
            async move {
                let salt = (c as i64) * 1000;
                let r = client
                    .call::<_, i64>(
                        &svc,
                        "add",
                        &(i, salt),
                        CallOptions::default().timeout(Duration::from_secs(60)),
                    )
                    .await;
                (c, i, salt, r)
            }
        })
    });
    let results = futures::future::join_all(calls).await;
    assert_eq!(results.len(), 500);
    for (c, i, salt, r) in results {
        let value = r
            .unwrap_or_else(|e| panic!("client {c} call {i}: {e}"))
            .value;
        assert_eq!(value, i + salt, "client {c} got another client's reply");
    }
    let stray: u64 = clients.iter().map(|c| c.dropped_replies().0).sum();
    assert!(
        stray > 0,
        "clients sharing a slot saw (and dropped) each other's replies"
    );
    stop.send(()).unwrap();
    let stats = server.await.unwrap();
    assert_eq!(stats.ok, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_jobs_sent_while_no_server_runs_complete_once_one_starts() {
    let addr = Broker::shared().addr().to_string();
    let svc = service("queued");
    let client = rpc::client(&addr).await;
    let calls: Vec<_> = (0..10i64)
        .map(|i| {
            let (client, svc) = (client.clone(), svc.clone());
            tokio::spawn(async move {
                client
                    .call::<_, i64>(
                        &svc,
                        "add",
                        &(i, i),
                        CallOptions::default().timeout(Duration::from_secs(60)),
                    )
                    .await
            })
        })
        .collect();
    for n in 0..20u32 {
        client
            .notify(&svc, "job", &(n,), NotifyOptions::default())
            .await
            .expect("job queued");
    }
    wait::until(
        "the 10 calls to be waiting",
        Duration::from_secs(10),
        || async { (client.pending_calls() == 10).then_some(()) },
    )
    .await;

    // Only now does a server of the service start.
    let jobs = Arc::new(Mutex::new(HashSet::new()));
    let kafka = krpc_tests::kafka::client(&addr).await;
    let (stop, server) = spawn_server(kafka, &svc, jobs.clone());
    for (i, call) in calls.into_iter().enumerate() {
        let r = call
            .await
            .unwrap()
            .expect("a call queued before the server started");
        assert_eq!(r.value, 2 * i as i64);
        assert!(r.meta.queue_wait > Duration::ZERO, "it waited in Kafka");
    }
    wait::until("all 20 jobs to run", Duration::from_secs(30), || async {
        (jobs.lock().unwrap().len() == 20).then_some(())
    })
    .await;
    stop.send(()).unwrap();
    let stats = server.await.unwrap();
    assert_eq!((stats.ok, stats.one_way), (30, 20), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_gets_its_status_at_once_and_the_server_keeps_serving() {
    let addr = Broker::shared().addr().to_string();
    let svc = service("failures");
    let kafka = krpc_tests::kafka::client(&addr).await;
    let (stop, server) = spawn_server(kafka, &svc, Default::default());
    let client = rpc::client(&addr).await;
    let opts = || CallOptions::default().timeout(Duration::from_secs(30));
    // A first call waits for the server to join its group.
    assert_eq!(
        client
            .call::<_, i64>(&svc, "add", &(1, 1), opts())
            .await
            .unwrap()
            .value,
        2
    );

    let check = |r: Result<kafka_rpc::Response<serde_json::Value>, kafka_rpc::RpcError>,
                 code: StatusCode,
                 text: &str,
                 started: Instant| {
        let took = started.elapsed();
        let err = r.expect_err("an error status");
        assert_eq!(err.code(), code, "{err}");
        assert!(err.to_string().contains(text), "{err}");
        // The status comes back as a reply, not as a timeout (the timeout is 30 s).
        assert!(took < Duration::from_secs(1), "{code} took {took:?}");
    };
    let t = Instant::now();
    check(
        client.call(&svc, "no_such_method", &(1,), opts()).await,
        StatusCode::Unimplemented,
        "no_such_method",
        t,
    );
    let t = Instant::now();
    check(
        client.call(&svc, "add", &("one", "two"), opts()).await,
        StatusCode::InvalidArgument,
        "do not match the method's parameters",
        t,
    );
    let t = Instant::now();
    check(
        client
            .call(&svc, "fail", &("the disk is full",), opts())
            .await,
        StatusCode::Unknown,
        "the disk is full",
        t,
    );
    let t = Instant::now();
    check(
        client.call(&svc, "panic", &(), opts()).await,
        StatusCode::Internal,
        "the handler blew up",
        t,
    );

    assert_eq!(
        client
            .call::<_, i64>(&svc, "add", &(20, 22), opts())
            .await
            .unwrap()
            .value,
        42,
        "still serving"
    );
    stop.send(()).unwrap();
    let stats = server.await.unwrap();
    assert_eq!(
        (
            stats.unknown_method,
            stats.bad_arguments,
            stats.handler_errors,
            stats.panics,
            stats.ok
        ),
        (1, 1, 1, 1, 2),
        "{stats}"
    );
}
