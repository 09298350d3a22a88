//! krpc-kafka under cluster events nisshi cannot be made to show, against the scriptable fake
//! broker (`krpc_tests::fake_broker`): half-open connections, a leader that never settles, a log
//! start that moved past a committed offset, batches larger than the fetch limit, undecodable
//! data, one partition filling every response. Each test counts the requests the client sent.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, MetadataRequest};
use krpc_kafka::{
    ClientConfig, Error, FetchConfig, Fetcher, GroupConsumer, GroupEvent, IsolationLevel,
    KafkaClient, Lane, OffsetReset, OffsetSpec, Producer, ProducerConfig, ProducerRecord,
};
use krpc_tests::fake_broker::{batch, batch_with, FakeBroker, FetchAnswer};
use krpc_tests::wait;

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const OFFSET_OUT_OF_RANGE: i16 = 1;

fn config(addr: &str) -> ClientConfig {
    ClientConfig::new(addr)
        .with_client_id("wire-faults")
        .with_connect_timeout(Duration::from_millis(300))
        .with_request_timeout(Duration::from_millis(300))
}

async fn client(broker: &FakeBroker) -> KafkaClient {
    KafkaClient::connect(config(broker.addr()))
        .await
        .expect("connect to the fake broker")
}

fn quick() -> FetchConfig {
    FetchConfig::default().with_max_wait(Duration::from_millis(10))
}

/// A hole being waited for (`hole_wait`: a later batch shown before an earlier one) is fetched
/// again with backoff, not in a hot loop: the broker answers at once (there is data past the
/// hole), so without backoff the same fetch went out thousands of times a second for the whole
/// wait. Once the hole fills, its records come in order.
#[tokio::test]
async fn a_hole_being_waited_for_is_refetched_with_backoff() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    let filled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = filled.clone();
    broker.on_fetch(move |asks| {
        asks.iter()
            .map(|a| {
                if f.load(std::sync::atomic::Ordering::SeqCst) {
                    FetchAnswer::records(batch(a.offset, 4 - a.offset as usize))
                } else {
                    // Offsets 2..4 shown, 0..2 not yet.
                    FetchAnswer::records(batch(2, 2))
                }
            })
            .collect()
    });
    let client = client(&broker).await;
    let mut fetcher = Fetcher::new(client, quick().with_hole_wait(Duration::from_secs(30)))
        .expect("valid fetcher options");
    fetcher.assign("t", 0, 0);
    let fetch0 = broker.count(ApiKey::Fetch);
    let until = Instant::now() + Duration::from_secs(1);
    let mut polls = 0;
    while Instant::now() < until {
        assert!(
            fetcher.poll().await.unwrap().is_empty(),
            "nothing past the hole"
        );
        polls += 1;
        assert!(polls < 100_000);
    }
    let fetches = broker.count(ApiKey::Fetch) - fetch0;
    eprintln!("in 1 s waiting for a hole: {fetches} fetches, {polls} polls");
    assert!(fetches >= 2, "still refetching: {fetches}");
    assert!(fetches <= 15, "hole refetches not backed off: {fetches}");
    filled.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the filled hole was never read: {got:?}"
        );
        got.extend(fetcher.poll().await.unwrap().iter().map(|r| r.offset));
    }
    assert_eq!(got, vec![0, 1, 2, 3]);
}

