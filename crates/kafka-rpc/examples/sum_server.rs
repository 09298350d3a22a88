//! The seed's `Sum.add` demo as a Rust server.
//!
//! Run: `cargo run -p kafka-rpc --example sum_server -- 127.0.0.1:9092` (Ctrl-C to stop), then
//! `cargo run -p kafka-rpc --example sum_client -- 127.0.0.1:9092`.

use kafka_rpc::krpc_kafka::{ClientConfig, KafkaClient};
use kafka_rpc::{HandlerError, Server, ServerOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let kafka = KafkaClient::connect(ClientConfig::new(&bootstrap)).await?;
    let server = Server::new(kafka, ServerOptions::new("Sum"))?.method(
        "add",
        |(a, b): (i64, i64)| async move {
            a.checked_add(b)
                .ok_or_else(|| HandlerError::from("the sum overflows"))
        },
    );
    let stats = server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("stopped: {stats}");
    Ok(())
}
