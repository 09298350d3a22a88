//! `krpc bench`: calls a service's `echo` as fast as it answers (closed loop), or at a fixed
//! rate (`--rate`, open loop), and reports throughput and latency percentiles (hdrhistogram).
//!
//! The open loop follows wrk2: call `i` is scheduled at `start + i / rate` whether or not
//! earlier calls have answered, and its latency runs from that scheduled start, so a stall
//! counts against every call it delays (no coordinated omission).

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
    /// Open loop: start this many calls per second on a fixed schedule, whatever the answers
    /// (`--mode` is then ignored, and `--concurrency` only raises the client's in-flight
    /// bound); each call's latency runs from its scheduled start (wrk2's correction for
    /// coordinated omission). The report adds the achieved rate.
    #[arg(long, value_name = "CALLS_PER_S", value_parser = positive_rate)]
    rate: Option<f64>,
    /// Call `sleep(MS)` instead of `echo` (a slow handler, so calls pile up in the server:
    /// for measuring memory with many calls in flight).
    #[arg(long, value_name = "MS")]
    sleep_ms: Option<u64>,
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

/// CPU seconds (user + system) used so far by every thread of this process (NaN if
/// getrusage fails).
fn process_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is zeroed and ours.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Parses `--rate`: a positive, finite number of calls per second.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{text:?} is not a positive number of calls per second"
        )),
    }
}

/// The open loop's schedule: call `i` is due at `start + i / rate`.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    start: Instant,
    rate: f64,
}

impl Schedule {
    /// When call `i` (from 0) is due.
    fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos((i as f64 * 1e9 / self.rate).round() as u64)
    }

    /// The latency of a call due at `due` that answered at `done`: from its scheduled start,
    /// not from when it was actually issued, so time spent waiting to be issued (behind a
    /// stalled caller or a full in-flight bound) is counted.
    fn latency(due: Instant, done: Instant) -> Duration {
        done.saturating_duration_since(due)
    }
}

struct Tally {
    latency_us: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    /// When the first and the last successful call answered (the open loop's achieved rate).
    first_done: Option<Instant>,
    last_done: Option<Instant>,
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
    let (method, payload) = match args.sleep_ms {
        Some(ms) => ("sleep", Value::from(ms)),
        None => ("echo", Value::String("x".repeat(args.payload))),
    };
    let options = match args.timeout {
        Some(t) => CallOptions::default().with_timeout(t),
        None => CallOptions::default(), // the client's default_timeout
    };
    // One call first: it waits for a server, and its latency is not part of the measure.
    client
        .call::<_, Value>(&args.service, method, &(&payload,), options.clone())
        .await?;

