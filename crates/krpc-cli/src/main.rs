//! `krpc`: the command line of kafka-rpc.

mod broker_args;
mod commands;
mod legacy_args;
mod timing_args;

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
    /// Serve a demo service with add(a, b), echo(x) and sleep(ms) until SIGINT/SIGTERM.
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
}

fn main() -> ExitCode {
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
