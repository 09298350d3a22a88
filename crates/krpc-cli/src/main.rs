//! `krpc`: the command line of kafka-rpc.

mod broker_args;
mod commands;
mod legacy_args;
mod output;
mod timing_args;
mod topic_reader;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Remote procedure calls over Apache Kafka.
#[derive(Parser)]
#[command(name = "krpc", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a demo service with add(a, b), echo(x), sleep(ms), fail(message) and
    /// crash(message) (its handler panics) until SIGINT/SIGTERM.
    Serve(commands::serve::Args),
    /// Call a method with JSON arguments; prints the JSON result.
    Call(commands::call::Args),
    /// Benchmark a service served by `krpc serve`: calls/s and latency percentiles.
    Bench(commands::bench::Args),
    /// Produce records and fetch them back: the Kafka layer end to end, with timings.
    WireDemo(commands::wire_demo::Args),
    /// List, create, grow or describe topics.
    #[command(subcommand)]
    Topics(commands::topics::Command),
    /// A service at a glance: its servers, their partitions, the backlog, dead letters.
    Status(commands::status::Args),
    /// List or describe consumer groups (members, partitions, lag).
    #[command(subcommand)]
    Groups(commands::groups::Command),
    /// Read a service's dead letters, and replay chosen ones.
    #[command(subcommand)]
    Dlq(commands::dlq::Command),
}

fn main() -> ExitCode {
    // Output piped into `head` and closed early ends the process quietly, as every Unix
    // filter does, instead of a panic on the failed write (Rust ignores SIGPIPE by default).
    // SAFETY: setting a signal disposition to the default before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KRPC_LOG")
                .unwrap_or_else(|_| "warn,kafka_rpc=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("krpc: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Call(args) => commands::call::run(args).await,
            Command::Bench(args) => commands::bench::run(args).await,
            Command::WireDemo(args) => commands::wire_demo::run(args).await,
            Command::Topics(cmd) => commands::topics::run(cmd).await,
            Command::Status(args) => commands::status::run(args).await,
            Command::Groups(cmd) => commands::groups::run(cmd).await,
            Command::Dlq(cmd) => commands::dlq::run(cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("krpc: error: {e}");
            ExitCode::FAILURE
        }
    }
}