/// Fault 1: a half-open broker (accepts, never answers). Every metadata refresh times out; each
/// timeout retires its connection, so every later refresh dials afresh (the old code reused the
/// first connection forever: one dial in all).
#[tokio::test]
async fn a_timed_out_request_retires_its_connection_and_the_next_request_dials_afresh() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    let client = client(&broker).await;
    assert_eq!(broker.dials(), 1);
    broker.go_silent(true);
    for i in 0..4 {
        let started = Instant::now();
        let err = client
            .refresh_metadata(&["t"])
            .await
            .expect_err("a silent broker answers nothing");
        assert!(
            matches!(
                err,
                Error::Timeout { .. } | Error::BootstrapUnreachable { .. }
            ),
            "refresh {i}: {err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refresh {i} took {:?}",
            started.elapsed()
        );
    }
    let dials = broker.dials();
    // The first refresh timed out on the connection dialled by `connect`; refreshes 2..4 each
    // dialled at least once (a fresh connection's ApiVersions times out in turn).
    assert!(
        dials >= 4,
        "four timed-out refreshes dialled {dials} connections in all"
    );
    assert!(
        dials <= 16,
        "dials are bounded by the reconnect backoff: {dials}"
    );
    // Once the broker answers again, the next refresh works on a fresh connection.
    broker.go_silent(false);
    client.refresh_metadata(&["t"]).await.expect("recovers");
}

/// Fault 1: the timeout of one request fails the other requests waiting on that connection at
/// once (they would otherwise each wait out their own, possibly much longer, timeout).
#[tokio::test]
async fn a_timeout_fails_every_other_waiter_of_the_retired_connection_at_once() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    let client = client(&broker).await;
    let conn = client
        .connection(broker.addr(), Lane::Default)
        .await
        .unwrap();
    broker.go_silent(true);
    let long = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = conn
                .send_timeout(&MetadataRequest::default(), Duration::from_secs(30))
                .await;
            (r, started.elapsed())
        })
    };
    wait::until("the long request in flight", Duration::from_secs(5), || {
        let n = conn.in_flight();
        async move { (n == 1).then_some(()) }
    })
    .await;
    let short = conn
        .send_timeout(&MetadataRequest::default(), Duration::from_millis(100))
        .await;
    assert!(matches!(short, Err(Error::Timeout { .. })), "{short:?}");
    assert!(conn.is_broken(), "the timed-out connection is retired");
    let (long, spent) = tokio::time::timeout(Duration::from_secs(5), long)
        .await
        .expect("the other waiter is failed at once")
        .unwrap();
    assert!(
        matches!(long, Err(Error::ConnectionBroken { .. })),
        "{long:?}"
    );
    assert!(spent < Duration::from_secs(5), "{spent:?}");
}

/// Connection health: a broker that stops reading its socket. Requests that expect no answer
/// (Produce with acks=0) have no waiter to time out, so the writer itself gives up on a frame
/// the socket has not taken within the request timeout and breaks the connection (the old
/// writer waited forever while sends kept queueing behind it, all silently lost).
#[tokio::test]
async fn a_broker_that_stops_reading_breaks_the_connection_within_the_request_timeout() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    let client = client(&broker).await;
    let conn = client
        .connection(broker.addr(), Lane::Default)
        .await
        .unwrap();
    broker.stop_reading(true);
    let req = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(vec![0u8; 1 << 20])))])]);
    let started = Instant::now();
    let mut sent = 0;
    let err = loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{sent} MiB queued to a broker that reads nothing, and no error"
        );
        match conn.send_no_response(&req) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(matches!(err, Error::ConnectionBroken { .. }), "{err:?}");
    assert!(err.to_string().contains("stopped reading"), "{err}");
    broker.stop_reading(false);
    client
        .refresh_metadata(&["t"])
        .await
        .expect("a fresh connection");
}

/// Connection health: a connection idle past `connections_max_idle` is not written to again
/// (the broker may have closed it at its `connections.max.idle.ms`), and one the broker did
/// close is replaced without the caller seeing an error.
#[tokio::test]
async fn idle_and_broker_closed_connections_are_replaced_before_reuse() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    let mut cfg = config(broker.addr());
    cfg.connections_max_idle = Duration::from_millis(200);
    let client = KafkaClient::connect(cfg).await.unwrap();
    assert_eq!(broker.dials(), 1);
    client.refresh_metadata(&["t"]).await.unwrap();
    assert_eq!(broker.dials(), 1, "a busy connection is reused");
    // The idle time itself is what is tested: let the connection sit past the limit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.refresh_metadata(&["t"]).await.unwrap();
    assert_eq!(broker.dials(), 2, "the idle connection was replaced");

    let conn = client
        .connection(broker.addr(), Lane::Default)
        .await
        .unwrap();
    broker.drop_connections();
    wait::until("the client sees the close", Duration::from_secs(5), || {
        let broken = conn.is_broken();
        async move { broken.then_some(()) }
    })
    .await;
    client
        .refresh_metadata(&["t"])
        .await
        .expect("no error seen");
    assert_eq!(broker.dials(), 3);
}

