//! A consumer-group member in a process of its own, for the group tests (which kill it with -9).
//!
//! Usage: group-member BOOTSTRAP GROUP TOPIC SESSION_TIMEOUT_MS
//! Prints one line per event: `assigned T/P,T/P`, `revoked ...`, `record P OFFSET`,
//! `committed P OFFSET` (the next offset to read, after the commit succeeded). Exits cleanly
//! (commit, leave) when stdin closes.

use std::time::Duration;

use krpc_kafka::{ClientConfig, GroupConfig, GroupConsumer, GroupEvent, KafkaClient, OffsetReset};
use tokio::io::AsyncReadExt;

fn show(a: &krpc_kafka::group::Assignment) -> String {
    let parts: Vec<String> = a
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| format!("{t}/{p}")))
        .collect();
    parts.join(",")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, group, topic, session_ms] = &args[..] else {
        eprintln!("usage: group-member BOOTSTRAP GROUP TOPIC SESSION_TIMEOUT_MS");
        std::process::exit(2);
    };
    let session = Duration::from_millis(session_ms.parse().expect("session timeout ms"));
    let client = KafkaClient::connect(ClientConfig::new(bootstrap))
        .await
        .expect("connect");
    let mut cfg = GroupConfig::new(group.clone(), &[topic.as_str()]);
    cfg.session_timeout = session;
    cfg.heartbeat_interval = session / 6;
    cfg.rebalance_timeout = Duration::from_secs(20);
    cfg.fetch.offset_reset = OffsetReset::Earliest;
    cfg.fetch.max_wait = Duration::from_millis(50);
    let mut consumer = GroupConsumer::new(client, cfg).expect("consumer");
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            n = stdin.read(&mut buf) => {
                if matches!(n, Ok(0) | Err(_)) {
                    consumer.close().await.expect("close");
                    println!("closed");
                    return;
                }
            }
            event = consumer.poll() => match event.expect("poll") {
                GroupEvent::Assigned(a) => println!("assigned {}", show(&a)),
                GroupEvent::Revoked(a) => println!("revoked {}", show(&a)),
                GroupEvent::Records(records) => {
                    for r in &records {
                        println!("record {} {}", r.partition, r.offset);
                    }
                    let positions = consumer.positions();
                    match consumer.commit(&positions).await {
                        Ok(()) => {
                            for parts in positions.values() {
                                for (p, o) in parts {
                                    println!("committed {p} {o}");
                                }
                            }
                        }
                        Err(e) => eprintln!("group-member: commit failed: {e}"),
                    }
                }
            }
        }
    }
}
