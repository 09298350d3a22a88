//! The Python kafka-rpc 1.0.8 format ("legacy") against the real Python package from PyPI
//! (scripts/pyenv-seed): Python `KRPCClient`s call `krpc serve --legacy`, our `LegacyClient`
//! and `krpc call --legacy` call Python `KRPCServer`s, in every protection setting (none,
//! `verify`, `encrypt`, both), with positional and keyword arguments and remote exceptions;
//! and a Rust server shares one service's requests with a Python server in the group `krpc`.
//!
//! Every Python member joins the one group `krpc` (the package's design), so a join anywhere
//! rebalances every member: the tests of this file run one at a time.

use std::collections::BTreeSet;
use std::time::Duration;

use kafka_rpc::legacy::{LegacyCipher, LegacyFormat};
use kafka_rpc::{CallOptions, LegacyClient, RpcError};
use krpc_tests::process::LineProcess;
use krpc_tests::{python, rpc, wait, Broker};
use serde_json::{json, Value};

/// The protection settings of both packages: (label, verify, password).
const SETTINGS: [(&str, bool, Option<&str>); 4] = [
    ("plain", false, None),
    ("verify", true, None),
    ("encrypt", false, Some("s3cret")),
    ("both", true, Some("a-password-longer-than-sixteen-bytes")),
];

/// The tests of this binary, one at a time (see the module docs).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn name(label: &str) -> String {
    krpc_tests::unique_topic(&format!("legacy-{label}"))
}

fn format(verify: bool, password: Option<&str>) -> LegacyFormat {
    LegacyFormat {
        verify,
        cipher: password.map(LegacyCipher::new),
    }
}

/// `krpc serve --legacy` for `name` with these settings, as `server_id`.
fn rust_server(
    addr: &str,
    name: &str,
    server_id: &str,
    verify: bool,
    password: Option<&str>,
) -> LineProcess {
    let mut cmd = krpc_tests::tuning::krpc_command();
    cmd.args(["serve", "--legacy", "--bootstrap", addr, "--service", name])
        .args(["--server-id", server_id])
        .env("KRPC_LOG", "warn,kafka_rpc=info");
    if verify {
        cmd.arg("--legacy-verify");
    }
    if let Some(p) = password {
        cmd.env("KRPC_LEGACY_PASSWORD", p);
    }
    LineProcess::spawn_merged(server_id, cmd)
}

/// A Python `KRPCServer` for `name`, started and polling.
async fn python_server(
    addr: &str,
    name: &str,
    server_name: &str,
    verify: bool,
    password: Option<&str>,
) -> LineProcess {
    let mut cmd = python::script(python::seed_python(), "legacy_peer.py");
    cmd.args(["server", addr, name, if verify { "1" } else { "0" }])
        .args([password.unwrap_or("-"), server_name]);
    let p = LineProcess::spawn_merged(server_name, cmd);
    wait::until(
        "the Python server to poll",
        Duration::from_secs(60),
        || async { p.lines().iter().any(|l| l == "ready").then_some(()) },
    )
    .await;
    p
}

/// Stops a server with `signal` and waits for it to exit, so that it leaves the group `krpc`:
/// a member killed with -9 would stall the group's next rebalance until its session times
/// out (45 s for a librdkafka member).
fn stop(mut server: LineProcess, signal: i32) -> LineProcess {
    server.signal(signal);
    let status = server.close_and_wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "a server stopped by signal {signal} exited with {status}"
    );
    server
}