/// Fault 2: a partition whose fetches are all answered NOT_LEADER_OR_FOLLOWER while metadata
/// keeps naming the same leader. The fetcher backs off (retry.backoff.ms doubling to
/// retry.backoff.max.ms, jittered) instead of sending thousands of fetches and metadata
/// requests a second (the old code: about 4,000 of each).
#[tokio::test]
async fn a_partition_answering_not_leader_forever_is_retried_with_backoff() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    broker.on_fetch(|asks| {
        asks.iter()
            .map(|_| FetchAnswer::error(NOT_LEADER_OR_FOLLOWER))
            .collect()
    });
    let client = client(&broker).await;
    let mut fetcher = Fetcher::new(client, quick()).expect("valid fetcher options");
    fetcher.assign("t", 0, 0);
    let (fetch0, meta0) = (broker.count(ApiKey::Fetch), broker.count(ApiKey::Metadata));
    let until = Instant::now() + Duration::from_secs(1);
    let mut polls = 0;
    while Instant::now() < until {
        let records = fetcher.poll().await.expect("retriable errors never escape");
        assert!(records.is_empty());
        polls += 1;
        assert!(polls < 100_000);
    }
    let fetches = broker.count(ApiKey::Fetch) - fetch0;
    let metadata = broker.count(ApiKey::Metadata) - meta0;
    eprintln!("in 1 s: {fetches} fetches, {metadata} metadata requests, {polls} polls");
    assert!(fetches >= 2, "still retrying: {fetches}");
    assert!(fetches <= 15, "fetches not backed off: {fetches}");
    assert!(
        metadata <= 15,
        "metadata refreshes not backed off: {metadata}"
    );
    assert_eq!(fetcher.position("t", 0), Some(0));

    // Once the leader answers, the partition is fetched again.
    broker.on_fetch(|asks| {
        asks.iter()
            .map(|a| FetchAnswer::records(batch(a.offset, 2)))
            .collect()
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.is_empty() {
        assert!(Instant::now() < deadline, "never recovered");
        got = fetcher.poll().await.unwrap();
    }
    assert_eq!(got[0].offset, 0);
}

/// Fault 2 with many partitions: sixteen partitions all answering NOT_LEADER_OR_FOLLOWER back off
/// each on its own, and their topic's metadata is refreshed at most once per `retry_backoff`,
/// however many of them fail.
#[tokio::test]
async fn many_partitions_answering_not_leader_refresh_metadata_at_most_once_per_backoff() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 16);
    broker.on_fetch(|asks| {
        asks.iter()
            .map(|_| FetchAnswer::error(NOT_LEADER_OR_FOLLOWER))
            .collect()
    });
    let client = client(&broker).await;
    let mut fetcher = Fetcher::new(client, quick()).expect("valid fetcher options");
    for p in 0..16 {
        fetcher.assign("t", p, 0);
    }
    let (fetch0, meta0) = (broker.count(ApiKey::Fetch), broker.count(ApiKey::Metadata));
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        fetcher.poll().await.expect("retriable errors never escape");
    }
    let fetches = broker.count(ApiKey::Fetch) - fetch0;
    let metadata = broker.count(ApiKey::Metadata) - meta0;
    eprintln!("16 partitions, 1 s: {fetches} fetches, {metadata} metadata requests");
    assert!(fetches <= 16 * 8, "fetches not backed off: {fetches}");
    assert!(metadata <= 12, "metadata refreshes: {metadata}");
}

