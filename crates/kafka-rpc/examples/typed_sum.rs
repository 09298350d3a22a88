//! The seed's `Sum.add` demo as a typed service (`#[kafka_rpc::service]`): the service is a
//! trait, the server serves an implementation of it, the client is generated.
//!
//! Run: `cargo run -p kafka-rpc --example typed_sum -- serve 127.0.0.1:9092` (Ctrl-C to stop),
//! then `cargo run -p kafka-rpc --example typed_sum -- call 127.0.0.1:9092`.

use kafka_rpc::krpc_kafka::{ClientConfig, KafkaClient};
use kafka_rpc::{ClientOptions, RpcClient, Server};

/// The service: its name on the wire is the trait's, `Sum`.
#[kafka_rpc::service]
pub trait Sum {
    /// `x + y`.
    async fn add(&self, x: i64, y: i64) -> i64;
}

struct Adder;

impl Sum for Adder {
    async fn add(&self, x: i64, y: i64) -> i64 {
        x + y
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "call".into());
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let kafka = KafkaClient::connect(ClientConfig::new(&bootstrap)).await?;
    if mode == "serve" {
        let server =
            Server::new(kafka, SumServer::<Adder>::options())?.service(SumServer::new(Adder));
        let stats = server
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        println!("stopped: {stats}");
    } else {
        let sum = SumClient::new(RpcClient::connect(kafka, ClientOptions::default()).await?);
        println!("Sum.add(1, 2) = {}", sum.add(1, 2).await?);
    }
    Ok(())
}
