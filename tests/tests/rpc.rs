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
    kafka: kafka_rpc::krpc_kafka::KafkaClient,
    svc: &str,
    jobs: Arc<Mutex<HashSet<u32>>>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<kafka_rpc::ServerStats>,
) {
    let mut options = krpc_tests::tuning::server_options(svc);
    options.server_id = format!("{svc}-server");
    let server = Server::new(kafka, options)
        .expect("valid server options")
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
    let clients: Vec<kafka_rpc::RpcClient> =
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
                        CallOptions::default().with_timeout(Duration::from_secs(60)),
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
                        CallOptions::default().with_timeout(Duration::from_secs(60)),
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
    let opts = || CallOptions::default().with_timeout(Duration::from_secs(30));
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

/// A server of `svc` (concurrency and drain timeout given) with the methods of the seam tests:
/// `hot` waits for a permit of `gate`, `cold`/`ping` answer at once, `wait` waits on its
/// context's cancellation and records how late after its deadline it returned, `forever`
/// never returns (and counts its drops), `who` returns what its context holds.
struct SeamServer {
    gate: Arc<tokio::sync::Semaphore>,
    hot_started: Arc<std::sync::atomic::AtomicUsize>,
    forever_started: Arc<std::sync::atomic::AtomicUsize>,
    forever_dropped: Arc<std::sync::atomic::AtomicUsize>,
    wait_late_ms: Arc<Mutex<Option<i64>>>,
}

struct DropCount(Arc<std::sync::atomic::AtomicUsize>);
impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn now_ms() -> i64 {
    kafka_rpc::envelope::now_ms()
}

impl SeamServer {
    fn new() -> Self {
        Self {
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            hot_started: Default::default(),
            forever_started: Default::default(),
            forever_dropped: Default::default(),
            wait_late_ms: Default::default(),
        }
    }

    fn server(
        &self,
        kafka: kafka_rpc::krpc_kafka::KafkaClient,
        svc: &str,
        concurrency: usize,
        drain: Duration,
    ) -> Server {
        use std::sync::atomic::Ordering::SeqCst;
        let mut options = krpc_tests::tuning::server_options(svc);
        options.concurrency = concurrency;
        options.drain_timeout = drain;
        options.server_id = format!("{svc}-server");
        let (gate, hot_started) = (self.gate.clone(), self.hot_started.clone());
        let (fs, fd) = (self.forever_started.clone(), self.forever_dropped.clone());
        let late = self.wait_late_ms.clone();
        Server::new(kafka, options)
            .expect("valid server options")
            .method("hot", move |(): ()| {
                let (gate, started) = (gate.clone(), hot_started.clone());
                async move {
                    started.fetch_add(1, SeqCst);
                    gate.acquire().await.unwrap().forget();
                    Ok::<_, HandlerError>("hot")
                }
            })
            .method(
                "cold",
                |(): ()| async move { Ok::<_, HandlerError>("cold") },
            )
            .method(
                "ping",
                |(): ()| async move { Ok::<_, HandlerError>("pong") },
            )
            .method_with_context("wait", move |ctx: kafka_rpc::RequestContext, (): ()| {
                let late = late.clone();
                async move {
                    ctx.cancelled().await;
                    *late.lock().unwrap() = Some(now_ms() - ctx.deadline_ms().unwrap_or(0));
                    Ok::<_, HandlerError>(())
                }
            })
            .method("forever", move |(): ()| {
                fs.fetch_add(1, SeqCst);
                let guard = DropCount(fd.clone());
                async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                    Ok::<_, HandlerError>(())
                }
            })
            .method_with_context("who", |ctx: kafka_rpc::RequestContext, (): ()| async move {
                Ok::<_, HandlerError>((
                    ctx.metadata().get_str("tenant").map(str::to_string),
                    ctx.metadata().get("blob").map(|b| b.to_vec()),
                    ctx.routing_key().map(|k| k.to_vec()),
                    ctx.server_id().to_string(),
                    ctx.time_left().is_some_and(|t| t > Duration::ZERO),
                ))
            })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_service_with_no_request_topic_is_refused_and_creates_no_topic() {
    let addr = Broker::shared().addr().to_string();
    let kafka = krpc_tests::kafka::client(&addr).await;
    let options = krpc_tests::tuning::client_options().with_create_request_topics(false);
    let client = kafka_rpc::RpcClient::connect(kafka.clone(), options)
        .await
        .unwrap();
    let svc = service("typo");
    let started = Instant::now();
    let err = client
        .call::<_, i64>(&svc, "add", &(1, 2), CallOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kafka_rpc::RpcError::UnknownService { service, .. } if *service == svc),
        "{err}"
    );
    assert_eq!(err.code(), StatusCode::Unimplemented);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once"
    );
    let err = client
        .notify(&svc, "job", &(1u32,), NotifyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kafka_rpc::RpcError::UnknownService { .. }),
        "{err}"
    );
    let topic = kafka_rpc::naming::request_topic(&svc);
    kafka.invalidate_topic(&topic);
    assert!(
        kafka.partition_count(&topic).await.is_err(),
        "no request topic was made for the misspelt service"
    );
}

