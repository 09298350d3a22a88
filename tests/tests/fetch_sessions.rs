//! KIP-227 incremental fetch sessions in `krpc_kafka::Fetcher`, against the scriptable fake
//! broker (`krpc_tests::fake_broker`): nisshi keeps no fetch sessions (it answers every fetch
//! with session id 0), so only an in-process broker can grant one, refuse one, and show what
//! each request listed. The fetcher against nisshi (no sessions) is covered by every fetching
//! test of wire_roundtrip, wire_faults and groups, which run with sessions on (the default).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use krpc_kafka::{ClientConfig, FetchConfig, Fetcher, KafkaClient};
use krpc_tests::fake_broker::{batch, FakeBroker, FetchAnswer, FetchSeen};

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

async fn client(broker: &FakeBroker) -> KafkaClient {
    let config = ClientConfig::new(broker.addr())
        .with_client_id("fetch-sessions")
        .with_connect_timeout(Duration::from_millis(300))
        .with_request_timeout(Duration::from_millis(300));
    KafkaClient::connect(config)
        .await
        .expect("connect to the fake broker")
}

fn quick() -> FetchConfig {
    FetchConfig::default().with_max_wait(Duration::from_millis(10))
}

/// Per partition of topic `t`, the end of its log: the fake answers a fetch at `offset` with
/// the records `offset..end` (values `v{offset}`) and nothing at the end.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<HashMap<i32, i64>>>);

impl Logs {
    fn serving(broker: &FakeBroker) -> Self {
        let logs = Self::default();
        let ends = logs.0.clone();
        broker.on_fetch(move |asks| {
            let ends = ends.lock().unwrap();
            asks.iter()
                .map(|a| {
                    let end = ends.get(&a.partition).copied().unwrap_or(0);
                    if a.offset < end {
                        FetchAnswer::records(batch(a.offset, (end - a.offset) as usize))
                    } else {
                        FetchAnswer::default()
                    }
                })
                .collect()
        });
        logs
    }

    fn produce(&self, partition: i32, count: i64) {
        *self.0.lock().unwrap().entry(partition).or_default() += count;
    }

    /// Every record produced, per partition: offsets `0..end`.
    fn all(&self) -> HashMap<i32, Vec<i64>> {
        let ends = self.0.lock().unwrap();
        ends.iter()
            .map(|(p, end)| (*p, (0..*end).collect()))
            .collect()
    }
}

/// Records fetched, per partition, in the order returned (values checked against offsets).
#[derive(Default)]
struct Got(HashMap<i32, Vec<i64>>);

impl Got {
    async fn poll(&mut self, fetcher: &mut Fetcher) -> usize {
        let records = fetcher.poll().await.expect("poll");
        for r in &records {
            assert_eq!(
                r.value.as_deref(),
                Some(format!("v{}", r.offset).as_bytes()),
                "record value at {}/{}",
                r.partition,
                r.offset
            );
            self.0.entry(r.partition).or_default().push(r.offset);
        }
        records.len()
    }
}

/// A fetcher of every partition of topic `t` (`partitions` of them) from offset 0, on a
/// broker that grants sessions and serves the returned logs.
async fn fetcher_of_t(broker: &FakeBroker, partitions: i32) -> (Fetcher, Logs) {
    broker.topic("t", partitions);
    broker.grant_fetch_sessions(true);
    let logs = Logs::serving(broker);
    let mut fetcher = Fetcher::new(client(broker).await, quick()).expect("fetcher");
    for p in 0..partitions {
        fetcher.assign("t", p, 0);
    }
    (fetcher, logs)
}

/// (partition, offset) of each partition a fetch listed, sorted.
fn listed(f: &FetchSeen) -> Vec<(i32, i64)> {
    let mut l: Vec<(i32, i64)> = f.listed.iter().map(|a| (a.partition, a.offset)).collect();
    l.sort();
    l
}

/// A fetch's session id, epoch and the (partition, offset) pairs it listed, sorted.
type Shape = (i32, i32, Vec<(i32, i64)>);

/// The [`Shape`] of each fetch.
fn shape(seen: &[FetchSeen]) -> Vec<Shape> {
    seen.iter()
        .map(|f| (f.session_id, f.epoch, listed(f)))
        .collect()
}