/// A member of group `g` on topic `t` (one partition) of a fake broker whose coordinator
/// answers every JoinGroup with COORDINATOR_LOAD_IN_PROGRESS; `tune` adjusts its settings.
async fn member_refused_by_its_coordinator(
    tune: impl FnOnce(&mut krpc_kafka::GroupConfig),
) -> (FakeBroker, GroupConsumer) {
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    broker.fail(ApiKey::JoinGroup, 14); // COORDINATOR_LOAD_IN_PROGRESS
    let client = client(&broker).await;
    let mut config = krpc_kafka::GroupConfig::new("g", &["t"]);
    tune(&mut config);
    let consumer = GroupConsumer::new(client, config).unwrap();
    (broker, consumer)
}

/// Lets the coordinator answer JoinGroup again and waits (up to 10 s) for the member's
/// assignment.
async fn assert_joins_once_answered(broker: &FakeBroker, consumer: &mut GroupConsumer) {
    broker.fail(ApiKey::JoinGroup, 0);
    let event = tokio::time::timeout(Duration::from_secs(10), consumer.poll())
        .await
        .expect("joins once the coordinator answers")
        .unwrap();
    assert!(matches!(event, GroupEvent::Assigned(_)), "{event:?}");
}

/// Fault 2, the group consumer: a coordinator answering every JoinGroup with
/// COORDINATOR_LOAD_IN_PROGRESS is asked again (coordinator looked up again too) after a
/// jittered, growing backoff, not in a loop.
#[tokio::test]
async fn a_group_member_refused_by_its_coordinator_backs_off() {
    let (broker, mut consumer) = member_refused_by_its_coordinator(|_| {}).await;
    let polled = tokio::time::timeout(Duration::from_secs(1), consumer.poll()).await;
    assert!(polled.is_err(), "still joining after 1 s: {polled:?}");
    let joins = broker.count(ApiKey::JoinGroup);
    let finds = broker.count(ApiKey::FindCoordinator);
    eprintln!("1 s: {joins} JoinGroup, {finds} FindCoordinator");
    assert!((2..=15).contains(&joins), "JoinGroup requests: {joins}");
    assert!(finds <= 15, "FindCoordinator requests: {finds}");
    assert_joins_once_answered(&broker, &mut consumer).await;
}

/// A join refused for longer than its budget (rebalance plus session timeout, here 2 s) does
/// not end the member: `poll` keeps retrying with backoff and joins once the coordinator
/// answers, as the Java consumer does. `poll` used to return the coordinator's error once the
/// budget was spent, which ended a kafka-rpc server (review of stop 12, R5).
#[tokio::test]
async fn a_join_refused_past_its_budget_is_retried_until_the_coordinator_answers() {
    let (broker, mut consumer) = member_refused_by_its_coordinator(|config| {
        config.session_timeout = Duration::from_secs(1);
        config.rebalance_timeout = Duration::from_secs(1);
        config.heartbeat_interval = Duration::from_millis(300);
    })
    .await;
    let polled = tokio::time::timeout(Duration::from_secs(4), consumer.poll()).await;
    assert!(
        polled.is_err(),
        "poll returned within twice the join budget: {polled:?}"
    );
    assert_joins_once_answered(&broker, &mut consumer).await;
}

