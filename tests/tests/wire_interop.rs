//! Wire interop with independent clients: records written by krpc-kafka are read identically by
//! librdkafka and kafka-python, and records they write (every codec, zstd included) are decoded
//! by krpc-kafka.

use std::time::Duration;

use krpc_kafka::{Codec, Producer, ProducerConfig};
use krpc_tests::{kafka, python, sample, Broker};

const T: Duration = Duration::from_secs(60);
const N: usize = 40;
const KAFKA_PYTHON_N: usize = 34;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_we_produce_are_read_identically_by_librdkafka_and_kafka_python() {
    let addr = Broker::shared().addr().to_string();
    let client = kafka::client(&addr).await;
    for codec in Codec::ALL {
        let topic = kafka::topic(&client, &format!("to-peers-{}", codec.name()), 1).await;
        let producer = Producer::new(client.clone(), ProducerConfig::default().with_codec(codec))
            .expect("valid producer options");
        for i in 0..N {
            producer
                .send_to(&topic, 0, sample::record(i))
                .await
                .unwrap();
        }
        producer.flush().await;
        for peer in ["confluent", "kafka-python"] {
            let out = python::run(
                "peers.py",
                &["consume", peer, &addr, &topic, &N.to_string()],
                T,
            );
            let lines: Vec<serde_json::Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines.len(), N, "{peer} {codec:?}");
            for (i, got) in lines.iter().enumerate() {
                assert_eq!(
                    got,
                    &sample::json(i, i as i64),
                    "{peer} read record {i} written with {codec:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_librdkafka_produces_with_every_codec_are_decoded() {
    let addr = Broker::shared().addr().to_string();
    let client = kafka::client(&addr).await;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = kafka::topic(&client, &format!("from-rdkafka-{codec}"), 1).await;
        python::run(
            "peers.py",
            &["produce", "confluent", &addr, &topic, codec, &N.to_string()],
            T,
        );
        check_decoded(&client, &topic, N, sample::assert_is).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_kafka_python_produces_with_every_codec_are_decoded() {
    let addr = Broker::shared().addr().to_string();
    let client = kafka::client(&addr).await;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = kafka::topic(&client, &format!("from-kafka-python-{codec}"), 1).await;
        // kafka-python refuses a record with neither key nor value; sample 34 is the first.
        let n = KAFKA_PYTHON_N.to_string();
        python::run(
            "peers.py",
            &["produce", "kafka-python", &addr, &topic, codec, &n],
            T,
        );
        check_decoded(
            &client,
            &topic,
            KAFKA_PYTHON_N,
            sample::assert_is_without_null_headers,
        )
        .await;
    }
}

async fn check_decoded(
    client: &krpc_kafka::KafkaClient,
    topic: &str,
    n: usize,
    check: fn(&krpc_kafka::ConsumerRecord, usize, i64),
) {
    let got = kafka::read(client, topic, 0, 0, n, T).await;
    for (i, r) in got.iter().enumerate() {
        check(r, i, i as i64);
    }
}
