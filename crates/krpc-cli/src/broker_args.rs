//! The broker options every command shares: where the cluster is and how to authenticate.

use std::path::PathBuf;
use std::time::Duration;

use kafka_wire::{Client, ClientConfig, SaslConfig, SaslMechanism, TlsConfig};

/// Where the Kafka cluster is, and how to log in.
#[derive(clap::Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    #[arg(long, env = "KAFKA_BOOTSTRAP", value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// Seconds to keep trying to reach the brokers.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub connect_timeout: f64,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (needs --sasl-username).
    #[arg(long, value_name = "MECHANISM", requires = "sasl_username")]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name.
    #[arg(long, value_name = "USER", requires = "sasl_mechanism")]
    pub sasl_username: Option<String>,
    /// SASL password (better given through the environment).
    #[arg(
        long,
        env = "KRPC_SASL_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub sasl_password: Option<String>,
    /// Connect with TLS, trusting this CA certificate file (PEM); needs a build with the `tls`
    /// feature of kafka-wire.
    #[arg(long, value_name = "PEM_FILE")]
    pub tls_ca: Option<PathBuf>,
}

impl BrokerArgs {
    /// The client settings these options describe.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(&self.bootstrap)
            .client_id("krpc")
            .connect_timeout(Duration::from_secs_f64(self.connect_timeout.max(0.001)));
        if let (Some(mechanism), Some(user)) = (self.sasl_mechanism, &self.sasl_username) {
            let password = self.sasl_password.clone().unwrap_or_default();
            config = config.sasl(SaslConfig::new(mechanism, user.clone(), password));
        }
        if let Some(ca) = &self.tls_ca {
            config = config.tls(TlsConfig {
                ca_file: Some(ca.clone()),
                ..TlsConfig::default()
            });
        }
        config
    }

    /// Connects to the cluster.
    pub async fn connect(&self) -> kafka_wire::Result<Client> {
        Client::connect(self.config()).await
    }
}
