//! `krpc`: the command line of kafka-rpc.

mod broker_args;
mod commands;
mod config_file;
mod exit;
mod legacy_args;
#[cfg(feature = "prometheus")]
mod metrics;
mod output;
mod timing_args;
mod topic_reader;

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Parser, Subcommand};

/// Remote procedure calls over Apache Kafka.
///
/// Broker options are global: give them before or after the subcommand
/// (`krpc -b localhost:9092 topics list`), or through their environment variables.
/// Durations are written as 500ms, 10s, 1m (a plain number is seconds). Commands that print
/// data take `-o table|json`. Settings come from, first to last: command-line flags,
/// environment variables, the TOML file of --config (--config-file, KRPC_CONFIG; its sections:
/// broker, producer, fetch, client, server, topics), the defaults. Logs go to stderr (filter:
/// KRPC_LOG, e.g. KRPC_LOG=debug; colour off when NO_COLOR is set or stderr is not a terminal).
#[derive(Parser)]
#[command(
    name = "krpc",
    version,
    about,
    long_about,
    propagate_version = true,
    after_help = exit::HELP
)]
struct Cli {
    /// Settings from a TOML file (before the command; `--config-file FILE` or KRPC_CONFIG work
    /// anywhere; giving both --config and --config-file is refused; --config overrides
    /// KRPC_CONFIG). Not global, because `topics create --config k=v` is a topic config.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    broker: broker_args::BrokerArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a demo service until SIGINT/SIGTERM: add(a, b), echo(x), sleep(ms),
    /// fail(message) (answers an error status) and crash(message) (its handler panics).
    Serve(commands::serve::Args),
    /// Call a method with JSON arguments; prints the JSON result (`-o json`: with the call's
    /// metadata).
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
    /// Print the records of any topic (key, headers, value, offsets), as kcat -C does.
    Consume(commands::consume::Args),
    /// Write records to any topic: one per stdin line or the VALUE given, as kcat -P does.
    Produce(commands::produce::Args),
    /// Print a shell completion script: `krpc completions bash > /etc/bash_completion.d/krpc`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Whether log lines may be coloured: not when NO_COLOR is set to anything non-empty
/// (<https://no-color.org>), nor when stderr is not a terminal.
fn log_colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Parses the command line: the options, and whether `--config-file` was given on it (not
/// through KRPC_CONFIG, which a flag overrides as every environment variable is).
fn parse(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> Result<(Cli, bool), clap::Error> {
    let matches = <Cli as clap::CommandFactory>::command().try_get_matches_from(args)?;
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)?;
    let config_file_flag = matches.value_source("config_file") == Some(ValueSource::CommandLine);
    Ok((cli, config_file_flag))
}

/// Unsets every environment variable of `command`'s options (and its subcommands') that is set
/// to the empty string: `KAFKA_BOOTSTRAP=` (as docker-compose files and scripts write) means
/// "not set", as for most Unix tools, where clap would take "" as the value and refuse it.
fn unset_empty_env(command: &clap::Command) {
    for arg in command.get_arguments() {
        if let Some(name) = arg.get_env() {
            if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
                // Before any thread starts: nothing else reads the environment yet.
                std::env::remove_var(name);
            }
        }
    }
    for sub in command.get_subcommands() {
        unset_empty_env(sub);
    }
}

fn main() -> ExitCode {
    // Output piped into `head` and closed early ends the process quietly, as every Unix
    // filter does, instead of a panic on the failed write (Rust ignores SIGPIPE by default).
    // SAFETY: setting a signal disposition to the default before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    unset_empty_env(&<Cli as clap::CommandFactory>::command());
    let (mut cli, config_file_flag) = parse(std::env::args_os()).unwrap_or_else(|e| e.exit());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KRPC_LOG")
                .unwrap_or_else(|_| "warn,kafka_rpc=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_colour())
        .init();
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "krpc", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("krpc: error: cannot start the async runtime: {e}");
            return exit::Exit::Other.into();
        }
    };
    if let Err(e) = cli
        .broker
        .load_config_file(cli.config.as_deref(), config_file_flag)
    {
        eprintln!("krpc: error: {e}");
        return exit::Exit::Usage.into();
    }
    let broker = &cli.broker;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => commands::serve::run(broker, args).await,
            Command::Call(args) => commands::call::run(broker, args).await,
            Command::Bench(args) => commands::bench::run(broker, args).await,
            Command::WireDemo(args) => commands::wire_demo::run(broker, args).await,
            Command::Topics(cmd) => commands::topics::run(broker, cmd).await,
            Command::Status(args) => commands::status::run(broker, args).await,
            Command::Groups(cmd) => commands::groups::run(broker, cmd).await,
            Command::Dlq(cmd) => commands::dlq::run(broker, cmd).await,
            Command::Consume(args) => commands::consume::run(broker, args).await,
            Command::Produce(args) => commands::produce::run(broker, args).await,
            Command::Completions { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("krpc: error: {e}");
            exit::classify(e.as_ref()).into()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Review S18: `--config` and `--config-file` together were read silently (`--config`
    /// won); now a usage error naming both, wherever `--config-file` stands. `--config` over
    /// KRPC_CONFIG alone is the usual flag-over-environment order.
    #[test]
    fn both_config_flags_are_refused_naming_both() {
        for argv in [
            &[
                "krpc",
                "--config",
                "a.toml",
                "--config-file",
                "b.toml",
                "topics",
                "list",
            ][..],
            &[
                "krpc",
                "--config",
                "a.toml",
                "topics",
                "list",
                "--config-file",
                "b.toml",
            ][..],
        ] {
            let (mut cli, flag) = parse(argv).expect("parses");
            assert!(flag, "{argv:?}");
            let err = cli
                .broker
                .load_config_file(cli.config.as_deref(), flag)
                .expect_err("both given")
                .to_string();
            assert!(err.contains("--config a.toml"), "{err}");
            assert!(err.contains("--config-file b.toml"), "{err}");
        }
        let (_, flag) = parse(["krpc", "topics", "list"]).expect("parses");
        assert!(!flag);
    }

    #[test]
    fn broker_flags_parse_before_and_after_the_subcommand() {
        for argv in [
            &[
                "krpc",
                "-b",
                "h:1",
                "--connect-timeout",
                "2s",
                "topics",
                "list",
            ][..],
            &[
                "krpc",
                "topics",
                "list",
                "-b",
                "h:1",
                "--connect-timeout",
                "2",
            ][..],
        ] {
            let cli = Cli::try_parse_from(argv).expect("parses");
            assert_eq!(cli.broker.bootstrap.as_deref(), Some("h:1"), "{argv:?}");
            assert_eq!(
                cli.broker.connect_timeout,
                Some(std::time::Duration::from_secs(2))
            );
        }
    }
}