/// Ask 1: the first fetch creates a session and lists all 16 partitions; later fetches carry
/// the session id and the next epoch and list only the partitions whose position moved (those
/// that got records), each at its new offset. The records fetched are exactly those produced,
/// in order, none twice. (The old code sent every fetch full: session 0, epoch -1, 16 listed.)
#[tokio::test]
async fn a_fetch_session_lists_only_the_partitions_whose_position_moved() {
    let broker = FakeBroker::start().await;
    let (mut fetcher, logs) = fetcher_of_t(&broker, 16).await;
    let mut got = Got::default();
    assert_eq!(got.poll(&mut fetcher).await, 0); // full: creates the session
    assert_eq!(got.poll(&mut fetcher).await, 0); // incremental: nothing moved
    logs.produce(3, 5);
    logs.produce(7, 2);
    assert_eq!(got.poll(&mut fetcher).await, 7); // the session's 3 and 7, not listed
    assert_eq!(got.poll(&mut fetcher).await, 0); // lists 3 and 7 at their new offsets
    logs.produce(3, 4);
    assert_eq!(got.poll(&mut fetcher).await, 4);
    assert_eq!(got.poll(&mut fetcher).await, 0);

    let seen = broker.fetches();
    let all: Vec<(i32, i64)> = (0..16).map(|p| (p, 0)).collect();
    let id = seen.get(1).map_or(0, |f| f.session_id);
    assert_ne!(id, 0, "no session used: {:?}", shape(&seen));
    assert_eq!(
        shape(&seen),
        vec![
            (0, 0, all),
            (id, 1, vec![]),
            (id, 2, vec![]),
            (id, 3, vec![(3, 5), (7, 2)]),
            (id, 4, vec![]),
            (id, 5, vec![(3, 9)]),
        ]
    );
    assert!(seen.iter().all(|f| f.forgotten.is_empty()));
    assert_eq!(got.0, logs.all(), "records fetched are those produced");
}

/// Ask 2: the broker refuses an incremental fetch (FETCH_SESSION_ID_NOT_FOUND, then in a
/// second run INVALID_FETCH_SESSION_EPOCH): the poll returns nothing and moves nothing, the
/// next fetch is full (epoch 0, every partition at its position; after 71 it names the old
/// session, which closes it), the one after is incremental in the new session, and every
/// record comes exactly once, in order.
#[tokio::test]
async fn a_refused_fetch_session_falls_back_to_a_full_fetch_without_losing_records() {
    for code in [FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH] {
        let broker = FakeBroker::start().await;
        let (mut fetcher, logs) = fetcher_of_t(&broker, 4).await;
        let mut got = Got::default();
        logs.produce(0, 3);
        logs.produce(1, 2);
        assert_eq!(got.poll(&mut fetcher).await, 5); // full, creates session 1
        assert_eq!(got.poll(&mut fetcher).await, 0); // epoch 1: lists 0 and 1
        logs.produce(2, 4);
        logs.produce(0, 1);
        broker.fail_next_incremental_fetch(code);
        assert_eq!(
            got.poll(&mut fetcher).await,
            0,
            "a refused fetch moves nothing"
        );
        assert_eq!(got.poll(&mut fetcher).await, 5); // full again
        assert_eq!(got.poll(&mut fetcher).await, 0); // incremental in the new session

        let seen = shape(&broker.fetches());
        let closes = if code == FETCH_SESSION_ID_NOT_FOUND {
            0
        } else {
            1
        };
        assert_eq!(
            seen,
            vec![
                (0, 0, vec![(0, 0), (1, 0), (2, 0), (3, 0)]),
                (1, 1, vec![(0, 3), (1, 2)]),
                (1, 2, vec![]), // refused with `code`
                (closes, 0, vec![(0, 3), (1, 2), (2, 0), (3, 0)]),
                (2, 1, vec![(0, 4), (2, 4)]),
            ],
            "after error {code}"
        );
        assert_eq!(got.0, logs.all(), "after error {code}");
    }
}

