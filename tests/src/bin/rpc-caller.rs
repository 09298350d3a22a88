//! A client process for the RPC tests: makes CALLS calls of `add(i, SALT)` with CONCURRENCY in
//! flight, checks every result, and prints a JSON summary on stdout.
//!
//! Usage: rpc-caller BOOTSTRAP SERVICE CALLS CONCURRENCY SALT

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_rpc::krpc_kafka::{ClientConfig, KafkaClient};
use kafka_rpc::{CallOptions, RpcClient};

#[derive(Default)]
struct Tally {
    ok: usize,
    wrong: usize,
    failed: usize,
    errors: Vec<String>,
    by_server: BTreeMap<String, usize>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, service, calls, concurrency, salt] = &args[..] else {
        eprintln!("usage: rpc-caller BOOTSTRAP SERVICE CALLS CONCURRENCY SALT");
        std::process::exit(2);
    };
    let (calls, concurrency, salt): (usize, usize, i64) = (
        calls.parse().unwrap(),
        concurrency.parse().unwrap(),
        salt.parse().unwrap(),
    );
    let kafka = KafkaClient::connect(ClientConfig::new(bootstrap))
        .await
        .expect("connect");
    let client = RpcClient::connect(kafka, krpc_tests::tuning::client_options())
        .await
        .expect("rpc client");
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, tally, service) =
                (client.clone(), next.clone(), tally.clone(), service.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= calls {
                        return;
                    }
                    let options = CallOptions::default().with_timeout(Duration::from_secs(60));
                    let result = client
                        .call::<_, i64>(&service, "add", &(i as i64, salt), options)
                        .await;
                    let mut t = tally.lock().unwrap();
                    match result {
                        Ok(r) if r.value == i as i64 + salt => {
                            t.ok += 1;
                            *t.by_server.entry(r.meta.server_id).or_default() += 1;
                        }
                        Ok(r) => {
                            t.wrong += 1;
                            t.errors
                                .push(format!("add({i}, {salt}) returned {}", r.value));
                        }
                        Err(e) => {
                            t.failed += 1;
                            if t.errors.len() < 5 {
                                t.errors.push(e.to_string());
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    let t = tally.lock().unwrap();
    let (stray, malformed) = client.dropped_replies();
    let summary = serde_json::json!({
        "ok": t.ok, "wrong": t.wrong, "failed": t.failed, "errors": t.errors,
        "by_server": t.by_server, "stray": stray, "malformed": malformed,
    });
    println!("{summary}");
}
