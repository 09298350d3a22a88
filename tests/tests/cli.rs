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

/// A port nothing listens on (bound, then released).
fn dead_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Issue 14's CLI conventions against a running `krpc serve`: broker flags before and after
/// the subcommand, short forms and environment variables, `-o json`, and the exit codes of a
/// timeout (4), a remote error status (5) and other failures (1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_flags_are_global_output_is_json_and_exit_codes_say_what_failed() {
    let addr = Broker::shared().addr().to_string();
    let svc = krpc_tests::unique_topic("conventions").replace('.', "-");
    let mut server = rpc::serve_process(&addr, &svc, "conventions-server", 8);
    rpc::wait_for_servers(&[&server], 16, Duration::from_secs(60)).await;
    let krpc = krpc_tests::tuning::krpc_command;

    // Global broker flags with their short form, before and after the subcommand; -o json.
    let request_topic = kafka_rpc::naming::request_topic(&svc);
    for argv in [
        &["-b", &addr, "topics", "list", "-o", "json"][..],
        &["topics", "list", "-o", "json", "-b", &addr][..],
    ] {
        let topics = stdout_json(
            &krpc()
                .env_remove("KAFKA_BOOTSTRAP")
                .args(argv)
                .output()
                .unwrap(),
        );
        let listed = topics
            .as_array()
            .expect("a JSON array")
            .iter()
            .find(|t| t["topic"] == request_topic.as_str())
            .unwrap_or_else(|| panic!("{request_topic} listed by {argv:?}: {topics:#}"));
        assert_eq!(listed["partitions"], 16, "{listed}");
    }
    let table = krpc()
        .args(["topics", "list", "-b", &addr])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("TOPIC"), "a table with a header: {table}");
    assert!(table.contains(&request_topic), "{table}");
    let described = stdout_json(
        &krpc()
            .args([
                "-b",
                &addr,
                "topics",
                "describe",
                &request_topic,
                "-o",
                "json",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(described["partitions"].as_array().map(Vec::len), Some(16));

    // -s and -b on call, and the service and broker from the environment.
    let short = krpc()
        .args(["call", "-b", &addr, "-s", &svc, "add", "[20, 22]"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&short.stdout).trim(),
        "42",
        "{short:?}"
    );
    let from_env = krpc()
        .args(["call", "add", "[2, 3]"])
        .env("KAFKA_BOOTSTRAP", &addr)
        .env("KRPC_SERVICE", &svc)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&from_env.stdout).trim(),
        "5",
        "{from_env:?}"
    );

    // call -o json: the value and the call's metadata.
    let doc = stdout_json(
        &krpc()
            .args([
                "-b", &addr, "call", "-s", &svc, "-o", "json", "add", "[1, 2]",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(doc["value"], 3, "{doc:#}");
    assert_eq!(doc["server_id"], "conventions-server", "{doc:#}");
    assert!(
        !doc["request_id"].as_str().unwrap_or("").is_empty(),
        "{doc:#}"
    );
    for field in ["elapsed_ms", "handler_ms", "queue_wait_ms"] {
        assert!(
            doc[field].as_f64().is_some_and(|ms| ms >= 0.0),
            "{field}: {doc:#}"
        );
    }
    assert!(doc["elapsed_ms"].as_f64() > Some(0.0), "{doc:#}");
    let as_table = krpc()
        .args([
            "-b", &addr, "call", "-s", &svc, "-o", "table", "add", "[1, 2]",
        ])
        .output()
        .unwrap();
    let as_table = String::from_utf8_lossy(&as_table.stdout);
    assert!(
        as_table.contains("conventions-server") && as_table.contains("queue wait"),
        "{as_table}"
    );

    // -o json on bench and wire-demo too.
    let bench = stdout_json(
        &krpc()
            .args([
                "-b", &addr, "bench", "-s", &svc, "--calls", "5", "-o", "json",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(bench["calls"], 5, "{bench:#}");
    let wire = stdout_json(
        &krpc()
            .args([
                "wire-demo",
                "--records",
                "50",
                "--round-trips",
                "2",
                "-o",
                "json",
            ])
            .args(["-b", &addr])
            .output()
            .unwrap(),
    );
    assert_eq!(wire["records"], 50, "{wire:#}");
    assert!(wire["fetch_ms"].as_f64().is_some(), "{wire:#}");

    // Exit codes: timeout (a humantime --timeout), remote status, other.
    let slow = call(
        &addr,
        &["-s", &svc, "sleep", "[5000]", "--timeout", "500ms"],
    );
    assert_eq!(slow.status.code(), Some(4), "no reply in time: {slow:?}");
    assert!(
        stderr_line(&slow).contains("no reply within 500ms"),
        "{slow:?}"
    );
    let failed = call(&addr, &["-s", &svc, "fail", r#"["boom"]"#]);
    assert_eq!(failed.status.code(), Some(5), "an error status: {failed:?}");
    assert!(stderr_line(&failed).contains("boom"), "{failed:?}");
    let unimplemented = call(&addr, &["-s", &svc, "nope"]);
    assert_eq!(unimplemented.status.code(), Some(5), "{unimplemented:?}");
    let nobody = krpc()
        .args([
            "-b",
            &addr,
            "call",
            "-s",
            "nobody-serves-this",
            "add",
            "[1, 2]",
        ])
        .env_remove("KRPC_CREATE_REQUEST_TOPICS")
        .output()
        .unwrap();
    assert_eq!(
        nobody.status.code(),
        Some(1),
        "an unknown service: {nobody:?}"
    );
    assert!(
        stderr_line(&nobody).contains("unknown service"),
        "{nobody:?}"
    );

    server.signal(libc::SIGTERM);
    assert!(server.close_and_wait(Duration::from_secs(30)).success());
}

/// Exit codes of usage errors (2) and an unreachable broker (3), the connect timeout and the
/// SASL settings read from the environment: no broker needed.
#[test]
fn usage_errors_exit_2_and_an_unreachable_broker_exits_3() {
    let krpc = krpc_tests::tuning::krpc_command;
    let unknown_flag = krpc().args(["call", "--no-such-flag"]).output().unwrap();
    assert_eq!(unknown_flag.status.code(), Some(2), "{unknown_flag:?}");
    let bad_duration = krpc()
        .args([
            "-b",
            "127.0.0.1:1",
            "call",
            "-s",
            "S",
            "add",
            "--timeout",
            "soon",
        ])
        .output()
        .unwrap();
    assert_eq!(bad_duration.status.code(), Some(2), "{bad_duration:?}");
    assert!(String::from_utf8_lossy(&bad_duration.stderr).contains("500ms"));
    let not_json = krpc()
        .args(["-b", "127.0.0.1:1", "call", "-s", "S", "add", "1, 2"])
        .output()
        .unwrap();
    assert_eq!(not_json.status.code(), Some(2), "{not_json:?}");
    let no_broker = krpc()
        .args(["topics", "list"])
        .env_remove("KAFKA_BOOTSTRAP")
        .output()
        .unwrap();
    assert_eq!(no_broker.status.code(), Some(2), "{no_broker:?}");
    assert!(
        stderr_line(&no_broker).contains("KAFKA_BOOTSTRAP"),
        "{no_broker:?}"
    );
    // KRPC_SASL_MECHANISM is read: without a user name it is refused as clap's usage error.
    let half_sasl = krpc()
        .args(["-b", "127.0.0.1:1", "topics", "list"])
        .env("KRPC_SASL_MECHANISM", "PLAIN")
        .env_remove("KRPC_SASL_USERNAME")
        .output()
        .unwrap();
    assert_eq!(half_sasl.status.code(), Some(2), "{half_sasl:?}");
    assert!(String::from_utf8_lossy(&half_sasl.stderr).contains("--sasl-username"));

    // The connect timeout from KRPC_CONNECT_TIMEOUT: refused within it, well before the
    // default 10s, with exit code 3 and the address named.
    let dead = dead_address();
    let started = std::time::Instant::now();
    let unreachable = krpc()
        .args(["topics", "list", "--bootstrap", &dead])
        .env("KRPC_CONNECT_TIMEOUT", "300ms")
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3), "{unreachable:?}");
    let line = stderr_line(&unreachable);
    assert!(line.contains(&dead) && line.contains("300ms"), "{line}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // A variable set to the empty string is unset (docker-compose files write
    // `KRPC_SASL_MECHANISM=`); clap used to take "" as the value and refuse it (exit 2).
    let empty = krpc()
        .args(["topics", "list", "--bootstrap", &dead])
        .env("KRPC_CONNECT_TIMEOUT", "300ms")
        .env("KRPC_SASL_MECHANISM", "")
        .env("KRPC_TLS_CA", "")
        .env("KRPC_CONFIG", "")
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(3), "{empty:?}");
}

/// `krpc completions bash` prints a completion script that knows the subcommands; `--help`
/// lists the exit codes.
#[test]
fn completions_and_help_list_the_subcommands_and_exit_codes() {
    let out = krpc_tests::tuning::krpc_command()
        .args(["completions", "bash"])
        .env_remove("KAFKA_BOOTSTRAP")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(script.contains("complete -F"), "a bash completion script");
    for word in [
        "serve",
        "call",
        "topics",
        "status",
        "dlq",
        "--bootstrap",
        "--output",
    ] {
        assert!(script.contains(word), "mentions {word}");
    }
    let help = krpc_tests::tuning::krpc_command()
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for text in [
        "Exit codes:",
        "4  timeout",
        "5  remote status",
        "completions",
    ] {
        assert!(help.contains(text), "--help has {text:?}: {help}");
    }
    let serve_help = krpc_tests::tuning::krpc_command()
        .arg("help")
        .output()
        .unwrap();
    let serve_help = String::from_utf8_lossy(&serve_help.stdout);
    for method in [
        "add(a, b)",
        "echo(x)",
        "sleep(ms)",
        "fail(message)",
        "crash(message)",
    ] {
        assert!(
            serve_help.contains(method),
            "the demo's {method}: {serve_help}"
        );
    }
}

/// Runs `cmd` with its stderr on a pseudo-terminal and returns what it wrote there (the
/// colour of log lines depends on stderr being a terminal).
fn stderr_on_a_terminal(mut cmd: std::process::Command) -> String {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two file descriptors; the null pointers mean default settings.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(slave))
        .spawn()
        .expect("spawn krpc");
    // The command holds the parent's copy of the terminal's slave side: closed, the master
    // reads end (EIO) once the child has exited.
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        // Ends with EIO when the slave side closes; what was read is kept.
        let _ = std::fs::File::from(master).read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "krpc did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().unwrap()
}

/// Log lines on a terminal are coloured, unless NO_COLOR is set (no broker needed: the
/// debug line of connecting is logged before the connection fails).
#[test]
fn no_color_turns_the_colour_of_log_lines_off() {
    let dead = dead_address();
    let run = |no_color: bool| {
        let mut cmd = krpc_tests::tuning::krpc_command();
        cmd.args(["-b", &dead, "--connect-timeout", "200ms", "topics", "list"])
            .env("KRPC_LOG", "debug")
            .env_remove("NO_COLOR");
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        stderr_on_a_terminal(cmd)
    };
    let coloured = run(false);
    assert!(coloured.contains("DEBUG"), "debug log lines: {coloured}");
    assert!(
        coloured.contains("\x1b["),
        "coloured on a terminal: {coloured:?}"
    );
    let plain = run(true);
    assert!(plain.contains("DEBUG"), "debug log lines: {plain}");
    assert!(
        !plain.contains('\x1b'),
        "no colour with NO_COLOR: {plain:?}"
    );
}
