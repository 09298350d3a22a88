//! `krpc bench`: calls a service's `echo` as fast as it answers and reports throughput and
//! latency percentiles (hdrhistogram).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kafka_rpc::{CallOptions, ClientOptions, RpcClient};
use serde_json::{json, Value};

use super::CmdResult;
use crate::broker_args::BrokerArgs;
use crate::output::{table, OutputFormat};
use crate::timing_args::{positive_duration, FetchArgs};

/// How calls are issued.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Each of `--concurrency` callers waits for its reply before the next call.
    Sync,
    /// One caller keeps `--concurrency` calls in flight.
    Async,
}

/// Options of `krpc bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Create the service's request topic if it does not exist (by default a bench of a
    /// service with no request topic fails at once).
    #[arg(long, env = "KRPC_CREATE_REQUEST_TOPICS")]
    create_request_topic: bool,
    #[command(flatten)]
    fetch: FetchArgs,
    /// The service to call (serve it with `krpc serve`).
    #[arg(short = 's', long, env = "KRPC_SERVICE")]
    service: String,
    /// sync: callers that each wait for their reply; async: calls kept in flight by one caller.
    #[arg(long, value_enum, default_value = "sync")]
    mode: Mode,
    /// Callers (sync) or calls in flight (async); default 1 for sync, 128 for async.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Number of calls to make.
    #[arg(long, conflicts_with = "duration")]
    calls: Option<u64>,
    /// How long to run, e.g. 10s, 1m (a plain number is seconds; default 10s when --calls is
    /// not given).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    duration: Option<Duration>,
    /// Bytes of payload sent to `echo` (and echoed back).
    #[arg(long, default_value_t = 16)]
    payload: usize,
    /// Timeout of each call, e.g. 500ms, 30s (a plain number is seconds). [default: 30s, or
    /// `default_timeout` in the config file's `[client]`]
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    timeout: Option<Duration>,
    /// Output format: a table, or one JSON object.
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        value_name = "FORMAT",
        default_value_t = OutputFormat::Table
    )]
    output: OutputFormat,
    /// The same as `-o json` (kept for scripts of earlier versions).
    #[arg(long, hide = true)]
    json: bool,
}

struct Tally {
    latency_us: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs the benchmark.
pub async fn run(broker: &BrokerArgs, args: Args) -> CmdResult {
    let concurrency = args
        .concurrency
        .unwrap_or(if args.mode == Mode::Sync { 1 } else { 128 })
        .max(1);
    let json_out = args.json || args.output == OutputFormat::Json;
    let duration = match (args.calls, args.duration) {
        (Some(_), _) => None,
        (None, Some(d)) => Some(d),
        (None, None) => Some(Duration::from_secs(10)),
    };
    let kafka = broker.connect().await?;
    // The config file's [client] section, under the flags.
    let mut client_options: ClientOptions = broker.file.client();
    client_options.create_request_topics |= args.create_request_topic;
    // The bench's own concurrency is the bound it measures under.
    client_options.max_in_flight = client_options.max_in_flight.max(concurrency);
    if let Some(wait) = args.fetch.fetch_max_wait {
        client_options.reply_fetch_max_wait = wait;
    }
    let client = RpcClient::connect(kafka, client_options).await?;
    let payload = Value::String("x".repeat(args.payload));
    let options = match args.timeout {
        Some(t) => CallOptions::default().with_timeout(t),
        None => CallOptions::default(), // the client's default_timeout
    };
    // One call first: it waits for a server, and its latency is not part of the measure.
    client
        .call::<_, Value>(&args.service, "echo", &(&payload,), options.clone())
        .await?;

    let bar = progress_bar(args.calls, duration, json_out);
    let tally = Arc::new(Mutex::new(Tally {
        latency_us: Histogram::new(3)?,
        errors: 0,
        first_error: None,
    }));
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let may_start = {
        let issued = issued.clone();
        let limit = args.calls;
        move || match (limit, duration) {
            (Some(n), _) => issued.fetch_add(1, Ordering::Relaxed) < n,
            (None, Some(d)) => started.elapsed() < d,
            (None, None) => false,
        }
    };
    let one_call = {
        let (client, service, payload, options, tally, bar) = (
            client.clone(),
            args.service.clone(),
            payload.clone(),
            options.clone(),
            tally.clone(),
            bar.clone(),
        );
        move || {
            let (client, service, payload, options, tally, bar) = (
                client.clone(),
                service.clone(),
                payload.clone(),
                options.clone(),
                tally.clone(),
                bar.clone(),
            );
            async move {
                let t = Instant::now();
                let result = client
                    .call::<_, Value>(&service, "echo", &(&payload,), options)
                    .await;
                let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(r) if r.value == payload => {
                        let _ = tally
                            .latency_us
                            .record(t.elapsed().as_micros().max(1) as u64);
                    }
                    Ok(_) => {
                        tally.errors += 1;
                        tally
                            .first_error
                            .get_or_insert_with(|| "echo returned something else".into());
                    }
                    Err(e) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                bar.inc(1);
            }
        }
    };
    match args.mode {
        Mode::Sync => {
            let callers: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (may_start, one_call) = (may_start.clone(), one_call.clone());
                    tokio::spawn(async move {
                        while may_start() {
                            one_call().await;
                        }
                    })
                })
                .collect();
            for c in callers {
                c.await?;
            }
        }
        Mode::Async => {
            let mut in_flight = FuturesUnordered::new();
            loop {
                while in_flight.len() < concurrency && may_start() {
                    in_flight.push(one_call());
                }
                if in_flight.next().await.is_none() {
                    break;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let tally = tally.lock().unwrap_or_else(|p| p.into_inner());
    let ok = tally.latency_us.len();
    let ms = |q: f64| tally.latency_us.value_at_quantile(q) as f64 / 1e3;
    let report = json!({
        "system": "kafka-rpc (Rust)",
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "concurrency": concurrency,
        "payload_bytes": args.payload,
        "calls": ok,
        "errors": tally.errors,
        "seconds": elapsed.as_secs_f64(),
        "calls_per_s": ok as f64 / elapsed.as_secs_f64().max(1e-9),
        "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99),
        "max_ms": tally.latency_us.max() as f64 / 1e3,
        "first_error": tally.first_error,
    });
    if json_out {
        println!("{report}");
    } else {
        let row = vec![
            format!("{:?} x{concurrency}", args.mode).to_lowercase(),
            ok.to_string(),
            tally.errors.to_string(),
            format!("{:.0}", report["calls_per_s"].as_f64().unwrap_or(0.0)),
            format!("{:.2}", ms(0.5)),
            format!("{:.2}", ms(0.9)),
            format!("{:.2}", ms(0.99)),
            format!("{:.2}", tally.latency_us.max() as f64 / 1e3),
        ];
        let header = [
            "mode", "calls", "errors", "calls/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
        ];
        println!("{}", table(&header, &[row]));
        if let Some(e) = &tally.first_error {
            eprintln!("krpc bench: first error: {e}");
        }
    }
    if ok == 0 {
        return Err(format!("no call succeeded ({} errors)", tally.errors).into());
    }
    Ok(())
}

fn progress_bar(calls: Option<u64>, duration: Option<Duration>, quiet: bool) -> ProgressBar {
    let visible = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = match calls {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if !visible {
        bar.set_draw_target(ProgressDrawTarget::hidden());
        return bar;
    }
    let template = match (calls, duration) {
        (Some(_), _) => "{bar:40} {pos}/{len} calls, {per_sec}, eta {eta}",
        _ => "{spinner} {pos} calls, {per_sec}, {elapsed} elapsed",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
