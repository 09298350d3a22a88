//! `krpc call`: calls a method with JSON arguments and prints the JSON result.

use std::time::Duration;

use kafka_rpc::{CallOptions, Client, ClientOptions, NotifyOptions};
use serde_json::Value;

use super::CmdResult;
use crate::broker_args::BrokerArgs;
use crate::legacy_args::LegacyArgs;
use crate::timing_args::FetchArgs;

/// Options of `krpc call`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    broker: BrokerArgs,
    /// The service to call.
    #[arg(long)]
    service: String,
    /// The method to call.
    method: String,
    /// The arguments, as a JSON array: '[1, 2]'.
    #[arg(default_value = "[]")]
    args: String,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
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
pub async fn run(args: Args) -> CmdResult {
    let call_args: Value =
        serde_json::from_str(&args.args).map_err(|e| format!("the arguments are not JSON: {e}"))?;
    let Value::Array(positional) = call_args else {
        return Err("the arguments must be a JSON array, e.g. '[1, 2]'".into());
    };
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        return Err(format!(
            "--timeout must be a positive number of seconds, got {}",
            args.timeout
        )
        .into());
    }
    let kwargs: serde_json::Map<String, Value> = match &args.kwargs {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err("--kwargs must be a JSON object, e.g. '{\"b\": 2}'".into()),
            Err(e) => return Err(format!("--kwargs is not JSON: {e}").into()),
        },
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    let kafka = args.broker.connect().await?;
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
                CallOptions::default().timeout(timeout),
            )
            .await?;
        println!("{}", response.value);
        return Ok(());
    }
    let mut options = ClientOptions {
        create_request_topics: args.create_request_topic,
        ..ClientOptions::default()
    };
    if let Some(wait) = args.fetch.fetch_max_wait {
        options.reply_fetch_max_wait = wait;
    }
    let client = Client::connect(kafka, options).await?;
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
    let options = CallOptions::default().timeout(timeout);
    let response = client
        .call::<_, Value>(&args.service, &args.method, &positional, options)
        .await?;
    println!("{}", response.value);
    Ok(())
}
