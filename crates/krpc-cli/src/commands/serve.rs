//! `krpc serve`: serves a demo service with `add(a, b)`, `echo(x)`, `sleep(ms)`,
//! `fail(message)` and `crash(message)` (panics), natively or in the Python kafka-rpc 1.0.8 format (`--legacy`).

use std::time::Duration;

use kafka_rpc::{HandlerError, Server, ServerOptions, StatusCode};
use serde_json::{Number, Value};

use super::CmdResult;
use crate::broker_args::BrokerArgs;
use crate::legacy_args::LegacyArgs;
use crate::timing_args::{FetchArgs, GroupArgs};

/// Options of `krpc serve`.
#[derive(clap::Args)]
pub struct Args {
    /// The service to serve.
    #[arg(short = 's', long, env = "KRPC_SERVICE")]
    service: String,
    /// Requests handled at once [default: 64, or `concurrency` in the config file's `[server]`].
    #[arg(long)]
    concurrency: Option<usize>,
    /// This server's id (random if not given).
    #[arg(long)]
    server_id: Option<String>,
    #[command(flatten)]
    fetch: FetchArgs,
    #[command(flatten)]
    group: GroupArgs,
    #[command(flatten)]
    legacy: LegacyArgs,
    /// Legacy format: the consumer group (the Python package's `krpc`, so Python and Rust
    /// servers of one service share its requests).
    #[arg(long, requires = "legacy", default_value = kafka_rpc::legacy::PYTHON_GROUP)]
    legacy_group: String,
    /// Serve the server's metrics for Prometheus at http://HOST:PORT/metrics (counters,
    /// handler time and queue wait histograms, requests in flight, consumer lag: README
    /// "Metrics"). Not served unless given.
    #[cfg(feature = "prometheus")]
    #[arg(long, env = "KRPC_METRICS_ADDR", value_name = "HOST:PORT", value_parser = crate::metrics::listen_addr)]
    metrics_addr: Option<std::net::SocketAddr>,
}

/// `add(a, b)`: integer sum when both are integers, else a float sum.
fn add((a, b): (Number, Number)) -> Result<Value, HandlerError> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        let sum = x
            .checked_add(y)
            .ok_or_else(|| HandlerError::new(StatusCode::InvalidArgument, "the sum overflows"))?;
        return Ok(Value::from(sum));
    }
    let (x, y) = (
        a.as_f64().unwrap_or(f64::NAN),
        b.as_f64().unwrap_or(f64::NAN),
    );
    Ok(Value::from(x + y))
}

/// Runs the demo server until SIGINT or SIGTERM.
pub async fn run(broker: &BrokerArgs, args: Args) -> CmdResult {
    // Before the server starts: it binds its metrics to the recorder installed then.
    #[cfg(feature = "prometheus")]
    if let Some(addr) = args.metrics_addr {
        crate::metrics::serve(addr)?;
        eprintln!("krpc serve: metrics at http://{addr}/metrics");
    }
    let kafka = broker.connect().await?;
    // The config file's [server] and [topics] sections, under the flags.
    let mut options: ServerOptions = broker.file.server(&args.service);
    if let Some(concurrency) = args.concurrency {
        options.concurrency = concurrency;
    }
    if let Some(wait) = args.fetch.fetch_max_wait {
        options.fetch_max_wait = wait;
    }
    args.group.apply(&mut options)?;
    if let Some(id) = args.server_id {
        options.server_id = id;
    }
    if args.legacy.legacy {
        options.legacy = Some(
            kafka_rpc::LegacyOptions::default()
                .with_format(args.legacy.format())
                .with_group(args.legacy_group.clone()),
        );
    }
    let (server_id, concurrency) = (options.server_id.clone(), options.concurrency);
    let server = Server::new(kafka, options)?
        .method("add", |args: (Number, Number)| async move { add(args) })
        .method(
            "echo",
            |(x,): (Value,)| async move { Ok::<_, HandlerError>(x) },
        )
        .method("sleep", |(ms,): (u64,)| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, HandlerError>(ms)
        })
        .method("fail", |(message,): (String,)| async move {
            Err::<(), _>(HandlerError::new(StatusCode::Unknown, message))
        })
        .method("crash", |(message,): (String,)| async move {
            // A handler that panics: the server answers INTERNAL and dead-letters the request.
            panic!("crash({message})");
            #[allow(unreachable_code)]
            Ok::<(), HandlerError>(())
        })
        .parameters("add", &["a", "b"])
        .parameters("echo", &["x"])
        .parameters("sleep", &["ms"])
        .parameters("fail", &["message"])
        .parameters("crash", &["message"]);
    eprintln!(
        "krpc serve: serving {}{} as {server_id} (concurrency {})",
        args.service,
        if args.legacy.legacy {
            " (Python kafka-rpc 1.0.8 format)"
        } else {
            ""
        },
        concurrency
    );
    let stats = server.run(shutdown_signal()).await?;
    eprintln!("krpc serve: stopped; {stats}");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => eprintln!("krpc serve: SIGINT, shutting down"),
        _ = term.recv() => eprintln!("krpc serve: SIGTERM, shutting down"),
    }
}