    let bar = progress_bar(args.calls, duration, json_out);
    let tally = Arc::new(Mutex::new(Tally {
        latency_us: Histogram::new(3)?,
        errors: 0,
        first_error: None,
        first_done: None,
        last_done: None,
    }));
    let issued = Arc::new(AtomicU64::new(0));
    let cpu_before = process_cpu();
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
        move |from: Option<Instant>| {
            let (client, service, payload, options, tally, bar) = (
                client.clone(),
                service.clone(),
                payload.clone(),
                options.clone(),
                tally.clone(),
                bar.clone(),
            );
            async move {
                let t = from.unwrap_or_else(Instant::now);
                let result = client
                    .call::<_, Value>(&service, method, &(&payload,), options)
                    .await;
                let done = Instant::now();
                let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(r) if r.value == payload => {
                        let latency = Schedule::latency(t, done);
                        let _ = tally.latency_us.record((latency.as_micros() as u64).max(1));
                        tally.first_done.get_or_insert(done);
                        tally.last_done = Some(done);
                    }
                    Ok(_) => {
                        tally.errors += 1;
                        tally
                            .first_error
                            .get_or_insert_with(|| format!("{method} returned something else"));
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
    match (args.rate, args.mode) {
        (Some(rate), _) => {
            let schedule = Schedule {
                start: started,
                rate,
            };
            let mut in_flight = FuturesUnordered::new();
            let mut next = 0u64;
            let mut scheduling = true;
            loop {
                if scheduling {
                    let due = schedule.due(next);
                    let stop = match (args.calls, duration) {
                        (Some(n), _) => next >= n,
                        (None, Some(d)) => due >= started + d,
                        (None, None) => true,
                    };
                    if stop {
                        scheduling = false;
                        continue;
                    }
                    tokio::select! {
                        // Every call whose time has come is started, late ones at once.
                        _ = tokio::time::sleep_until(due.into()) => {
                            in_flight.push(one_call(Some(due)));
                            next += 1;
                        }
                        Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                    }
                } else if in_flight.next().await.is_none() {
                    break;
                }
            }
        }
        (None, Mode::Sync) => {
            let callers: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (may_start, one_call) = (may_start.clone(), one_call.clone());
                    tokio::spawn(async move {
                        while may_start() {
                            one_call(None).await;
                        }
                    })
                })
                .collect();
            for c in callers {
                c.await?;
            }
        }
        (None, Mode::Async) => {
            let mut in_flight = FuturesUnordered::new();
            loop {
                while in_flight.len() < concurrency && may_start() {
                    in_flight.push(one_call(None));
                }
                if in_flight.next().await.is_none() {
                    break;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu() - cpu_before;
    bar.finish_and_clear();
    let tally = tally.lock().unwrap_or_else(|p| p.into_inner());
    let ok = tally.latency_us.len();
    let ms = |q: f64| tally.latency_us.value_at_quantile(q) as f64 / 1e3;
    let mode = match args.rate {
        Some(_) => "open-loop".to_string(),
        None => format!("{:?}", args.mode).to_lowercase(),
    };
    // The open loop's achieved rate: answers per second between the first and the last
    // answer. A system that keeps up answers at the target rate over the window; one that
    // does not drains a growing backlog after it, which stretches the span.
    let achieved = match (tally.first_done, tally.last_done) {
        (Some(a), Some(b)) if ok > 1 && b > a => (ok - 1) as f64 / (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let report = json!({
        "system": "kafka-rpc (Rust)",
        "mode": mode,
        "method": method,
        "concurrency": concurrency,
        "payload_bytes": args.payload,
        "calls": ok,
        "errors": tally.errors,
        "seconds": elapsed.as_secs_f64(),
        "calls_per_s": ok as f64 / elapsed.as_secs_f64().max(1e-9),
        "target_rate": args.rate,
        "achieved_rate": args.rate.map(|_| achieved),
        "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
        "max_ms": tally.latency_us.max() as f64 / 1e3,
        "cpu_s": cpu,
        "cpu_us_per_call": cpu * 1e6 / (ok.max(1) as f64),
        "first_error": tally.first_error,
    });
    if json_out {
        println!("{report}");
    } else {
        let label = match args.rate {
            Some(rate) => format!("{rate} calls/s (achieved {achieved:.0})"),
            None => format!("{mode} x{concurrency}"),
        };
        let row = vec![
            label,
            ok.to_string(),
            tally.errors.to_string(),
            format!("{:.0}", report["calls_per_s"].as_f64().unwrap_or(0.0)),
            format!("{:.2}", ms(0.5)),
            format!("{:.2}", ms(0.9)),
            format!("{:.2}", ms(0.99)),
            format!("{:.2}", ms(0.999)),
            format!("{:.2}", tally.latency_us.max() as f64 / 1e3),
        ];
        let header = [
            "mode", "calls", "errors", "calls/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
            "max ms",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_latency_runs_from_the_scheduled_start() {
        let start = Instant::now();
        let schedule = Schedule { start, rate: 100.0 };
        // At 100 calls/s call 5 is due 50 ms after the start, whenever it is issued.
        assert_eq!(schedule.due(0), start);
        assert_eq!(schedule.due(5), start + Duration::from_millis(50));
        // Issued late (at 80 ms, behind a stall) and answered at 90 ms: its latency is 40 ms,
        // not the 10 ms a closed loop would record from the moment it was issued.
        let done = start + Duration::from_millis(90);
        assert_eq!(
            Schedule::latency(schedule.due(5), done),
            Duration::from_millis(40)
        );
        // An answer can never precede its schedule; if clocks say so, it is zero, not a panic.
        assert_eq!(Schedule::latency(schedule.due(5), start), Duration::ZERO);
        // A fractional rate spaces calls evenly: 2.5 calls/s, call 3 at 1.2 s.
        let slow = Schedule { start, rate: 2.5 };
        assert_eq!(slow.due(3), start + Duration::from_millis(1200));
    }

    #[test]
    fn rate_must_be_positive() {
        assert_eq!(positive_rate("2000"), Ok(2000.0));
        assert_eq!(positive_rate("0.5"), Ok(0.5));
        for bad in ["0", "-3", "nan", "inf", "fast"] {
            assert!(positive_rate(bad).is_err(), "{bad}");
        }
    }
}