/// Fault 2, the producer: a partition answering NOT_LEADER_OR_FOLLOWER to every produce is
/// retried with backoff until the delivery timeout, then fails with the broker's error.
#[tokio::test]
async fn a_produce_answered_not_leader_forever_backs_off_until_the_delivery_timeout() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    broker.fail(ApiKey::Produce, NOT_LEADER_OR_FOLLOWER);
    let client = client(&broker).await;
    let producer = Producer::new(
        client,
        ProducerConfig::default()
            .with_linger(Duration::ZERO)
            .with_delivery_timeout(Duration::from_secs(1)),
    )
    .expect("valid producer options");
    let started = Instant::now();
    let err = producer
        .produce("t", ProducerRecord::value("x"))
        .await
        .expect_err("never accepted");
    assert!(
        err.kafka_error() == Some(krpc_kafka::ErrorCode::NOT_LEADER_OR_FOLLOWER),
        "{err:?}"
    );
    let spent = started.elapsed();
    let produces = broker.count(ApiKey::Produce);
    eprintln!("{produces} produce requests in {spent:?}");
    assert!(spent < Duration::from_secs(4), "{spent:?}");
    assert!(produces <= 15, "produce retries not backed off: {produces}");
}

/// Scripts a log that spans `start..end` for every partition: ListOffsets says so, fetches
/// outside it are OFFSET_OUT_OF_RANGE, fetches inside it return up to 10 records.
fn log_spanning(broker: &FakeBroker, start: i64, end: i64) {
    broker.on_list_offsets(move |_, _, ts, _| (0, if ts == -2 { start } else { end }));
    broker.on_fetch(move |asks| {
        asks.iter()
            .map(|a| {
                if a.offset < start || a.offset > end {
                    FetchAnswer::error(OFFSET_OUT_OF_RANGE)
                } else if a.offset == end {
                    FetchAnswer::default()
                } else {
                    FetchAnswer::records(batch(a.offset, (end - a.offset).min(10) as usize))
                }
            })
            .collect()
    });
}

/// Fault 3: a kafka-rpc server's group (built by `ServerOptions::group_config`, as `krpc
/// serve` builds it) has committed offset 100 on partition 0 while the log now spans 150..200
/// (retention or DeleteRecords moved its start). Its reset policy, earliest, governs both the
/// out-of-range position (resume at 150, not 200: the old code jumped to the end and skipped
/// fifty queued requests) and partition 1, which has no committed offset (start at 150). The
/// jump over the deleted offsets 100..150 is counted.
#[tokio::test]
async fn a_server_group_resumes_at_the_log_start_when_its_committed_offset_was_deleted() {
    let options = krpc_tests::tuning::server_options("resets");
    let cfg = options.group_config().unwrap();
    let topic = cfg.topics[0].clone();
    let broker = FakeBroker::start().await;
    broker.topic(&topic, 2);
    broker.commit(&cfg.group_id, &topic, 0, 100);
    log_spanning(&broker, 150, 200);
    let client = client(&broker).await;
    let mut consumer = GroupConsumer::new(client, cfg).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut first = std::collections::HashMap::new();
    while first.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "records of both partitions within 10 s; first offsets seen: {first:?}"
        );
        match tokio::time::timeout(Duration::from_secs(5), consumer.poll()).await {
            Ok(Ok(GroupEvent::Records(records))) => {
                for r in records {
                    first.entry(r.partition).or_insert(r.offset);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("poll failed: {e}"),
            Err(_) => {}
        }
    }
    assert_eq!(
        first[&0], 150,
        "out of range below the log start: resume at its start"
    );
    assert_eq!(
        first[&1], 150,
        "no committed offset: start where the same policy says"
    );
    assert_eq!(consumer.offset_resets(), 1);
    assert_eq!(
        consumer.reset_skipped_offsets(),
        50,
        "the jump over the deleted offsets 100..150 is counted"
    );
}