/// A fetch that times out (a broker that stops answering) drops the session: once the broker
/// answers again, the next fetch is full (epoch 0, naming the old session to close it) and no
/// record is lost or repeated.
#[tokio::test]
async fn a_timed_out_fetch_drops_the_session() {
    let broker = FakeBroker::start().await;
    let (mut fetcher, logs) = fetcher_of_t(&broker, 2).await;
    let mut got = Got::default();
    logs.produce(0, 2);
    got.poll(&mut fetcher).await;
    got.poll(&mut fetcher).await;
    broker.go_silent(true);
    assert_eq!(got.poll(&mut fetcher).await, 0); // times out (request timeout 300 ms)
    broker.go_silent(false);
    logs.produce(1, 3);
    // Both partitions back off after the timeout (each its own jittered delay).
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.0 != logs.all() {
        assert!(
            Instant::now() < deadline,
            "records after the timeout: {:?}",
            got.0
        );
        got.poll(&mut fetcher).await;
    }
    got.poll(&mut fetcher).await;
    let seen = shape(&broker.fetches());
    assert_eq!(seen[1], (1, 1, vec![(0, 2)]));
    let (id, epoch, _) = &seen[2];
    assert_eq!(
        (*id, *epoch),
        (1, 0),
        "the fetch after the timeout: {seen:?}"
    );
    for (i, (id, epoch, _)) in seen.iter().enumerate().skip(3) {
        assert_eq!((*id, *epoch), (2, i as i32 - 2), "{seen:?}");
    }
    assert_eq!(got.0, logs.all(), "no record lost or repeated");
}

/// Ask 3: unassigning a partition mid-session puts it in the next fetch's
/// `forgotten_topics_data` (and the broker stops answering for it); seeking a partition, or
/// assigning one again, lists it at its new offset in the next incremental fetch, and its
/// records come again from there.
#[tokio::test]
async fn unassigned_and_reassigned_partitions_are_forgotten_or_listed_in_the_next_fetch() {
    let broker = FakeBroker::start().await;
    let (mut fetcher, logs) = fetcher_of_t(&broker, 4).await;
    for p in 0..4 {
        logs.produce(p, 3);
    }
    let mut got = Got::default();
    assert_eq!(got.poll(&mut fetcher).await, 12); // full
    assert_eq!(got.poll(&mut fetcher).await, 0); // lists all four at 3
    fetcher.unassign("t", 2);
    fetcher.assign("t", 1, 1); // seek back
    logs.produce(2, 5); // not fetched: unassigned
    assert_eq!(got.poll(&mut fetcher).await, 2); // 1's offsets 1 and 2 again
    assert_eq!(got.poll(&mut fetcher).await, 0);
    fetcher.assign("t", 2, 6);
    assert_eq!(got.poll(&mut fetcher).await, 2); // 2's offsets 6 and 7

    let seen = broker.fetches();
    let forgotten: Vec<Vec<(String, i32)>> = seen.iter().map(|f| f.forgotten.clone()).collect();
    let none = Vec::new();
    assert_eq!(
        forgotten,
        vec![
            none.clone(),
            none.clone(),
            vec![("t".to_string(), 2)],
            none.clone(),
            none
        ]
    );
    assert_eq!(
        shape(&seen)[1..],
        [
            (1, 1, vec![(0, 3), (1, 3), (2, 3), (3, 3)]),
            (1, 2, vec![(1, 1)]),
            (1, 3, vec![(1, 3)]),
            (1, 4, vec![(2, 6)]),
        ]
    );
    let mut want = logs.all();
    want.get_mut(&1).unwrap().extend([1, 2]);
    want.insert(2, vec![0, 1, 2, 6, 7]);
    assert_eq!(got.0, want);
}

/// Ask 4 (protocol side): a broker that keeps no sessions (answers a create with session id
/// 0, as nisshi and brokers before Kafka 1.1 do) gets a full create (session 0, epoch 0, every
/// partition) every time, as the Java client sends, and records flow as before; with
/// `FetchConfig::sessions` off the fetcher sends sessionless full fetches (epoch -1).
#[tokio::test]
async fn a_broker_that_keeps_no_fetch_sessions_gets_full_fetches() {
    for sessions in [true, false] {
        let broker = FakeBroker::start().await; // sessions not granted
        broker.topic("t", 3);
        let logs = Logs::serving(&broker);
        let config = quick().with_sessions(sessions);
        let mut fetcher = Fetcher::new(client(&broker).await, config).expect("fetcher");
        for p in 0..3 {
            fetcher.assign("t", p, 0);
        }
        let mut got = Got::default();
        for round in 0..4 {
            logs.produce(round % 3, 2);
            assert_eq!(got.poll(&mut fetcher).await, 2);
        }
        let epoch = if sessions { 0 } else { -1 };
        let seen = broker.fetches();
        assert_eq!(seen.len(), 4);
        for f in &seen {
            assert_eq!((f.session_id, f.epoch, f.listed.len()), (0, epoch, 3));
        }
        assert_eq!(got.0, logs.all());
    }
}

