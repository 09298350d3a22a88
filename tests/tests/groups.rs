//! Consumer groups against the real broker: assignment, failover after kill -9, graceful leave,
//! mixed groups with librdkafka and kafka-python, durable offsets, heartbeats during long polls.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use krpc_kafka::group::Assignment;
use krpc_kafka::{
    GroupConfig, GroupConsumer, GroupEvent, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use krpc_tests::process::LineProcess;
use krpc_tests::{kafka, wait, Broker, Storage};

const SESSION_MS: u64 = 6000;

fn member(addr: &str, group: &str, topic: &str) -> LineProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_group-member"));
    cmd.args([addr, group, topic, &SESSION_MS.to_string()]);
    LineProcess::spawn("group-member", cmd)
}

/// The partitions a member process holds now (after its last assigned/revoked line).
fn held(p: &LineProcess) -> BTreeSet<i32> {
    let mut held = BTreeSet::new();
    for line in p.lines() {
        if let Some(rest) = line.strip_prefix("assigned ") {
            held = rest
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|tp| tp.rsplit('/').next().unwrap().parse().unwrap())
                .collect();
        } else if line.starts_with("revoked") {
            held.clear();
        }
    }
    held
}

/// (partition, offset) pairs a member printed with `prefix` ("record" or "committed").
fn pairs(p: &LineProcess, prefix: &str) -> Vec<(i32, i64)> {
    p.lines()
        .iter()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|rest| {
            let mut it = rest.split_whitespace();
            (
                it.next().unwrap().parse().unwrap(),
                it.next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// Waits until the members' holdings are disjoint, cover 0..n and every member holds something.
async fn wait_for_split(members: &[&LineProcess], n: i32, timeout: Duration) -> Vec<BTreeSet<i32>> {
    wait::until(
        "a disjoint assignment covering every partition",
        timeout,
        || async {
            let holdings: Vec<BTreeSet<i32>> = members.iter().map(|m| held(m)).collect();
            let total: usize = holdings.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<i32> = holdings.iter().flatten().copied().collect();
            let ok = total == n as usize
                && union == (0..n).collect()
                && holdings.iter().all(|h| !h.is_empty());
            ok.then_some(holdings)
        },
    )
    .await
}

async fn produce_round(
    producer: &Producer,
    topic: &str,
    partitions: i32,
    per_partition: usize,
    tag: &str,
) {
    for p in 0..partitions {
        for i in 0..per_partition {
            producer
                .send_to(topic, p, ProducerRecord::value(format!("{tag}-{p}-{i}")))
                .await
                .unwrap();
        }
    }
    producer.flush().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_split_six_partitions_and_survivors_take_over_a_killed_one() {
    let addr = Broker::shared().addr().to_string();
    let client = kafka::client(&addr).await;
    let topic = kafka::topic(&client, "group-kill", 6).await;
    let group = krpc_tests::unique_topic("group-kill");
    let mut members: Vec<LineProcess> = (0..3).map(|_| member(&addr, &group, &topic)).collect();

    // 1. Disjoint assignments covering all six partitions.
    let refs: Vec<&LineProcess> = members.iter().collect();
    let split = wait_for_split(&refs, 6, Duration::from_secs(60)).await;
    assert!(
        split.iter().all(|h| h.len() == 2),
        "range over 3 members x 6 partitions gives 2 each: {split:?}"
    );

    // 2. Records consumed and committed, then a member is killed without leaving.
    let producer =
        Producer::new(client.clone(), ProducerConfig::default()).expect("valid producer options");
    produce_round(&producer, &topic, 6, 20, "a").await;
    wait::until(
        "round a committed everywhere",
        Duration::from_secs(30),
        || async {
            let committed: HashMap<i32, i64> = members
                .iter()
                .flat_map(|m| pairs(m, "committed "))
                .collect();
            (0..6).all(|p| committed.get(&p) == Some(&20)).then_some(())
        },
    )
    .await;
    let victim = 0;
    let victim_parts = held(&members[victim]);
    let victim_committed: HashMap<i32, i64> =
        pairs(&members[victim], "committed ").into_iter().collect();
    let killed_at = Instant::now();
    members[victim].kill9();
    produce_round(&producer, &topic, 6, 20, "b").await;

    let survivors: Vec<&LineProcess> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, m)| m)
        .collect();
    wait_for_split(
        &survivors,
        6,
        Duration::from_millis(SESSION_MS) + Duration::from_secs(30),
    )
    .await;
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_millis(SESSION_MS) + Duration::from_secs(15),
        "the survivors took the dead member's partitions after {took:?} (session timeout {SESSION_MS} ms)"
    );
    wait::until(
        "every record consumed at least once",
        Duration::from_secs(60),
        || async {
            let seen: HashSet<(i32, i64)> =
                members.iter().flat_map(|m| pairs(m, "record ")).collect();
            (0..6)
                .all(|p| (0..40).all(|o| seen.contains(&(p, o))))
                .then_some(())
        },
    )
    .await;
    // Nothing the dead member committed is consumed again by the survivors.
    for s in &survivors {
        for (p, o) in pairs(s, "record ") {
            if victim_parts.contains(&p) {
                let committed = victim_committed.get(&p).copied().unwrap_or(0);
                assert!(
                    o >= committed,
                    "partition {p} offset {o} re-consumed below the committed {committed}"
                );
            }
        }
    }
}

fn in_process_config(group: &str, topic: &str) -> GroupConfig {
    let mut cfg = GroupConfig::new(group, &[topic]);
    cfg.session_timeout = Duration::from_secs(30);
    cfg.heartbeat_interval = Duration::from_millis(500);
    cfg.rebalance_timeout = Duration::from_secs(20);
    cfg.fetch.offset_reset = OffsetReset::Earliest;
    cfg.fetch.max_wait = Duration::from_millis(50);
    cfg
}

/// Polls `c` until its assignment satisfies `done`, returning it.
async fn poll_until(
    c: &mut GroupConsumer,
    timeout: Duration,
    done: impl Fn(&Assignment) -> bool,
) -> Assignment {
    let deadline = Instant::now() + timeout;
    loop {
        assert!(
            Instant::now() < deadline,
            "assignment not reached within {timeout:?}: {:?}",
            c.assignment()
        );
        match tokio::time::timeout(Duration::from_secs(1), c.poll()).await {
            Ok(Ok(GroupEvent::Assigned(a))) if done(&a) => return a,
            Ok(Err(e)) => panic!("poll failed: {e}"),
            _ => {}
        }
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(Vec::len).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_close_rebalances_at_once_not_after_the_session_timeout() {
    let client = kafka::client(Broker::shared().addr()).await;
    let topic = kafka::topic(&client, "group-leave", 4).await;
    let group = krpc_tests::unique_topic("group-leave");
    let mut a = GroupConsumer::new(client.clone(), in_process_config(&group, &topic)).unwrap();
    poll_until(&mut a, Duration::from_secs(30), |x| count(x) == 4).await;
    let mut b = GroupConsumer::new(client.clone(), in_process_config(&group, &topic)).unwrap();
    // Both must poll for the rebalance to complete: a gives up half.
    let b_task = tokio::spawn(async move {
        poll_until(&mut b, Duration::from_secs(40), |x| count(x) == 2).await;
        b
    });
    poll_until(&mut a, Duration::from_secs(40), |x| count(x) == 2).await;
    let mut b = b_task.await.unwrap();

    let closed_at = Instant::now();
    a.close().await.expect("leave the group");
    poll_until(&mut b, Duration::from_secs(20), |x| count(x) == 4).await;
    let took = closed_at.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "rebalance took {took:?}; the session timeout is 30 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_broker_kill_and_restart_on_sqlite() {
    let mut broker = Broker::start(Storage::Sqlite);
    if !broker.is_owned() {
        eprintln!("skipped: KAFKA_BOOTSTRAP names an external broker this test cannot kill");
        return;
    }
    let client = kafka::client(broker.addr()).await;
    let topic = kafka::topic(&client, "group-durable", 2).await;
    let group = krpc_tests::unique_topic("group-durable");
    let mut c = GroupConsumer::new(client.clone(), in_process_config(&group, &topic)).unwrap();
    poll_until(&mut c, Duration::from_secs(30), |x| count(x) == 2).await;
    let offsets = HashMap::from([(topic.clone(), HashMap::from([(0, 17i64), (1, 42i64)]))]);
    c.commit(&offsets).await.unwrap();
    drop(c);

    broker.kill();
    broker.restart();
    let client = kafka::client(broker.addr()).await;
    let c = GroupConsumer::new(client, in_process_config(&group, &topic)).unwrap();
    let got = c
        .committed(&HashMap::from([(topic.clone(), vec![0, 1])]))
        .await
        .unwrap();
    assert_eq!(got, offsets, "committed offsets after kill -9 and restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_member_in_its_generation_through_a_minute_of_long_polls() {
    let client = kafka::client(Broker::shared().addr()).await;
    let topic = kafka::topic(&client, "group-idle", 2).await;
    let group = krpc_tests::unique_topic("group-idle");
    let mut cfg = in_process_config(&group, &topic);
    cfg.session_timeout = Duration::from_secs(6);
    cfg.heartbeat_interval = Duration::from_secs(1);
    // Each fetch long-polls longer than the session timeout itself.
    cfg.fetch.max_wait = Duration::from_secs(8);
    let mut c = GroupConsumer::new(client, cfg).unwrap();
    poll_until(&mut c, Duration::from_secs(30), |x| count(x) == 2).await;
    let generation = c.generation();
    // A minute of polling sees no event at all: no records and no rebalance.
    let idle = tokio::time::timeout(Duration::from_secs(61), c.poll()).await;
    if let Ok(event) = idle {
        panic!("an idle member saw {event:?}: a spurious rebalance");
    }
    assert_eq!(
        c.generation(),
        generation,
        "still the same generation after a minute"
    );
}

/// A krpc-kafka member polling in a task, publishing what it holds.
fn spawn_rust_member(
    client: krpc_kafka::KafkaClient,
    group: &str,
    topic: &str,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::Mutex<BTreeSet<i32>>>,
) {
    let held = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut c = GroupConsumer::new(client, in_process_config(group, topic)).unwrap();
    let publish = held.clone();
    let task = tokio::spawn(async move {
        loop {
            match c.poll().await.expect("poll") {
                GroupEvent::Assigned(a) => {
                    *publish.lock().unwrap() = a.values().flatten().copied().collect()
                }
                GroupEvent::Revoked(_) => publish.lock().unwrap().clear(),
                GroupEvent::Records(_) => {}
            }
        }
    });
    (task, held)
}

async fn mixed_group_with(peer: &str) {
    let addr = Broker::shared().addr().to_string();
    let client = kafka::client(&addr).await;
    let topic = kafka::topic(&client, &format!("mixed-{peer}"), 6).await;
    let group = krpc_tests::unique_topic(&format!("mixed-{peer}"));
    let (task, ours) = spawn_rust_member(client, &group, &topic);
    let mut cmd = Command::new(krpc_tests::python::python());
    cmd.arg(krpc_tests::repo_root().join("tests/interop/group_member.py"))
        .args([peer, &addr, &group, &topic]);
    let mut theirs = LineProcess::spawn(peer, cmd);
    let split = wait::until(
        &format!("krpc-kafka and {peer} to split 6 partitions"),
        Duration::from_secs(90),
        || async {
            let a = ours.lock().unwrap().clone();
            let b = held(&theirs);
            let union: BTreeSet<i32> = a.union(&b).copied().collect();
            (!a.is_empty() && !b.is_empty() && a.is_disjoint(&b) && union == (0..6).collect())
                .then_some((a, b))
        },
    )
    .await;
    assert_eq!(split.0.len() + split.1.len(), 6, "{split:?}");
    assert!(
        !theirs.lines().iter().any(|l| l.starts_with("error")),
        "{peer} reported errors: {:?}",
        theirs.lines()
    );
    theirs.close_and_wait(Duration::from_secs(30));
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_group_with_librdkafka_splits_the_partitions() {
    mixed_group_with("confluent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_group_with_kafka_python_splits_the_partitions() {
    mixed_group_with("kafka-python").await;
}
