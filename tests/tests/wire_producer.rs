//! The producer against the real broker: its bounded buffer (`buffer.memory`, `max.block.ms`),
//! `flush`, `close`, and partitions that progress independently (a partition without a leader,
//! which nisshi cannot show by itself, is made by the Kafka-aware proxy rewriting Metadata).

use std::time::{Duration, Instant};

use futures::FutureExt;
use krpc_kafka::{Error, OffsetSpec, Producer, ProducerConfig, ProducerRecord};
use krpc_tests::frame_proxy::FrameProxy;
use krpc_tests::{kafka, wait, Broker};

/// Bound on every wait of these tests.
const T: Duration = Duration::from_secs(20);

/// A record whose size, as the producer's buffer counts it, is 1,031 bytes.
fn kib_record(i: usize) -> ProducerRecord {
    let mut v = format!("{i}:").into_bytes();
    v.resize(1000, b'.');
    ProducerRecord::value(v)
}

/// Batches that stay queued until a flush or close (a minute's linger, room for everything).
fn lingering() -> ProducerConfig {
    ProducerConfig::default()
        .with_linger(Duration::from_secs(60))
        .with_max_batch_bytes(1 << 20)
}

async fn end_offset(client: &krpc_kafka::KafkaClient, topic: &str, partition: i32) -> i64 {
    client
        .list_offset(topic, partition, OffsetSpec::Latest)
        .await
        .expect("list offsets")
}

/// Records for a partition without a leader hold their buffer space: a send finding the
/// buffer full waits `max_block`, then fails naming the limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_blocks_send_then_fails_after_max_block() {
    let (_proxy, client, direct, topic) = partition_zero_leaderless("buffer-full").await;
    let producer = Producer::new(
        client.clone(),
        ProducerConfig::default()
            .with_linger(Duration::ZERO)
            .with_buffer_memory(4096)
            .with_max_block(Duration::from_millis(500)),
    )
    .expect("valid producer options");
    assert_eq!(kib_record(0).encoded_size_bound(), 1031);
    let mut stuck = Vec::new();
    for i in 0..3 {
        stuck.push(producer.send_to(&topic, 0, kib_record(i)).await.unwrap());
    }
    // A fourth record does not fit in 4,096 bytes while the three are unacknowledged.
    let started = Instant::now();
    let err = producer
        .send_to(&topic, 1, kib_record(3))
        .await
        .err()
        .expect("refused once max_block passed");
    let waited = started.elapsed();
    assert!(
        matches!(
            &err,
            Error::BufferExhausted {
                size: 1031,
                buffer_memory: 4096,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("buffer.memory") && text.contains("max.block.ms") && text.contains(&topic),
        "the error names the limits and the topic: {text}"
    );
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
        "blocked for max_block, then failed: {waited:?}"
    );
    // The keyed path blocks the same way.
    let err = producer
        .send(&topic, kib_record(4).with_key("k"))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, Error::BufferExhausted { .. }), "{err:?}");
    assert_eq!(
        end_offset(&direct, &topic, 1).await,
        0,
        "nothing refused was written"
    );
    let err = producer
        .close_timeout(Duration::from_millis(200))
        .await
        .expect_err("three records cannot be delivered");
    assert!(
        matches!(err, Error::CloseTimeout { unfinished: 1, .. }),
        "{err:?}"
    );
    for d in stuck {
        assert!(matches!(d.await, Err(Error::Closed("producer"))));
    }
}