/// Waits until `server` holds `count` partitions of its request topic.
async fn holding(server: &LineProcess, count: usize) {
    wait::until(
        &format!("the Rust server to hold {count} partitions"),
        Duration::from_secs(90),
        || async { (rpc::served_partitions(server).len() == count).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_call_our_server_in_every_setting() {
    let _one_at_a_time = SERIAL.lock().await;
    let addr = Broker::shared().addr().to_string();
    for (label, verify, password) in SETTINGS {
        let name = name(label);
        let server_id = format!("rust-{label}");
        let server = rust_server(&addr, &name, &server_id, verify, password);
        holding(&server, 64).await;
        let out = python::run_with(
            python::seed_python(),
            "legacy_peer.py",
            &[
                "client",
                &addr,
                &name,
                if verify { "1" } else { "0" },
                password.unwrap_or("-"),
            ],
            Duration::from_secs(180),
        );
        let got: Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{label}: {e}: {out}"));
        let ok = |key: &str, expected: Value| {
            assert_eq!(got[key]["ret"], expected, "{label}: {key}: {got}");
            assert_eq!(got[key]["server_id"], json!(server_id), "{label}: {key}");
            assert!(got[key].get("exception").is_none(), "{label}: {key}: {got}");
        };
        assert_eq!(
            got["handshaked"],
            json!(true),
            "{label}: our server answers the handshake"
        );
        ok("add", json!(3));
        ok("add_kwargs", json!(3));
        ok("add_all_kwargs", json!(3.5));
        ok("echo", json!({"k": [1, "x", null], "n": -7}));
        let raised = |key: &str, expected: &str| {
            assert_eq!(got[key]["ret"], Value::Null, "{label}: {key}");
            assert_eq!(
                got[key]["exception"],
                json!(expected),
                "{label}: {key}: {got}"
            );
        };
        raised("fail", "RuntimeError('boom')");
        raised(
            "bad_kwarg",
            "TypeError(\"add() got an unexpected keyword argument 'c'\")",
        );
        raised(
            "unknown",
            "AttributeError('the service has no method \"no_such_method\"')",
        );
        let server = stop(server, libc::SIGTERM);
        let stats = server
            .lines()
            .into_iter()
            .find(|l| l.contains("stopped;"))
            .unwrap_or_default();
        assert!(stats.contains("handshakes=1"), "{label}: {stats}");
        assert!(
            stats.contains("ok=4") && stats.contains("unknown_method=1"),
            "{label}: {stats}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_calls_python_servers_in_every_setting() {
    let _one_at_a_time = SERIAL.lock().await;
    let addr = Broker::shared().addr().to_string();
    let kafka = krpc_tests::kafka::client(&addr).await;
    for (label, verify, password) in SETTINGS {
        let name = name(label);
        let server_name = format!("python-{label}");
        let server = python_server(&addr, &name, &server_name, verify, password).await;
        let mut options = krpc_tests::tuning::legacy_client_options(&name);
        options.format = format(verify, password);
        let client = LegacyClient::connect(kafka.clone(), options)
            .await
            .expect("legacy client");
        // The Python server may still be joining its group: calls wait in Kafka meanwhile.
        let wait = || CallOptions::default().with_timeout(Duration::from_secs(60));
        let r = client
            .call::<_, i64>("add", &(1, 2), wait())
            .await
            .expect(label);
        assert_eq!(
            (r.value, r.meta.server_id.as_str()),
            (3, server_name.as_str()),
            "{label}"
        );
        let kwargs = std::collections::BTreeMap::from([("b", 2.5)]);
        let r = client
            .call_kw::<_, _, f64>("add", &(1,), &kwargs, wait())
            .await
            .expect(label);
        assert_eq!(r.value, 3.5, "{label}: keyword arguments");
        let nested = json!({"k": [1, "x", null], "n": -7});
        let r = client
            .call::<_, Value>("echo", &(nested.clone(),), wait())
            .await
            .expect(label);
        assert_eq!(r.value, nested, "{label}: echo");
        match client.call::<_, Value>("fail", &("boom",), wait()).await {
            Err(RpcError::Remote {
                exception,
                traceback,
                ..
            }) => {
                assert_eq!(exception, "ValueError: boom", "{label}");
                assert!(
                    traceback.starts_with("Traceback (most recent call last)"),
                    "{label}: {traceback}"
                );
                assert!(
                    traceback.contains("raise ValueError(message)"),
                    "{label}: {traceback}"
                );
            }
            other => panic!("{label}: expected the Python exception, got {other:?}"),
        }
        // The CLI speaks it too.
        let mut cmd = krpc_tests::tuning::krpc_command();
        cmd.args([
            "call",
            "--legacy",
            "--bootstrap",
            &addr,
            "--service",
            &name,
            "add",
            "[40]",
        ])
        .args(["--kwargs", r#"{"b": 2}"#, "--timeout", "60"]);
        if verify {
            cmd.arg("--legacy-verify");
        }
        if let Some(p) = password {
            cmd.env("KRPC_LEGACY_PASSWORD", p);
        }
        let out = cmd.output().expect("krpc call");
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42", "{label}");
        // SIGINT: the KRPCServer closes its consumer (leaving the group) and exits.
        stop(server, libc::SIGINT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_server_shares_a_service_with_a_python_server() {
    let _one_at_a_time = SERIAL.lock().await;
    let addr = Broker::shared().addr().to_string();
    let name = name("mixed");
    let python = python_server(&addr, &name, "python-mixed", false, None).await;
    let rust = rust_server(&addr, &name, "rust-mixed", false, None);
    // The group `krpc` splits the 64 request partitions between the two servers.
    holding(&rust, 32).await;
    let kafka = krpc_tests::kafka::client(&addr).await;
    let client = LegacyClient::connect(kafka, krpc_tests::tuning::legacy_client_options(&name))
        .await
        .expect("legacy client");
    let calls = (0..64i64).map(|i| {
        let client = client.clone();
        async move {
            let r = client
                .call::<_, i64>(
                    "add",
                    &(i, 1000),
                    CallOptions::default().with_timeout(Duration::from_secs(60)),
                )
                .await
                .unwrap_or_else(|e| panic!("add({i}, 1000): {e}"));
            assert_eq!(r.value, i + 1000);
            r.meta.server_id
        }
    });
    let servers: BTreeSet<String> = futures::future::join_all(calls).await.into_iter().collect();
    assert_eq!(
        servers,
        BTreeSet::from(["python-mixed".to_string(), "rust-mixed".to_string()]),
        "both servers answered"
    );
    stop(rust, libc::SIGTERM);
    stop(python, libc::SIGINT);
}