/// Closing a fetcher closes its session on the broker (KIP-227: the session's id with epoch
/// -1, listing nothing), as the Java consumer's `close` does, so the session does not hold one
/// of the broker's session slots until it is evicted; after `close_sessions` the fetcher's
/// next fetch creates a new session; a fetcher whose broker keeps no sessions sends nothing
/// more. (The old code had no close: the session stayed open on the broker.)
#[tokio::test]
async fn closing_a_fetcher_closes_its_session_on_the_broker() {
    let broker = FakeBroker::start().await;
    let (mut fetcher, logs) = fetcher_of_t(&broker, 2).await;
    let mut got = Got::default();
    logs.produce(0, 3);
    assert_eq!(got.poll(&mut fetcher).await, 3); // full: creates the session
    assert_eq!(got.poll(&mut fetcher).await, 0); // incremental
    let id = broker.fetches().last().map_or(0, |f| f.session_id);
    assert_ne!(id, 0, "a session was in use");
    assert_eq!(broker.open_fetch_sessions(), vec![id]);

    let closing = Instant::now();
    fetcher.close(Duration::from_secs(5)).await;
    assert!(
        closing.elapsed() < Duration::from_secs(5),
        "answered, not timed out"
    );
    let last = broker.fetches().last().cloned().expect("a fetch");
    assert_eq!(
        (last.session_id, last.epoch, last.listed.len()),
        (id, -1, 0),
        "the close: the session's id, FINAL_EPOCH, nothing listed"
    );
    assert!(
        broker.open_fetch_sessions().is_empty(),
        "the broker closed it"
    );
    assert!(last.forgotten.is_empty());

    // After `close_sessions` the same fetcher starts afresh: its next fetch is a full create
    // (id 0, epoch 0, every partition at its position).
    let mut fetcher = Fetcher::new(client(&broker).await, quick()).expect("fetcher");
    fetcher.assign("t", 0, 0);
    fetcher.assign("t", 1, 0);
    let mut again = Got::default();
    assert_eq!(again.poll(&mut fetcher).await, 3); // creates a session
    fetcher.close_sessions(Duration::from_secs(5)).await;
    assert_eq!(broker.fetches().last().map(|f| f.epoch), Some(-1), "closed");
    assert_eq!(again.poll(&mut fetcher).await, 0);
    let next = broker.fetches().last().cloned().expect("a fetch");
    assert_eq!(
        (next.session_id, next.epoch, listed(&next)),
        (0, 0, vec![(0, 3), (1, 0)]),
        "a full create after the close"
    );

    // A broker that keeps no sessions: nothing to close, nothing sent.
    let broker = FakeBroker::start().await;
    broker.topic("t", 1);
    let _logs = Logs::serving(&broker);
    let mut fetcher = Fetcher::new(client(&broker).await, quick()).expect("fetcher");
    fetcher.assign("t", 0, 0);
    fetcher.poll().await.expect("poll");
    let before = broker.fetches().len();
    fetcher.close(Duration::from_secs(5)).await;
    assert_eq!(
        broker.fetches().len(),
        before,
        "no close request without a session"
    );
}

/// A fetcher with a session on the broker, after one full and one incremental fetch of
/// partition 0 of `t` (the broker granting sessions), and the session's id.
async fn fetcher_in_a_session(broker: &FakeBroker) -> (Fetcher, i32) {
    let (mut fetcher, logs) = fetcher_of_t(broker, 1).await;
    logs.produce(0, 2);
    let mut got = Got::default();
    assert_eq!(got.poll(&mut fetcher).await, 2); // full: creates the session
    assert_eq!(got.poll(&mut fetcher).await, 0); // incremental
    let id = broker.fetches().last().map_or(0, |f| f.session_id);
    assert_ne!(id, 0, "a session was in use");
    assert_eq!(broker.open_fetch_sessions(), vec![id]);
    (fetcher, id)
}

