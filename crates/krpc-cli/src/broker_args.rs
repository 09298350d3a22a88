//! The broker options every command shares.

use std::time::Duration;

use kafka_wire::{Client, ClientConfig};

/// Where the Kafka cluster is.
#[derive(clap::Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    #[arg(long, env = "KAFKA_BOOTSTRAP", value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// Seconds to keep trying to reach the brokers.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub connect_timeout: f64,
}

impl BrokerArgs {
    /// The client settings these options describe.
    pub fn config(&self) -> ClientConfig {
        ClientConfig::new(&self.bootstrap)
            .client_id("krpc")
            .connect_timeout(Duration::from_secs_f64(self.connect_timeout.max(0.001)))
    }

    /// Connects to the cluster.
    pub async fn connect(&self) -> kafka_wire::Result<Client> {
        Client::connect(self.config()).await
    }
}
