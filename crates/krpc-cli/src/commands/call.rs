//! `krpc call`: calls a method with JSON arguments and prints the JSON result.

use std::time::Duration;

use kafka_rpc::{CallMeta, CallOptions, ClientOptions, NotifyOptions, RpcClient};
use serde_json::{json, Value};

use super::CmdResult;
use crate::broker_args::BrokerArgs;
use crate::exit::UsageError;
use crate::legacy_args::LegacyArgs;
use crate::output::{print_json, table, OutputFormat};
use crate::timing_args::{positive_duration, FetchArgs};

/// Options of `krpc call`.
#[derive(clap::Args)]
pub struct Args {
    /// The service to call.
    #[arg(short = 's', long, env = "KRPC_SERVICE")]
    service: String,
    /// The method to call (`krpc serve`'s demo service has add, echo, sleep, fail and crash).
    method: String,
    /// The arguments, as a JSON array: '[1, 2]'.
    #[arg(default_value = "[]")]
    args: String,
    /// How long to wait for the reply, e.g. 500ms, 30s (a plain number is seconds). No reply
    /// in time: exit code 4. [default: 30s, or `default_timeout` in the config file's
    /// `[client]`]
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    timeout: Option<Duration>,
    /// Output: without -o, the result's JSON alone; `-o json`: one document with the value and
    /// the call's metadata (request id, server id, elapsed, handler time, queue wait, in
    /// milliseconds); `-o table`: the same as two columns.
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    output: Option<OutputFormat>,
    /// Send a one-way job (no reply; it runs whenever a server is up).
    #[arg(long, conflicts_with = "legacy")]
    oneway: bool,
    /// Create the service's request topic if it does not exist. Without it, calling a service
    /// that has no request topic (no server of it ever ran, or a misspelt name) fails at once.
    #[arg(long, env = "KRPC_CREATE_REQUEST_TOPICS")]
    create_request_topic: bool,
    #[command(flatten)]
    fetch: FetchArgs,
    #[command(flatten)]
    legacy: LegacyArgs,
    /// Legacy format: keyword arguments, as a JSON object: '{"b": 2}'.
    #[arg(long, requires = "legacy", value_name = "JSON_OBJECT")]
    kwargs: Option<String>,
}

/// Makes the call and prints the result.
pub async fn run(broker: &BrokerArgs, args: Args) -> CmdResult {
    let usage = |text: String| UsageError(text);
    let call_args: Value = serde_json::from_str(&args.args)
        .map_err(|e| usage(format!("the arguments are not JSON: {e}")))?;
    let Value::Array(positional) = call_args else {
        return Err(usage("the arguments must be a JSON array, e.g. '[1, 2]'".into()).into());
    };
    let kwargs: serde_json::Map<String, Value> = match &args.kwargs {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(
                    usage("--kwargs must be a JSON object, e.g. '{\"b\": 2}'".into()).into(),
                )
            }
            Err(e) => return Err(usage(format!("--kwargs is not JSON: {e}")).into()),
        },
    };
    // Without --timeout, the client's default (`default_timeout`, from the config file).
    let call_options = || match args.timeout {
        Some(t) => CallOptions::default().with_timeout(t),
        None => CallOptions::default(),
    };
    let kafka = broker.connect().await?;
    if args.legacy.legacy {
        let mut options = kafka_rpc::LegacyClientOptions::new(&args.service);
        options.format = args.legacy.format();
        if let Some(wait) = args.fetch.fetch_max_wait {
            options.reply_fetch_max_wait = wait;
        }
        let client = kafka_rpc::LegacyClient::connect(kafka, options).await?;
        let response = client
            .call_kw::<_, _, Value>(
                &args.method,
                &positional,
                &kwargs,
                // The Python format's client has the package's own default; 30s here as before.
                CallOptions::default()
                    .with_timeout(args.timeout.unwrap_or(Duration::from_secs(30))),
            )
            .await?;
        print_response(args.output, &response.value, &response.meta);
        return Ok(());
    }
    // The config file's [client] section, under the flags.
    let mut options: ClientOptions = broker.file.client();
    options.create_request_topics |= args.create_request_topic;
    if let Some(wait) = args.fetch.fetch_max_wait {
        options.reply_fetch_max_wait = wait;
    }
    let client = RpcClient::connect(kafka, options).await?;
    if args.oneway {
        let id = client
            .notify(
                &args.service,
                &args.method,
                &positional,
                NotifyOptions::default(),
            )
            .await?;
        println!("{}", serde_json::json!({ "sent": id.to_string() }));
        return Ok(());
    }
    let options = call_options();
    let response = client
        .call::<_, Value>(&args.service, &args.method, &positional, options)
        .await?;
    print_response(args.output, &response.value, &response.meta);
    Ok(())
}

/// Prints a call's result as `-o` says.
fn print_response(format: Option<OutputFormat>, value: &Value, meta: &CallMeta) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    match format {
        None => println!("{value}"),
        Some(OutputFormat::Json) => print_json(&json!({
            "value": value,
            "request_id": meta.request_id.to_string(),
            "server_id": meta.server_id,
            "elapsed_ms": ms(meta.elapsed),
            "handler_ms": ms(meta.server_time),
            "queue_wait_ms": ms(meta.queue_wait),
        })),
        Some(OutputFormat::Table) => println!(
            "{}",
            table(
                &["field", "value"],
                &[
                    vec!["value".into(), value.to_string()],
                    vec!["request id".into(), meta.request_id.to_string()],
                    vec!["server id".into(), meta.server_id.clone()],
                    vec!["elapsed".into(), format!("{:.3} ms", ms(meta.elapsed))],
                    vec![
                        "handler time".into(),
                        format!("{:.3} ms", ms(meta.server_time))
                    ],
                    vec![
                        "queue wait".into(),
                        format!("{:.3} ms", ms(meta.queue_wait))
                    ],
                ],
            )
        ),
    }
}
