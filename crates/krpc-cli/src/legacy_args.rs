//! The options of the Python kafka-rpc 1.0.8 format that `serve` and `call` share.

use kafka_rpc::legacy::{LegacyCipher, LegacyFormat};

/// `--legacy` and its settings.
#[derive(clap::Args, Debug, Clone)]
pub struct LegacyArgs {
    /// Speak the Python kafka-rpc 1.0.8 format: the service is its `topic_name` (topics
    /// `krpc_<name>_server` and `krpc_<name>_client`).
    #[arg(long)]
    pub legacy: bool,
    /// Legacy format: send and require the crc32 `checksum` header (Python's `verify=True`).
    #[arg(long, requires = "legacy")]
    pub legacy_verify: bool,
    /// Legacy format: the AES password (Python's `encrypt=...`; better given through the
    /// environment).
    #[arg(
        long,
        requires = "legacy",
        env = "KRPC_LEGACY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub legacy_password: Option<String>,
}

impl LegacyArgs {
    /// The format these options describe.
    pub fn format(&self) -> LegacyFormat {
        LegacyFormat {
            verify: self.legacy_verify,
            cipher: self.legacy_password.as_deref().map(LegacyCipher::new),
        }
    }
}