/// Options are checked when the thing using them is built, naming the setting, before
/// anything touches the cluster: `Server::new` refuses a concurrency of 0 (it used to be
/// `run`), `RpcClient::connect` a `max_in_flight` of 0 before making its reply topic (it used
/// to make the topic, then fail), `LegacyClient::connect` zero partitions before making its
/// topics (the broker's INVALID_PARTITIONS came back before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused_by_the_constructors_before_touching_the_cluster() {
    let addr = Broker::shared().addr().to_string();
    let kafka = krpc_tests::kafka::client(&addr).await;
    let refused = |err: kafka_rpc::RpcError, setting: &str| {
        assert!(
            matches!(&err, kafka_rpc::RpcError::InvalidArgument(m) if m.contains(setting)),
            "{setting}: {err}"
        );
    };

    let svc = service("refused-options");
    let err = Server::new(
        kafka.clone(),
        krpc_tests::tuning::server_options(&svc).with_concurrency(0),
    )
    .err()
    .expect("Server::new refuses concurrency 0");
    refused(err, "ServerOptions::concurrency");

    let reply_topic = krpc_tests::unique_topic("refused-replies");
    let options = krpc_tests::tuning::client_options()
        .with_reply_topic(reply_topic.clone())
        .with_max_in_flight(0);
    let err = kafka_rpc::RpcClient::connect(kafka.clone(), options)
        .await
        .err()
        .expect("RpcClient::connect refuses max_in_flight 0");
    refused(err, "ClientOptions::max_in_flight");

    let legacy = krpc_tests::unique_topic("refused-legacy");
    let options = krpc_tests::tuning::legacy_client_options(&legacy).with_partitions(0);
    let err = kafka_rpc::LegacyClient::connect(kafka.clone(), options)
        .await
        .err()
        .expect("LegacyClient::connect refuses 0 partitions");
    refused(err, "LegacyClientOptions::partitions");

    for topic in [
        kafka_rpc::naming::request_topic(&svc),
        reply_topic,
        kafka_rpc::legacy::server_topic(&legacy),
        kafka_rpc::legacy::client_topic(&legacy),
    ] {
        kafka.invalidate_topic(&topic);
        assert!(
            kafka.partition_count(&topic).await.is_err(),
            "{topic} was made although the options were refused"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_metadata_and_the_routing_key_reach_the_handlers_context() {
    let addr = Broker::shared().addr().to_string();
    let svc = service("meta");
    let seam = SeamServer::new();
    let kafka = krpc_tests::kafka::client(&addr).await;
    let (stop, server) =
        rpc::run_in_background(seam.server(kafka, &svc, 4, Duration::from_secs(5)));
    let client = rpc::client(&addr).await;
    type Who = (
        Option<String>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        String,
        bool,
    );
    let r = client
        .call::<_, Who>(
            &svc,
            "who",
            &(),
            CallOptions::default()
                .with_timeout(Duration::from_secs(30))
                .with_routing_key("acct-7")
                .with_metadata_entry("tenant", "acme")
                .with_metadata_entry("blob", vec![0u8, 255, 1]),
        )
        .await
        .unwrap();
    let (tenant, blob, key, server_id, has_time_left) = r.value;
    assert_eq!(tenant.as_deref(), Some("acme"));
    assert_eq!(blob.as_deref(), Some(&[0u8, 255, 1][..]));
    assert_eq!(key.as_deref(), Some(&b"acct-7"[..]));
    assert_eq!(server_id, format!("{svc}-server"));
    assert!(has_time_left);
    // A name outside the rule is refused before anything is sent.
    let err = client
        .call::<_, Who>(
            &svc,
            "who",
            &(),
            CallOptions::default().with_metadata_entry("Tenant", "x"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kafka_rpc::RpcError::InvalidArgument(_)),
        "{err}"
    );
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_waiting_on_cancellation_returns_at_the_deadline_and_frees_its_permit() {
    let addr = Broker::shared().addr().to_string();
    let svc = service("cancel");
    let seam = SeamServer::new();
    let kafka = krpc_tests::kafka::client(&addr).await;
    // One permit: the second call runs only if the first gave it back.
    let (stop, server) =
        rpc::run_in_background(seam.server(kafka, &svc, 1, Duration::from_secs(5)));
    let client = rpc::client(&addr).await;
    // Warm up: the server has joined and serves.
    client
        .call::<_, String>(
            &svc,
            "ping",
            &(),
            CallOptions::default().with_timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let err = client
        .call::<_, ()>(
            &svc,
            "wait",
            &(),
            CallOptions::default().with_timeout(Duration::from_millis(1500)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), StatusCode::DeadlineExceeded, "{err}");
    let late = wait::until("the handler to return", Duration::from_secs(10), || async {
        *seam.wait_late_ms.lock().unwrap()
    })
    .await;
    assert!(
        (-5..100).contains(&late),
        "the handler returned {late} ms after its deadline"
    );
    let r = client
        .call::<_, String>(
            &svc,
            "ping",
            &(),
            CallOptions::default().with_timeout(Duration::from_secs(10)),
        )
        .await
        .expect("the permit was released");
    assert_eq!(r.value, "pong");
    stop.send(()).unwrap();
    let stats = server.await.unwrap();
    assert_eq!(stats.deadline_exceeded, 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_routing_key_does_not_stall_calls_of_other_keys() {
    // Two permits. Four jobs of one routing key whose handler blocks: on the old server the
    // first ran, the second held the other permit waiting for it, and the serving loop itself
    // waited for a permit for the third, so a call of another key was never started.
    use std::sync::atomic::Ordering::SeqCst;
    let addr = Broker::shared().addr().to_string();
    let svc = service("hotkey");
    let seam = SeamServer::new();
    let kafka = krpc_tests::kafka::client(&addr).await;
    let (stop, server) =
        rpc::run_in_background(seam.server(kafka, &svc, 2, Duration::from_secs(5)));
    let client = rpc::client(&addr).await;
    client
        .call::<_, String>(
            &svc,
            "ping",
            &(),
            CallOptions::default().with_timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    for _ in 0..4 {
        client
            .notify(
                &svc,
                "hot",
                &(),
                NotifyOptions::default().with_routing_key("hot-key"),
            )
            .await
            .unwrap();
    }
    wait::until(
        "the first hot job to run",
        Duration::from_secs(10),
        || async { (seam.hot_started.load(SeqCst) == 1).then_some(()) },
    )
    .await;
    let r = client
        .call::<_, String>(
            &svc,
            "cold",
            &(),
            CallOptions::default()
                .with_timeout(Duration::from_secs(10))
                .with_routing_key("cold-key"),
        )
        .await
        .expect("a call of another key runs while the hot key is busy");
    assert_eq!(r.value, "cold");
    assert_eq!(
        seam.hot_started.load(SeqCst),
        1,
        "hot jobs run one at a time"
    );
    seam.gate.add_permits(4);
    wait::until("all hot jobs to run", Duration::from_secs(10), || async {
        (seam.hot_started.load(SeqCst) == 4).then_some(())
    })
    .await;
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_heard_while_requests_wait_for_a_permit_and_no_handler_outlives_run() {
    // One permit, three jobs that never finish (and ignore cancellation). On the old server
    // the serving loop waited for a permit for the second job inside its select!, so the
    // shutdown signal (and the commit tick) were never seen and `run` never returned.
    use std::sync::atomic::Ordering::SeqCst;
    let addr = Broker::shared().addr().to_string();
    let svc = service("stuck");
    let seam = SeamServer::new();
    let kafka = krpc_tests::kafka::client(&addr).await;
    let (stop, server) =
        rpc::run_in_background(seam.server(kafka, &svc, 1, Duration::from_secs(1)));
    let client = rpc::client(&addr).await;
    for _ in 0..3 {
        client
            .notify(&svc, "forever", &(), NotifyOptions::default())
            .await
            .unwrap();
    }
    wait::until("the first job to run", Duration::from_secs(30), || async {
        (seam.forever_started.load(SeqCst) == 1).then_some(())
    })
    .await;
    let asked = Instant::now();
    stop.send(()).unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("Server::run returns after a shutdown even with requests waiting for a permit")
        .unwrap();
    // drain_timeout (1 s) + cancel_grace (100 ms) + leaving the group.
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        seam.forever_dropped.load(SeqCst),
        seam.forever_started.load(SeqCst),
        "every handler started was dropped before run returned"
    );
    assert_eq!(stats.stopped, 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_bounds_the_calls_waiting_for_replies() {
    use std::sync::atomic::Ordering::SeqCst;
    let addr = Broker::shared().addr().to_string();
    let svc = service("inflight");
    let seam = SeamServer::new();
    let kafka = krpc_tests::kafka::client(&addr).await;
    let (stop, server) =
        rpc::run_in_background(seam.server(kafka, &svc, 8, Duration::from_secs(5)));
    let options = krpc_tests::tuning::client_options().with_max_in_flight(2);
    let client = kafka_rpc::RpcClient::connect(krpc_tests::kafka::client(&addr).await, options)
        .await
        .unwrap();
    client
        .call::<_, String>(
            &svc,
            "ping",
            &(),
            CallOptions::default().with_timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    // Five calls of distinct keys whose handler blocks: only two may be in flight.
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let (client, svc) = (client.clone(), svc.clone());
            tokio::spawn(async move {
                client
                    .call::<_, String>(
                        &svc,
                        "hot",
                        &(),
                        CallOptions::default()
                            .with_timeout(Duration::from_secs(30))
                            .with_routing_key(format!("k{i}")),
                    )
                    .await
            })
        })
        .collect();
    wait::until(
        "two calls to reach the server",
        Duration::from_secs(10),
        || async { (seam.hot_started.load(SeqCst) == 2).then_some(()) },
    )
    .await;
    assert_eq!(client.pending_calls(), 2, "the other three wait for room");
    // Let each through; every call completes.
    seam.gate.add_permits(5);
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap().value, "hot");
    }
    assert_eq!(seam.hot_started.load(SeqCst), 5);
    stop.send(()).unwrap();
    server.await.unwrap();
}

/// Review R5: a bound above tokio's semaphore maximum (`usize::MAX` meant as "unbounded")
/// panicked inside `Semaphore::new`; it is refused like 0, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_beyond_what_a_semaphore_holds_are_refused_not_a_panic() {
    let addr = Broker::shared().addr().to_string();
    for max_in_flight in [0, usize::MAX] {
        let options = krpc_tests::tuning::client_options().with_max_in_flight(max_in_flight);
        let err = kafka_rpc::RpcClient::connect(krpc_tests::kafka::client(&addr).await, options)
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("max_in_flight"), "{err}");
    }
    for concurrency in [0, usize::MAX] {
        let mut o = krpc_tests::tuning::server_options(&service("semaphore-max"));
        o.concurrency = concurrency;
        let err = kafka_rpc::Server::new(krpc_tests::kafka::client(&addr).await, o)
            .err()
            .expect("refused by Server::new");
        assert!(err.to_string().contains("concurrency"), "{err}");
    }
}