/// Fault 3: an offset above the end (topic recreated, log truncated) resets as the policy
/// says: earliest goes back to the log start (nothing skipped), latest to the end; latest from
/// below the log start jumps to the end and counts every offset it skipped; policy `Error`
/// fails the poll with the broker's error.
#[tokio::test]
async fn every_out_of_range_position_resets_as_the_policy_says() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    log_spanning(&broker, 150, 200);
    let client = client(&broker).await;
    let first_offset = |policy: OffsetReset, from: i64| {
        let client = client.clone();
        async move {
            let mut f = Fetcher::new(client, quick().with_offset_reset(policy))
                .expect("valid fetcher options");
            f.assign("t", 0, from);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                assert!(Instant::now() < deadline, "{policy:?} from {from}: stuck");
                match f.poll().await {
                    Ok(records) if !records.is_empty() => {
                        return Ok((
                            records[0].offset,
                            f.offset_resets(),
                            f.reset_skipped_offsets(),
                        ))
                    }
                    Ok(_) if f.position("t", 0) == Some(200) => {
                        return Ok((200, f.offset_resets(), f.reset_skipped_offsets()))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    };
    assert_eq!(
        first_offset(OffsetReset::Earliest, 500).await.unwrap(),
        (150, 1, 0)
    );
    assert_eq!(
        first_offset(OffsetReset::Latest, 500).await.unwrap(),
        (200, 1, 0)
    );
    assert_eq!(
        first_offset(OffsetReset::Latest, 100).await.unwrap(),
        (200, 1, 100)
    );
    let err = first_offset(OffsetReset::Error, 100).await.unwrap_err();
    assert!(
        err.kafka_error() == Some(krpc_kafka::ErrorCode::OFFSET_OUT_OF_RANGE),
        "{err:?}"
    );
    assert!(err.to_string().contains("t/0 at offset 100"), "{err}");
}

/// Fetch progress: a broker that (unlike KIP-74) cuts a batch larger than the per-partition
/// limit to the limit returns bytes but no complete batch. The fetcher grows that partition's
/// limit to the batch and progresses (the old code fetched the same bytes forever, silently).
#[tokio::test]
async fn a_batch_larger_than_the_partition_limit_is_fetched_with_a_grown_limit() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    let big = batch_with(0, 3, 2000);
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let big = big.clone();
        let asked = asked.clone();
        broker.on_fetch(move |asks| {
            asks.iter()
                .map(|a| {
                    asked.lock().unwrap().push(a.max_bytes);
                    if a.offset == 0 {
                        FetchAnswer::records(big.slice(..big.len().min(a.max_bytes as usize)))
                    } else {
                        FetchAnswer::default()
                    }
                })
                .collect()
        });
    }
    let client = client(&broker).await;
    let mut fetcher = Fetcher::new(client, quick().with_partition_max_bytes(1000))
        .expect("valid fetcher options");
    fetcher.assign("t", 0, 0);
    let mut got = Vec::new();
    for _ in 0..5 {
        got.extend(fetcher.poll().await.unwrap());
        if !got.is_empty() {
            break;
        }
    }
    let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        vec![0, 1, 2],
        "limits asked: {:?}",
        asked.lock().unwrap()
    );
    assert!(asked
        .lock()
        .unwrap()
        .iter()
        .any(|m| *m as usize >= big.len()));
    assert_eq!(fetcher.position("t", 0), Some(3));
}

/// Fetch progress: a broker that sends part of a batch that fits the limit (no Kafka broker
/// does) is fetched again after a backoff, logged, never in a hot loop; whole, it is read.
#[tokio::test]
async fn a_batch_cut_short_within_the_limit_is_fetched_again_after_a_backoff() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    let whole = batch(0, 3);
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    {
        let cut = cut.clone();
        broker.on_fetch(move |asks| {
            asks.iter()
                .map(|a| match a.offset {
                    0 if cut.load(std::sync::atomic::Ordering::SeqCst) => {
                        FetchAnswer::records(whole.slice(..whole.len() / 2))
                    }
                    0 => FetchAnswer::records(whole.clone()),
                    _ => FetchAnswer::default(),
                })
                .collect()
        });
    }
    let client = client(&broker).await;
    let mut fetcher = Fetcher::new(client, quick()).expect("valid fetcher options");
    fetcher.assign("t", 0, 0);
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        assert!(fetcher.poll().await.unwrap().is_empty());
    }
    let fetches = broker.count(ApiKey::Fetch);
    assert!((1..=10).contains(&fetches), "fetches in 500 ms: {fetches}");
    cut.store(false, std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(Instant::now() < deadline, "never read the whole batch");
        got = fetcher.poll().await.unwrap();
    }
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
}