/// Dropping a fetcher without `close` still closes its session on the broker (from a task of
/// its runtime): every short-lived reader (the RPC client's reply reader when the client goes,
/// a server's dedup-window loads, the CLI's readers) would otherwise hold one of the broker's
/// session slots until evicted. (The old code only closed sessions on `close`.)
#[tokio::test]
async fn dropping_a_fetcher_closes_its_session_on_the_broker() {
    let broker = FakeBroker::start().await;
    let (fetcher, id) = fetcher_in_a_session(&broker).await;
    drop(fetcher);
    krpc_tests::wait::until("the session closed", Duration::from_secs(5), || async {
        broker.open_fetch_sessions().is_empty().then_some(())
    })
    .await;
    let last = broker.fetches().last().cloned().expect("a fetch");
    assert_eq!(
        (last.session_id, last.epoch, last.listed.len()),
        (id, -1, 0),
        "the close: the session's id, FINAL_EPOCH, nothing listed"
    );
}

/// A session whose broker connection is gone (retired after a fetch timed out) is not closed
/// by dialling the broker again: Java skips a node it cannot reach, and the broker evicts the
/// session in time. The close returns at once, with no dial and no request.
#[tokio::test]
async fn a_session_whose_connection_is_gone_is_left_to_the_broker() {
    let broker = FakeBroker::start().await;
    let (mut fetcher, id) = fetcher_in_a_session(&broker).await;
    broker.go_silent(true);
    assert!(fetcher.poll().await.expect("poll").is_empty()); // times out: connection retired
    broker.go_silent(false);
    let (dials, fetches) = (broker.dials(), broker.count(ApiKey::Fetch));
    let closing = Instant::now();
    fetcher.close(Duration::from_secs(5)).await;
    assert!(
        closing.elapsed() < Duration::from_secs(1),
        "nothing waited on"
    );
    assert_eq!(broker.dials(), dials, "no dial to close a session");
    assert_eq!(broker.count(ApiKey::Fetch), fetches, "no request");
    assert_eq!(broker.open_fetch_sessions(), vec![id], "left to the broker");
}

/// A fetcher dropped while its runtime shuts down (its task dropped unfinished) does not
/// panic: the close task it spawns on that runtime is dropped unrun, and the session is left
/// to the broker. (Tokio catches a panic of a task dropped at shutdown: the fetcher is dropped
/// inside `catch_unwind` here, so a panic fails the test.)
#[test]
fn a_fetcher_dropped_with_its_runtime_does_not_panic() {
    /// Drops its fetcher inside `catch_unwind` and records whether that ran and returned.
    struct Probe(Option<Fetcher>, Arc<Mutex<Option<bool>>>);
    impl Drop for Probe {
        fn drop(&mut self) {
            let fetcher = self.0.take();
            let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(fetcher)));
            *self.1.lock().unwrap() = Some(dropped.is_ok());
        }
    }
    let broker_rt = tokio::runtime::Runtime::new().expect("runtime");
    let broker = broker_rt.block_on(FakeBroker::start());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = Arc::new(Mutex::new(None));
    let (ready, holding) = tokio::sync::oneshot::channel();
    let seen = outcome.clone();
    rt.spawn(async move {
        let (fetcher, _id) = fetcher_in_a_session(&broker).await;
        let _probe = Probe(Some(fetcher), seen);
        let _ = ready.send(broker);
        std::future::pending::<()>().await;
    });
    let broker = rt.block_on(holding).expect("the task got a session");
    assert_eq!(*outcome.lock().unwrap(), None, "still held");
    drop(rt); // drops the task and its fetcher while the runtime shuts down
    assert_eq!(
        *outcome.lock().unwrap(),
        Some(true),
        "the fetcher was dropped, without a panic"
    );
    assert_eq!(broker.open_fetch_sessions().len(), 1, "left to the broker");
    drop(broker_rt);
}
