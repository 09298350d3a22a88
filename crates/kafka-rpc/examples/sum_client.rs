//! The seed's `Sum.add` demo as a Rust client: calls `Sum.add(1, 2)` and prints the result and
//! where it ran. Start `sum_server` first: a call to a service whose request topic does not
//! exist yet is refused (`RpcError::UnknownService`); once a server has run, calls wait in
//! Kafka for one within their timeout.

use std::time::Duration;

use kafka_rpc::krpc_kafka::{ClientConfig, KafkaClient};
use kafka_rpc::{CallOptions, ClientOptions, RpcClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let kafka = KafkaClient::connect(ClientConfig::new(&bootstrap)).await?;
    let client = RpcClient::connect(kafka, ClientOptions::default()).await?;
    let options = CallOptions::default().with_timeout(Duration::from_secs(30));
    let result = client
        .call::<_, i64>("Sum", "add", &(1, 2), options)
        .await?;
    println!(
        "Sum.add(1, 2) = {} (server {}, {:.1} ms end to end, handler {} µs)",
        result.value,
        result.meta.server_id,
        result.meta.elapsed.as_secs_f64() * 1e3,
        result.meta.server_time.as_micros()
    );
    Ok(())
}