/// Fetch progress: a batch larger than even the response limit is a typed error naming the
/// topic, partition and offset, or, with `skip_undecodable`, stepped over and counted.
#[tokio::test]
async fn a_batch_larger_than_max_bytes_is_a_typed_error_or_stepped_over_and_counted() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    let big = batch_with(0, 3, 2000);
    let small = batch(3, 2);
    broker.on_fetch(move |asks| {
        asks.iter()
            .map(|a| match a.offset {
                0 => FetchAnswer::records(big.slice(..big.len().min(a.max_bytes as usize))),
                3 => FetchAnswer::records(small.clone()),
                _ => FetchAnswer::default(),
            })
            .collect()
    });
    let client = client(&broker).await;
    let limited = quick().with_partition_max_bytes(1000).with_max_bytes(1000);
    let mut fetcher = Fetcher::new(client.clone(), limited.clone()).expect("valid fetcher options");
    fetcher.assign("t", 0, 0);
    let err = fetcher.poll().await.expect_err("cannot progress");
    assert!(
        matches!(
            &err,
            Error::FetchTooSmall { topic, partition: 0, offset: 0, .. } if topic == "t"
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("t/0 at offset 0"), "{err}");

    let mut skipping =
        Fetcher::new(client, limited.with_skip_undecodable(true)).expect("valid fetcher options");
    skipping.assign("t", 0, 0);
    let mut got = Vec::new();
    for _ in 0..5 {
        got.extend(skipping.poll().await.unwrap());
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(
        skipping.skipped_batches(),
        1,
        "the stepped-over batch is counted"
    );
}

/// Fetch progress: undecodable data is a typed error naming topic, partition and offset, or
/// (with `skip_undecodable`, a complete batch) stepped over and counted.
#[tokio::test]
async fn undecodable_data_is_a_typed_error_or_stepped_over_and_counted() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 2);
    // A batch whose length field is below the header size: where it ends cannot be known.
    let mut garbage = BytesMut::new();
    garbage.extend_from_slice(&7i64.to_be_bytes());
    garbage.extend_from_slice(&5i32.to_be_bytes());
    garbage.extend_from_slice(&[0xAB; 40]);
    let garbage = garbage.freeze();
    // A complete batch with a magic byte this client does not read, then a good one.
    let mut odd = BytesMut::from(&batch(0, 2)[..]);
    odd[16] = 1;
    let mut mixed = odd.clone();
    mixed.extend_from_slice(&batch(2, 2));
    let mixed: Bytes = mixed.freeze();
    broker.on_fetch(move |asks| {
        asks.iter()
            .map(|a| match (a.partition, a.offset) {
                (0, _) => FetchAnswer::records(garbage.clone()),
                (1, 0) => FetchAnswer::records(mixed.clone()),
                _ => FetchAnswer::default(),
            })
            .collect()
    });
    let client = client(&broker).await;
    let skip = quick().with_skip_undecodable(true);
    let mut f = Fetcher::new(client.clone(), skip.clone()).expect("valid fetcher options");
    f.assign("t", 0, 7);
    let err = f.poll().await.expect_err("no batch boundary to step to");
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("t/0") && text.contains("offset 7"),
        "names topic, partition and offset: {text}"
    );

    let mut f = Fetcher::new(client.clone(), skip).expect("valid fetcher options");
    f.assign("t", 1, 0);
    let records = f.poll().await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(f.skipped_batches(), 1);
    assert_eq!(f.position("t", 1), Some(4));

    let mut strict = Fetcher::new(client, quick()).expect("valid fetcher options");
    strict.assign("t", 1, 0);
    let err = strict.poll().await.expect_err("not skipping");
    assert!(err.to_string().contains("t/1"), "{err}");
    assert_eq!(strict.position("t", 1), Some(0));
}

