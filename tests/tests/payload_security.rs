//! Payload security against the real broker: sealed calls work and are not readable on the
//! wire; a wrong key, a tampered payload, a tampered header and an unsealed request are each
//! refused with UNAUTHENTICATED where a reply can be sent, counted, and never executed; a
//! request record written twice (a producer retry, or a replay) runs once and its caller gets
//! its result, never a refusal.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_rpc::envelope::{now_ms, Reply, ReplyTo, Request, RequestId};
use kafka_rpc::krpc_kafka::{
    FetchConfig, Fetcher, OffsetSpec, Producer, ProducerConfig, ProducerRecord,
};
use kafka_rpc::security::PayloadSecurity;
use kafka_rpc::{CallOptions, HandlerError, Server, StatusCode};
use krpc_tests::{kafka, Broker};

const SECRET: &str = "the payload secret of the tests";

fn security(secret: &str) -> PayloadSecurity {
    PayloadSecurity::new(7, secret).expect("derive key")
}

/// Sends crafted request records and reads the replies addressed to one reply partition.
struct Crafter {
    producer: Producer,
    replies: Fetcher,
    reply_to: ReplyTo,
    topic: String,
}

impl Crafter {
    async fn new(kafka: kafka_rpc::krpc_kafka::KafkaClient, svc: &str) -> Self {
        let reply_to = ReplyTo {
            topic: kafka_rpc::naming::DEFAULT_REPLY_TOPIC.into(),
            partition: 3,
        };
        let mut replies = Fetcher::new(
            kafka.clone(),
            FetchConfig::default().with_max_wait(Duration::from_millis(20)),
        )
        .expect("valid fetcher options");
        replies
            .assign_at(&reply_to.topic, reply_to.partition, OffsetSpec::Latest)
            .await
            .unwrap();
        Self {
            producer: Producer::new(kafka, ProducerConfig::default())
                .expect("valid producer options"),
            replies,
            reply_to,
            topic: kafka_rpc::naming::request_topic(svc),
        }
    }

    /// A `job(n)` request sealed with the right key.
    fn sealed_job(&self, n: u32) -> Request {
        let mut request = Request {
            id: RequestId::random(),
            method: "job".into(),
            reply_to: Some(self.reply_to.clone()),
            deadline_ms: None,
            sent_ms: now_ms(),
            payload: kafka_rpc::codec::encode_args(&(n,)).unwrap(),
            key_id: None,
            metadata: Default::default(),
        };
        let (key_id, sealed) = security(SECRET).seal(&request.aad(), &request.payload);
        request.payload = sealed;
        request.key_id = Some(key_id);
        request
    }

    async fn send(&self, record: ProducerRecord) {
        self.producer
            .send_to(&self.topic, 0, record)
            .await
            .unwrap()
            .await
            .expect("produced");
    }

