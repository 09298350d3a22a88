//! The `krpc serve` / `krpc call` contract, run as real processes against the real broker.

use std::process::Output;
use std::time::Duration;

use krpc_tests::{rpc, wait, Broker};

fn call(addr: &str, args: &[&str]) -> Output {
    krpc_tests::tuning::krpc_command()
        .args(["call", "--bootstrap", addr])
        .args(args)
        .output()
        .expect("run krpc call")
}

fn stderr_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got: {text:?}");
    lines[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_call_keep_their_contract() {
    let addr = Broker::shared().addr().to_string();
    let svc = krpc_tests::unique_topic("cli").replace('.', "-");
    let mut server = rpc::serve_process(&addr, &svc, "cli-server", 8);
    rpc::wait_for_servers(&[&server], 16, Duration::from_secs(60)).await;

    let ok = call(&addr, &["--service", &svc, "add", "[1, 2]"]);
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "3");
    let echo = call(
        &addr,
        &["--service", &svc, "echo", r#"[{"k": [1, "x", null, 2.5]}]"#],
    );
    assert_eq!(
        String::from_utf8_lossy(&echo.stdout).trim(),
        r#"{"k":[1,"x",null,2.5]}"#
    );

    let unknown = call(&addr, &["--service", &svc, "nope", "[]"]);
    assert!(!unknown.status.success());
    assert!(
        stderr_line(&unknown).contains("UNIMPLEMENTED"),
        "{unknown:?}"
    );
    let mistyped = call(&addr, &["--service", &svc, "add", r#"["a", 2]"#]);
    assert!(!mistyped.status.success());
    assert!(stderr_line(&mistyped).contains("INVALID_ARGUMENT"));
    let slow = call(
        &addr,
        &["--service", &svc, "sleep", "[5000]", "--timeout", "0.5"],
    );
    assert!(!slow.status.success());
    assert!(stderr_line(&slow).contains("no reply within"), "{slow:?}");
    let not_json = call(&addr, &["--service", &svc, "add", "1, 2"]);
    assert!(!not_json.status.success());
    assert!(stderr_line(&not_json).contains("JSON"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("127.0.0.1:{port}");
    let unreachable = krpc_tests::tuning::krpc_command()
        .args([
            "call",
            "--bootstrap",
            &dead,
            "--connect-timeout",
            "1",
            "--service",
            &svc,
            "add",
            "[1, 2]",
        ])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(
        stderr_line(&unreachable).contains(&dead),
        "names the address: {unreachable:?}"
    );

    let from_env = krpc_tests::tuning::krpc_command()
        .args(["call", "--service", &svc, "add", "[2, 2]"])
        .env("KAFKA_BOOTSTRAP", &addr)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&from_env.stdout).trim(),
        "4",
        "KAFKA_BOOTSTRAP is the default: {from_env:?}"
    );

    let job = call(&addr, &["--service", &svc, "sleep", "[1]", "--oneway"]);
    assert!(job.status.success());
    assert!(String::from_utf8_lossy(&job.stdout).contains("\"sent\""));

    server.signal(libc::SIGTERM);
    let status = server.close_and_wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "krpc serve exits 0 on SIGTERM: {status:?}"
    );
    let lines = server.lines();
    assert!(lines.iter().any(|l| l.contains("SIGTERM")), "{lines:?}");
    wait::until(
        "the final counters line",
        Duration::from_secs(5),
        || async {
            server
                .lines()
                .iter()
                .find(|l| l.contains("stopped;") && l.contains("unknown_method=1"))
                .cloned()
        },
    )
    .await;
}