/// Fetch order: a broker whose responses are filled by the first partition of the request
/// (its `max_bytes` reached) still serves every partition, because the order rotates every
/// poll (the old code listed the partitions in one fixed order and starved all but one).
#[tokio::test]
async fn one_busy_partition_cannot_starve_the_others() {
    let broker = FakeBroker::start().await;
    broker.topic("t", 4);
    broker.on_fetch(|asks| {
        asks.iter()
            .enumerate()
            .map(|(i, a)| {
                if i == 0 {
                    FetchAnswer::records(batch(a.offset, 1))
                } else {
                    FetchAnswer::default() // the response is full
                }
            })
            .collect()
    });
    let client = client(&broker).await;
    let mut fetcher = Fetcher::new(client, quick()).expect("valid fetcher options");
    for p in 0..4 {
        fetcher.assign("t", p, 0);
    }
    for _ in 0..8 {
        fetcher.poll().await.unwrap();
    }
    for p in 0..4 {
        let at = fetcher.position("t", p).unwrap();
        assert!(at >= 1, "partition {p} starved (position {at})");
    }
}

/// Review S13: the end of a partition for a read-committed reader is its last stable offset,
/// which ListOffsets (v2+) gives when asked with `isolation_level` 1. The test broker cannot
/// hold a transaction open (it refuses transactional producers), so the fake answers 5 (high
/// watermark) read uncommitted and 3 (last stable offset) read committed; `list_offsets` asks
/// read uncommitted, as before.
#[tokio::test]
async fn list_offsets_read_committed_asks_for_the_last_stable_offset() {
    let broker = FakeBroker::start().await;
    broker.topic("txn", 1);
    broker.on_list_offsets(|_, _, ts, isolation| match (ts, isolation) {
        (-1, 0) => (0, 5),
        (-1, 1) => (0, 3),
        _ => (0, 0),
    });
    let client = client(&broker).await;
    let latest = |level| {
        let client = client.clone();
        async move {
            client
                .list_offsets_isolated("txn", &[0], OffsetSpec::Latest, level)
                .await
                .expect("list offsets")[&0]
        }
    };
    assert_eq!(latest(IsolationLevel::ReadUncommitted).await, 5);
    assert_eq!(latest(IsolationLevel::ReadCommitted).await, 3);
    assert_eq!(
        client
            .list_offset("txn", 0, OffsetSpec::Latest)
            .await
            .unwrap(),
        5,
        "list_offsets reads uncommitted"
    );
}

/// A read_committed fetcher that starts at (or resets to) "latest" starts at the last stable
/// offset, as the Java consumer does, not at the high watermark past an open transaction (the
/// records of that transaction would never be read if it commits). It used to ask ListOffsets
/// read uncommitted (helper review of S13).
#[tokio::test]
async fn a_read_committed_fetcher_starts_latest_at_the_last_stable_offset() {
    let broker = FakeBroker::start().await;
    broker.topic("txn", 1);
    broker.on_list_offsets(|_, _, ts, isolation| match (ts, isolation) {
        (-1, 0) => (0, 5),
        (-1, 1) => (0, 3),
        _ => (0, 0),
    });
    let client = client(&broker).await;
    for (level, want) in [
        (IsolationLevel::ReadUncommitted, 5),
        (IsolationLevel::ReadCommitted, 3),
    ] {
        let mut fetcher = krpc_kafka::Fetcher::new(
            client.clone(),
            krpc_kafka::FetchConfig::default().with_isolation_level(level),
        )
        .expect("valid fetcher options");
        let at = fetcher
            .assign_at("txn", 0, OffsetSpec::Latest)
            .await
            .expect("assign at latest");
        assert_eq!(at, want, "{level:?}");
        assert_eq!(fetcher.position("txn", 0), Some(want), "{level:?}");
    }
}