    /// The replies to `id`, waiting until `count` of them arrived (at most 30 s).
    async fn replies(&mut self, id: RequestId, count: usize) -> Vec<Reply> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while got.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} replies to {id}",
                got.len()
            );
            for r in self.replies.poll().await.unwrap() {
                if let Ok(reply) = Reply::from_record(&r) {
                    if reply.id == id {
                        got.push(reply);
                    }
                }
            }
        }
        got
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_calls_work_and_every_forgery_is_refused_counted_and_never_run() {
    let addr = Broker::shared().addr().to_string();
    let svc = krpc_tests::unique_topic("sealed").replace('.', "-");
    let kafka = kafka::client(&addr).await;
    let jobs = Arc::new(Mutex::new(Vec::<u32>::new()));
    let mut options = krpc_tests::tuning::server_options(&svc);
    options.security = Some(security(SECRET));
    let recorded = jobs.clone();
    // Job 103 runs until the test opens this gate (at most 30 s).
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let held = gate.clone();
    let server = Server::new(kafka.clone(), options)
        .expect("valid server options")
        .method("add", |(a, b): (i64, i64)| async move {
            Ok::<_, HandlerError>(a + b)
        })
        .method_blocking("job", move |(n,): (u32,)| {
            if n == 103 {
                let (open, cv) = &*held;
                let guard = open.lock().unwrap();
                let _ = cv
                    .wait_timeout_while(guard, Duration::from_secs(30), |open| !*open)
                    .unwrap();
            }
            recorded.lock().unwrap().push(n);
            Ok::<_, HandlerError>(n)
        });
    let counters = server.counters();
    let (stop, task) = krpc_tests::rpc::run_in_background(server);

    // A sealed call works, and its arguments are not readable on the wire.
    let client = kafka_rpc::RpcClient::connect(
        kafka.clone(),
        krpc_tests::tuning::client_options().with_security(security(SECRET)),
    )
    .await
    .unwrap();
    let opts = || CallOptions::default().with_timeout(Duration::from_secs(30));
    assert_eq!(
        client
            .call::<_, i64>(&svc, "add", &(2, 3), opts())
            .await
            .unwrap()
            .value,
        5
    );
    let on_wire = kafka::read(
        &kafka,
        &kafka_rpc::naming::request_topic(&svc),
        {
            let mut p = 0;
            for candidate in 0..16 {
                if kafka
                    .list_offset(
                        &kafka_rpc::naming::request_topic(&svc),
                        candidate,
                        OffsetSpec::Latest,
                    )
                    .await
                    .unwrap()
                    > 0
                {
                    p = candidate;
                }
            }
            p
        },
        0,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        on_wire[0].header("krpc-key-id").is_some(),
        "the request says which key sealed it"
    );
    assert_ne!(
        on_wire[0].value.as_deref(),
        Some(&[0x92, 0x02, 0x03][..]),
        "the arguments travel sealed"
    );

    // A client with the wrong key gets UNAUTHENTICATED at once.
    let wrong = kafka_rpc::RpcClient::connect(
        kafka.clone(),
        krpc_tests::tuning::client_options().with_security(security("not the payload secret")),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let err = wrong
        .call::<_, u32>(&svc, "job", &(100u32,), opts())
        .await
        .unwrap_err();
    assert_eq!(err.code(), StatusCode::Unauthenticated, "{err}");
    assert!(err.to_string().contains("authentication failed"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a status, not a timeout"
    );

    let mut crafter = Crafter::new(kafka.clone(), &svc).await;
    // A flipped payload byte.
    let mut forged = crafter.sealed_job(101);
    let mut payload = forged.payload.to_vec();
    payload[30] ^= 0x01;
    forged.payload = Bytes::from(payload);
    crafter.send(forged.to_record(None)).await;
    let r = crafter.replies(forged.id, 1).await;
    assert_eq!(r[0].status, StatusCode::Unauthenticated, "{}", r[0].message);

    // A changed routing header (the method) with an intact payload.
    let valid = crafter.sealed_job(102);
    let mut moved = valid.to_record(None);
    for h in &mut moved.headers {
        if h.key == "krpc-method" {
            h.value = Some(Bytes::from_static(b"add"));
        }
    }
    crafter.send(moved).await;
    let r = crafter.replies(valid.id, 1).await;
    assert_eq!(r[0].status, StatusCode::Unauthenticated, "{}", r[0].message);

    // A request record written twice (a produce retried after a lost response, or a replay),
    // the second copy read while the first still runs: the call runs once and the first reply
    // its caller sees is the result. (It used to be UNAUTHENTICATED "a replay", sent at once
    // while the first copy ran, so the caller lost a call that did run.)
    let once = crafter.sealed_job(103);
    let seen_before = |s: &kafka_rpc::ServerStats| s.deduplicated + s.auth_failures;
    let before = seen_before(&counters.snapshot());
    crafter.send(once.to_record(None)).await;
    crafter.send(once.to_record(None)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen_before(&counters.snapshot()) == before {
        assert!(Instant::now() < deadline, "the second copy was never read");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    {
        let (open, cv) = &*gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
    let r = crafter.replies(once.id, 1).await;
    assert_eq!(
        r[0].status,
        StatusCode::Ok,
        "the caller's first reply is the result: {}",
        r[0].message
    );

    // An unsealed request.
    let mut plain = crafter.sealed_job(104);
    plain.key_id = None;
    plain.payload = kafka_rpc::codec::encode_args(&(104u32,)).unwrap();
    crafter.send(plain.to_record(None)).await;
    let r = crafter.replies(plain.id, 1).await;
    assert_eq!(r[0].status, StatusCode::Unauthenticated, "{}", r[0].message);

    stop.send(()).unwrap();
    let stats = task.await.unwrap();
    let ran: HashSet<u32> = jobs.lock().unwrap().iter().copied().collect();
    assert_eq!(
        ran,
        HashSet::from([103]),
        "only the one genuine job ran, once: {:?}",
        jobs.lock().unwrap()
    );
    assert_eq!(jobs.lock().unwrap().len(), 1);
    assert_eq!(
        stats.auth_failures, 4,
        "wrong key, payload, header, unsealed (the second copy is no refusal): {stats}"
    );
    assert_eq!(counters.snapshot().auth_failures, 4);
    assert!(stats.deduplicated >= 1, "{stats}");
}