/// A send waiting for space makes every batch ready (as the Java producer does when its buffer
/// is exhausted): the lingering batch goes at once, its acknowledgement frees the space, and
/// the waiting send goes on, long before the minute's linger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_waiting_for_buffer_space_goes_on_once_queued_records_are_acknowledged() {
    let client = kafka::client(Broker::shared().addr()).await;
    let topic = kafka::topic(&client, "buffer-wait", 1).await;
    let producer = Producer::new(
        client.clone(),
        lingering().with_buffer_memory(4096).with_max_block(T),
    )
    .expect("valid producer options");
    let mut queued = Vec::new();
    for i in 0..3 {
        queued.push(producer.send_to(&topic, 0, kib_record(i)).await.unwrap());
    }
    let started = Instant::now();
    let fourth = producer
        .send_to(&topic, 0, kib_record(3))
        .await
        .expect("queued once space came back");
    let waited = started.elapsed();
    eprintln!("the fourth send waited {waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    for (i, d) in queued.into_iter().enumerate() {
        let md = tokio::time::timeout(T, d)
            .await
            .expect("resolved")
            .expect("delivered");
        assert_eq!(md.offset, i as i64);
    }
    tokio::time::timeout(T, producer.flush())
        .await
        .expect("flush");
    let md = fourth.now_or_never().expect("flushed").expect("delivered");
    assert_eq!(md.offset, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_until_everything_sent_before_it_is_acknowledged() {
    let client = kafka::client(Broker::shared().addr()).await;
    let topic = kafka::topic(&client, "flush", 3).await;
    let producer = Producer::new(client.clone(), lingering()).expect("valid producer options");
    let mut deliveries = Vec::new();
    for i in 0..90 {
        deliveries.push(
            producer
                .send_to(&topic, (i % 3) as i32, kib_record(i))
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    tokio::time::timeout(T, producer.flush())
        .await
        .expect("flush returns long before the minute's linger");
    eprintln!("flush of 90 records took {:?}", started.elapsed());
    let mut offsets = vec![Vec::new(); 3];
    for d in deliveries {
        let md = d
            .now_or_never()
            .expect("every record is resolved when flush returns")
            .expect("delivered");
        offsets[md.partition as usize].push(md.offset);
    }
    for (p, o) in offsets.iter().enumerate() {
        assert_eq!(o, &(0..30).collect::<Vec<i64>>(), "partition {p}");
        assert_eq!(end_offset(&client, &topic, p as i32).await, 30);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delivers_everything_sent_before_it_and_refuses_later_sends() {
    let client = kafka::client(Broker::shared().addr()).await;
    let topic = kafka::topic(&client, "close", 2).await;
    let producer = Producer::new(client.clone(), lingering()).expect("valid producer options");
    let other_handle = producer.clone();
    let mut deliveries = Vec::new();
    for i in 0..100 {
        deliveries.push(
            producer
                .send_to(&topic, (i % 2) as i32, kib_record(i))
                .await
                .unwrap(),
        );
    }
    tokio::time::timeout(T, producer.close())
        .await
        .expect("close returns once everything is acknowledged");
    for d in deliveries {
        d.now_or_never()
            .expect("resolved when close returns")
            .expect("delivered");
    }
    assert_eq!(end_offset(&client, &topic, 0).await, 50);
    assert_eq!(end_offset(&client, &topic, 1).await, 50);
    // Every clone is closed.
    for err in [
        other_handle
            .send_to(&topic, 0, kib_record(0))
            .await
            .err()
            .expect("refused"),
        other_handle
            .send(&topic, kib_record(0))
            .await
            .err()
            .expect("refused"),
    ] {
        assert!(matches!(err, Error::Closed("producer")), "{err:?}");
        assert_eq!(err.to_string(), "producer is closed");
    }
    assert_eq!(
        end_offset(&client, &topic, 0).await,
        50,
        "nothing after close"
    );
}

/// A topic of two partitions behind a proxy that hides partition 0's leader: the proxy, a
/// client through it, one straight to the broker, and the topic.
async fn partition_zero_leaderless(
    prefix: &str,
) -> (
    FrameProxy,
    krpc_kafka::KafkaClient,
    krpc_kafka::KafkaClient,
    String,
) {
    let direct = kafka::client(Broker::shared().addr()).await;
    let topic = kafka::topic(&direct, prefix, 2).await;
    let proxy = FrameProxy::start(Broker::shared().addr()).await;
    proxy.hide_leader(&topic, 0);
    let client = kafka::client(proxy.addr()).await;
    (proxy, client, direct, topic)
}

/// The fault: a produce round waited for every batch in it, retries included, and the next
/// round started only after, so a partition without a leader stalled every other partition
/// until its batch's delivery timeout (here 20 s). Each partition now progresses on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_without_a_leader_does_not_stall_the_others() {
    let (proxy, client, direct, topic) = partition_zero_leaderless("leaderless").await;
    let producer = Producer::new(
        client.clone(),
        ProducerConfig::default()
            .with_linger(Duration::ZERO)
            .with_delivery_timeout(T),
    )
    .expect("valid producer options");
    let metadata = || {
        proxy
            .requests()
            .get(&kafka_protocol::messages::ApiKey::Metadata)
            .copied()
            .unwrap_or(0)
    };
    let before = metadata();
    let stuck = producer
        .send_to(
            &topic,
            0,
            ProducerRecord::value("to the leaderless partition"),
        )
        .await
        .unwrap();
    // The producer has looked for partition 0's leader and not found it.
    wait::until("a metadata refresh for partition 0", T, || async {
        (metadata() > before).then_some(())
    })
    .await;
    let started = Instant::now();
    let md = tokio::time::timeout(
        Duration::from_secs(5),
        producer
            .send_to(
                &topic,
                1,
                ProducerRecord::value("to the partition with a leader"),
            )
            .await
            .unwrap(),
    )
    .await
    .expect("partition 1 is not held back by partition 0")
    .expect("delivered");
    eprintln!("partition 1 acknowledged in {:?}", started.elapsed());
    assert_eq!((md.partition, md.offset), (1, 0));
    let mut stuck = Box::pin(stuck);
    assert!(
        (&mut stuck).now_or_never().is_none(),
        "partition 0 still waits for a leader"
    );
    // The leader comes back: partition 0's batch goes too (metadata is refreshed with backoff).
    proxy.show_leader(&topic, 0);
    let md = tokio::time::timeout(T, stuck)
        .await
        .expect("delivered once partition 0 has a leader")
        .expect("delivered");
    assert_eq!((md.partition, md.offset), (0, 0));
    assert_eq!(end_offset(&direct, &topic, 0).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_timeout_fails_what_cannot_be_delivered_in_time() {
    let (_proxy, client, direct, topic) = partition_zero_leaderless("close-timeout").await;
    let producer = Producer::new(
        client.clone(),
        ProducerConfig::default().with_linger(Duration::ZERO),
    )
    .expect("valid producer options");
    let delivered = producer
        .send_to(&topic, 1, ProducerRecord::value("has a leader"))
        .await
        .unwrap();
    tokio::time::timeout(T, delivered)
        .await
        .expect("partition 1 acknowledged")
        .expect("delivered");
    let stuck = producer
        .send_to(&topic, 0, ProducerRecord::value("no leader"))
        .await
        .unwrap();
    let started = Instant::now();
    let err = producer
        .close_timeout(Duration::from_millis(500))
        .await
        .expect_err("partition 0 cannot be delivered");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(err, Error::CloseTimeout { unfinished: 1, .. }),
        "{err:?}"
    );
    let err = tokio::time::timeout(T, stuck)
        .await
        .expect("resolved by the forced close")
        .expect_err("failed");
    assert!(matches!(err, Error::Closed("producer")), "{err:?}");
    assert_eq!(end_offset(&direct, &topic, 0).await, 0);
}

/// Review R6: a producer whose sender task is gone (here: the runtime that ran its first send
/// shut down while the producer lives on in another) fails what it had queued, and `flush` and
/// `close` return, instead of waiting forever.
#[test]
fn a_producer_whose_sender_task_ended_fails_its_queue_instead_of_hanging() {
    let addr = Broker::shared().addr().to_string();
    let first = one_thread_runtime();
    let (producer, delivery) = first.block_on(async {
        let client = kafka::client(&addr).await;
        let topic = kafka::topic(&client, "sender-ended", 1).await;
        let producer = Producer::new(client, lingering()).expect("valid producer options");
        let delivery = producer
            .send_to(&topic, 0, kib_record(0))
            .await
            .expect("queued");
        (producer, delivery)
    });
    drop(first); // the sender task, spawned on `first`, is dropped with it
    let second = one_thread_runtime();
    second.block_on(async {
        let outcome = tokio::time::timeout(T, delivery)
            .await
            .expect("the queued record's delivery resolves");
        assert!(matches!(outcome, Err(Error::Closed(_))), "{outcome:?}");
        tokio::time::timeout(T, producer.flush())
            .await
            .expect("flush returns");
        tokio::time::timeout(T, producer.close())
            .await
            .expect("close returns");
    });
}

/// An idle producer's record is written to the broker by the sending task itself: it is on
/// the broker before the runtime has run any other task (the sender task included). The
/// runtime here has one thread, which the test blocks right after `send_to` returns while
/// another thread, with a runtime and a client of its own, watches the log end. Before, the
/// request waited for the sender task to be scheduled, so it reached the broker only once the
/// sending thread yielded (and on a multi-threaded runtime, after waking a parked worker).
#[test]
fn an_idle_producers_record_reaches_the_broker_before_the_runtime_runs_another_task() {
    let addr = Broker::shared().addr().to_string();
    let rt = one_thread_runtime();
    rt.block_on(async {
        let client = kafka::client(&addr).await;
        let topic = kafka::topic(&client, "idle-send", 1).await;
        let producer = Producer::new(
            client.clone(),
            ProducerConfig::default().with_linger(Duration::ZERO),
        )
        .expect("valid producer options");
        // The first record starts the sender task, dials the leader and gets a producer id.
        let first =
            tokio::time::timeout(T, producer.send_to(&topic, 0, kib_record(0)).await.unwrap())
                .await
                .expect("first record acknowledged in time")
                .expect("first record delivered");
        assert_eq!(first.offset, 0);
        let delivery = producer.send_to(&topic, 0, kib_record(1)).await.unwrap();
        // From here until the watcher returns, this runtime runs nothing: its only thread waits.
        let watcher = {
            let (addr, topic) = (addr.clone(), topic.clone());
            std::thread::spawn(move || {
                let rt = one_thread_runtime();
                rt.block_on(async {
                    let client = kafka::client(&addr).await;
                    wait::until("the second record at the log end", T, || {
                        let client = client.clone();
                        let topic = topic.clone();
                        async move { (end_offset(&client, &topic, 0).await == 2).then_some(()) }
                    })
                    .await;
                })
            })
        };
        let seen = watcher.join();
        assert!(
            seen.is_ok(),
            "the record did not reach the broker while the sending runtime was blocked"
        );
        let md = tokio::time::timeout(T, delivery)
            .await
            .expect("acknowledged in time")
            .expect("delivered");
        assert_eq!(md.offset, 1);
    });
}

/// An idle producer's records cost its sender task no turn at all: the sending task writes
/// each request, and the connection's reader task hands the answer to the records' deliveries
/// (as the Java producer completes batches on its I/O thread). Before, every acknowledgement
/// went through the sender task: one turn of it (a thread wake) per record, between the answer
/// and the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_producers_acknowledgements_reach_their_callers_without_its_sender_task() {
    let client = kafka::client(Broker::shared().addr()).await;
    let topic = kafka::topic(&client, "idle-acks", 1).await;
    let producer = Producer::new(
        client.clone(),
        ProducerConfig::default().with_linger(Duration::ZERO),
    )
    .expect("valid producer options");
    // The first record starts the sender task, which dials the leader and gets a producer id.
    let first = tokio::time::timeout(T, producer.send_to(&topic, 0, kib_record(0)).await.unwrap())
        .await
        .expect("first record acknowledged in time")
        .expect("first record delivered");
    assert_eq!(first.offset, 0);
    let before = producer.sender_turns();
    assert!(before > 0, "the first record went through the sender task");
    for i in 1..=20 {
        let md = tokio::time::timeout(T, producer.send_to(&topic, 0, kib_record(i)).await.unwrap())
            .await
            .expect("acknowledged in time")
            .expect("delivered");
        assert_eq!(md.offset, i as i64);
    }
    let turns = producer.sender_turns() - before;
    assert!(
        turns <= 2,
        "20 records sent one at a time woke the sender task {turns} times"
    );
    assert_eq!(end_offset(&client, &topic, 0).await, 21);
}

/// A runtime of one thread: nothing runs on it while that thread is blocked.
fn one_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// Now in ms since the epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// Thousands of records in many batches (4 KiB `batch.size`) to two partitions, with keys,
/// headers, null values, and timestamps given or left to the producer, each encoded into its
/// batch as it is sent: every awaited delivery resolves with its record's offset (its place in
/// its partition, in send order) although the deliveries of a batch share one outcome and a
/// quarter of them were dropped unawaited; every record reads back as sent; the batches are
/// stamped for idempotence with sequences that follow the offsets; and a record sent without
/// a timestamp carries the time of its send (as the Java producer gives it), not the time its
/// batch went out 300 ms later (what the producer gave before it encoded records on send).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_sends_resolve_every_delivery_with_its_offset_and_keep_contents() {
    let client = kafka::client(Broker::shared().addr()).await;
    let topic = kafka::topic(&client, "batched", 2).await;
    let producer = Producer::new(
        client.clone(),
        ProducerConfig::default()
            .with_linger(Duration::from_millis(5))
            .with_max_batch_bytes(4096),
    )
    .expect("valid producer options");
    let base_ts = now_ms() - 60_000;
    // Per partition: (record, earliest and latest ms it may carry).
    let mut sent: Vec<Vec<(ProducerRecord, i64, i64)>> = vec![Vec::new(), Vec::new()];
    let mut deliveries = Vec::new();
    for i in 0..3000usize {
        let partition = i % 2;
        let mut record = ProducerRecord::value(format!("value {i}"));
        if i % 3 == 0 {
            record = record.with_key(format!("key {i}"));
        }
        if i % 5 == 0 {
            record.value = None;
        }
        if i % 7 == 0 {
            record = record
                .with_header("n", format!("{i}"))
                .with_header("empty", "");
        }
        if i % 4 == 0 {
            record = record.with_timestamp(base_ts + i as i64);
        }
        let before = now_ms();
        let delivery = producer
            .send_to(&topic, partition as i32, record.clone())
            .await
            .expect("queued");
        let after = now_ms();
        let offset = sent[partition].len() as i64;
        sent[partition].push((record, before, after));
        if i % 4 != 3 {
            deliveries.push((partition as i32, offset, delivery));
        }
    }
    for (partition, offset, delivery) in deliveries {
        let md = tokio::time::timeout(T, delivery)
            .await
            .expect("resolved in time")
            .expect("delivered");
        assert_eq!((md.partition, md.offset), (partition, offset));
        assert_eq!(&*md.topic, topic);
    }
    for (partition, sent) in sent.iter().enumerate() {
        let got = kafka::read(&client, &topic, partition as i32, 0, sent.len(), T).await;
        for (i, (got, (want, before, after))) in got.iter().zip(sent).enumerate() {
            assert_eq!(got.offset, i as i64);
            assert_eq!(
                (&got.key, &got.value, &got.headers),
                (&want.key, &want.value, &want.headers),
                "{partition}/{i}"
            );
            match want.timestamp {
                Some(ts) => assert_eq!(got.timestamp, ts),
                None => assert!(
                    (*before..=*after).contains(&got.timestamp),
                    "{partition}/{i}: {} not in [{before}, {after}]",
                    got.timestamp
                ),
            }
        }
        let batches = kafka::raw_batches(&client, &topic, partition as i32).await;
        assert!(batches.len() > 10, "many batches: {}", batches.len());
        for b in &batches {
            assert!(b.producer_id >= 0, "stamped: {b:?}");
            assert_eq!(b.base_sequence as i64, b.base_offset, "{b:?}");
        }
    }

    // The time of the send, not of the batch going out.
    let lingering = Producer::new(client.clone(), lingering()).expect("valid producer options");
    let before = now_ms();
    let delivery = lingering
        .send_to(&topic, 0, ProducerRecord::value("late"))
        .await
        .expect("queued");
    let after = now_ms();
    tokio::time::sleep(Duration::from_millis(300)).await; // the batch lingers meanwhile
    tokio::time::timeout(T, lingering.flush())
        .await
        .expect("flushed");
    let md = delivery
        .now_or_never()
        .expect("resolved")
        .expect("delivered");
    let got = kafka::read(&client, &topic, 0, md.offset, 1, T).await;
    assert!(
        (before..=after).contains(&got[0].timestamp),
        "{} not in [{before}, {after}]: the record carries its send time",
        got[0].timestamp
    );
}
