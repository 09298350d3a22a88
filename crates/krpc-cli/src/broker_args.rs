//! The broker options every command shares: where the cluster is and how to authenticate.
//! They are global (given before or after the subcommand: `krpc -b H:P topics list` and
//! `krpc topics list -b H:P` are the same), and each has an environment variable. They are
//! read over the `[broker]` section of the config file (`--config`), if one is given.

use std::path::PathBuf;
use std::time::Duration;

use krpc_kafka::{ClientConfig, Error, KafkaClient, SaslConfig, SaslMechanism, TlsConfig};

use crate::config_file::ConfigFile;
use crate::exit::UsageError;
use crate::timing_args::positive_duration;

/// Whether this krpc was built with TLS (its `tls` or `tls-ring` feature); without, the --tls*
/// options are hidden and refused when given.
const TLS_BUILT_IN: bool = cfg!(any(feature = "tls", feature = "tls-ring"));

/// Where the Kafka cluster is, and how to log in.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Broker options (global)")]
pub struct BrokerArgs {
    /// Settings from a TOML file (also `krpc --config FILE <command>`, before the command;
    /// giving both is refused):
    /// sections `[broker]`, `[producer]`, `[fetch]`, `[client]`, `[server]`, `[topics]`, keys named after
    /// the library's option fields. Flags and environment variables override the file; the
    /// file overrides the defaults. See README, "The config file".
    #[arg(long, global = true, env = "KRPC_CONFIG", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// The file of `--config`, once read by [`BrokerArgs::load_config_file`] (empty without
    /// one).
    #[arg(skip)]
    pub file: ConfigFile,
    /// Bootstrap brokers, `host:port[,host:port...]` (Java: `bootstrap.servers`). Needed by
    /// every command that talks to Kafka.
    #[arg(
        short = 'b',
        long,
        global = true,
        env = "KAFKA_BOOTSTRAP",
        value_name = "HOST:PORT"
    )]
    pub bootstrap: Option<String>,
    /// How long to keep trying to reach the brokers, e.g. 500ms, 10s (a plain number is
    /// seconds) (Java: `socket.connection.setup.timeout.ms`) [default: 10s].
    #[arg(
        long,
        global = true,
        env = "KRPC_CONNECT_TIMEOUT",
        value_name = "DURATION",
        value_parser = positive_duration
    )]
    pub connect_timeout: Option<Duration>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (needs --sasl-username) (Java:
    /// `sasl.mechanism`).
    #[arg(
        long,
        global = true,
        env = "KRPC_SASL_MECHANISM",
        value_name = "MECHANISM",
        requires = "sasl_username"
    )]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name (Java: the `username` of `sasl.jaas.config`).
    #[arg(
        long,
        global = true,
        env = "KRPC_SASL_USERNAME",
        value_name = "USER",
        requires = "sasl_mechanism"
    )]
    pub sasl_username: Option<String>,
    /// SASL password (better given through the environment) (Java: the `password` of
    /// `sasl.jaas.config`).
    #[arg(
        long,
        global = true,
        env = "KRPC_SASL_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub sasl_password: Option<String>,
    /// Connect with TLS (Java: `security.protocol=SSL`, or `SASL_SSL` with --sasl-*), trusting
    /// the system's root certificates unless --tls-ca is given. Any other --tls-* option implies
    /// it.
    #[arg(
        long,
        global = true,
        env = "KRPC_TLS",
        value_parser = clap::builder::FalseyValueParser::new(),
        hide = !TLS_BUILT_IN
    )]
    pub tls: bool,
    /// TLS: trust the CA certificate(s) in this PEM file instead of the system's roots (Java:
    /// `ssl.truststore.location`).
    #[arg(long, global = true, env = "KRPC_TLS_CA", value_name = "PEM_FILE", hide = !TLS_BUILT_IN)]
    pub tls_ca: Option<PathBuf>,
    /// TLS: the client certificate chain (PEM) for mutual TLS; needs --tls-key (Java:
    /// `ssl.keystore.location`).
    #[arg(
        long,
        global = true,
        env = "KRPC_TLS_CERT",
        value_name = "PEM_FILE",
        requires = "tls_key",
        hide = !TLS_BUILT_IN
    )]
    pub tls_cert: Option<PathBuf>,
    /// TLS: the private key (PEM: PKCS#8, SEC1 or PKCS#1) of --tls-cert.
    #[arg(
        long,
        global = true,
        env = "KRPC_TLS_KEY",
        value_name = "PEM_FILE",
        requires = "tls_cert",
        hide = !TLS_BUILT_IN
    )]
    pub tls_key: Option<PathBuf>,
    /// TLS: check the brokers' certificates against this name (and send it as SNI) instead of
    /// the host of each broker address.
    #[arg(
        long,
        global = true,
        env = "KRPC_TLS_SERVER_NAME",
        value_name = "NAME",
        hide = !TLS_BUILT_IN
    )]
    pub tls_server_name: Option<String>,
}

impl BrokerArgs {
    /// Reads the config file (`config`: the top-level `--config`; else `--config-file` or
    /// `KRPC_CONFIG`) into [`BrokerArgs::file`]; without one, nothing. `config_file_flag`:
    /// whether `--config-file` was given on the command line (rather than through
    /// `KRPC_CONFIG`, which `--config` overrides as a flag overrides the environment).
    ///
    /// # Errors
    /// A usage error naming both flags when `--config` and `--config-file` are both given; a
    /// usage error naming the file (and the line and key) when it cannot be read or holds an
    /// unknown or refused key or a wrong value.
    pub fn load_config_file(
        &mut self,
        config: Option<&std::path::Path>,
        config_file_flag: bool,
    ) -> Result<(), UsageError> {
        if let (Some(config), Some(file), true) = (config, &self.config_file, config_file_flag) {
            return Err(UsageError(format!(
                "both --config {} and --config-file {} are given: give one (they are the same \
                 option)",
                config.display(),
                file.display()
            )));
        }
        if let Some(path) = config.or(self.config_file.as_deref()) {
            self.file = ConfigFile::load(path)?;
        }
        Ok(())
    }

    /// The client settings: these options over the config file's `[broker]` section over the
    /// defaults (client id `krpc`); a usage error without a bootstrap broker in either.
    pub fn config(&self) -> Result<ClientConfig, UsageError> {
        let mut config = match &self.file.broker {
            Some(file) if self.file.client_id_given => file.clone(),
            Some(file) => file.clone().with_client_id("krpc"),
            None => ClientConfig::new("").with_client_id("krpc"),
        };
        if let Some(bootstrap) = &self.bootstrap {
            config.bootstrap = ClientConfig::new(bootstrap).bootstrap;
        }
        if config.bootstrap.is_empty() {
            return Err(UsageError(
                "no broker given: pass -b/--bootstrap HOST:PORT, set KAFKA_BOOTSTRAP, or set \
                 bootstrap in the [broker] section of the --config file"
                    .into(),
            ));
        }
        if let Some(timeout) = self.connect_timeout {
            config.connect_timeout = timeout;
        }
        if let (Some(mechanism), Some(user)) = (self.sasl_mechanism, &self.sasl_username) {
            // A password from the flags or the environment, else the file's.
            let password = self
                .sasl_password
                .clone()
                .or_else(|| config.sasl.as_ref().map(|s| s.password.clone()))
                .unwrap_or_default();
            config.sasl = Some(SaslConfig::new(mechanism, user.clone(), password));
        } else if let (Some(sasl), Some(password)) = (&mut config.sasl, &self.sasl_password) {
            sasl.password = password.clone();
        }
        if config.sasl.as_ref().is_some_and(|s| s.password.is_empty()) {
            return Err(UsageError(
                "SASL has no password: set KRPC_SASL_PASSWORD (or --sasl-password, or password in the \
                 config file's [broker] sasl table)"
                    .into(),
            ));
        }
        config.tls = self.tls_config(config.tls.take());
        Ok(config)
    }

    /// The TLS settings: the --tls* options over `file` (the config file's `tls`); `None`:
    /// plaintext.
    fn tls_config(&self, file: Option<TlsConfig>) -> Option<TlsConfig> {
        let wanted = self.tls
            || self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self.tls_server_name.is_some();
        if !wanted {
            return file;
        }
        let mut tls = file.unwrap_or_default();
        if self.tls_ca.is_some() {
            tls.ca_file = self.tls_ca.clone();
        }
        if let Some(pair) = self.tls_cert.clone().zip(self.tls_key.clone()) {
            tls.client_cert = Some(pair);
        }
        if self.tls_server_name.is_some() {
            tls.server_name = self.tls_server_name.clone();
        }
        Some(tls)
    }

    /// Refuses TLS files that do not exist: a mistake in the command or the config file (exit
    /// 2), not a broker that refused us (exit 3, which scripts retry).
    fn check_tls_files(config: &ClientConfig) -> Result<(), UsageError> {
        let Some(tls) = &config.tls else {
            return Ok(());
        };
        let files = tls
            .ca_file
            .iter()
            .chain(tls.client_cert.iter().flat_map(|(cert, key)| [cert, key]));
        for path in files {
            // exists(), not is_file(): `--tls-ca <(vault read ...)` is a FIFO.
            if !path.exists() {
                return Err(UsageError(format!(
                    "TLS file {} does not exist (relative paths are read from the working \
                     directory)",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// Connects to the cluster. A --tls* option in a build without TLS is refused here, before
    /// any connection, naming the feature to build with.
    pub async fn connect(&self) -> Result<KafkaClient, Box<dyn std::error::Error + Send + Sync>> {
        let config = self.config()?;
        Self::check_tls_files(&config)?;
        tracing::debug!(
            bootstrap = ?config.bootstrap,
            connect_timeout = ?config.connect_timeout,
            sasl = ?config.sasl.as_ref().map(|s| s.mechanism),
            tls = config.tls.is_some(),
            config_file = ?self.file.path,
            "connecting to the cluster"
        );
        if !TLS_BUILT_IN && config.tls.is_some() {
            return Err(Box::new(Error::InvalidArgument(
                "--tls (or KRPC_TLS*) given, but this krpc was built without TLS: build krpc-cli \
                 with its `tls` feature (the default; `tls-ring` also works)"
                    .into(),
            )));
        }
        Ok(KafkaClient::connect(config).await?)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        broker: BrokerArgs,
    }

    fn parse(args: &[&str]) -> BrokerArgs {
        let mut argv = vec!["krpc", "--bootstrap", "127.0.0.1:1"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("valid options").broker
    }

    #[test]
    fn tls_options_make_the_tls_settings() {
        assert_eq!(parse(&[]).config().expect("bootstrap given").tls, None);
        let dir = std::env::temp_dir().join(format!("krpc-tls-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let [ca, cert, key] = ["ca.pem", "c.pem", "c.key"].map(|f| {
            let path = dir.join(f);
            std::fs::write(&path, "x").unwrap();
            path.to_str().unwrap().to_string()
        });
        let tls = parse(&[
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-server-name",
            "kafka.example.com",
        ])
        .config()
        .expect("bootstrap given")
        .tls
        .expect("TLS on");
        assert_eq!(tls.ca_file, Some(ca.clone().into()));
        assert_eq!(tls.client_cert, Some((cert.into(), key.into())));
        // A file that does not exist is a usage error (exit 2) naming it, not a failed
        // connection (exit 3; new-user trial).
        let missing = dir.join("missing.pem");
        let missing = missing.to_str().unwrap();
        let config = parse(&["--tls-ca", missing])
            .config()
            .expect("bootstrap given");
        let err = BrokerArgs::check_tls_files(&config).expect_err("missing CA file");
        assert!(err.0.contains(missing), "{}", err.0);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(tls.server_name.as_deref(), Some("kafka.example.com"));
        assert_eq!(
            parse(&["--tls"]).config().expect("bootstrap given").tls,
            Some(TlsConfig::default())
        );
        assert!(
            Cli::try_parse_from(["krpc", "--bootstrap", "h:1", "--tls-cert", "c.pem"]).is_err(),
            "--tls-cert needs --tls-key"
        );
    }

    #[test]
    fn flags_and_environment_override_the_config_file_which_overrides_the_defaults() {
        let mut args = Cli::try_parse_from(["krpc"]).expect("valid").broker;
        assert!(args.config().is_err(), "no bootstrap anywhere");
        args.file = ConfigFile::parse(
            "[broker]\nbootstrap = [\"file:1\"]\nconnect_timeout = \"3s\"\n\
             sasl = { mechanism = \"PLAIN\", username = \"u\", password = \"file-pw\" }\n\
             tls = { ca_file = \"file-ca.pem\", server_name = \"file-name\" }\n",
        )
        .expect("valid");
        let config = args.config().expect("bootstrap from the file");
        assert_eq!(config.bootstrap, ["file:1"]);
        assert_eq!(config.connect_timeout, Duration::from_secs(3));
        assert_eq!(
            config.client_id, "krpc",
            "krpc's own unless the file names one"
        );
        assert_eq!(config.sasl.as_ref().map(|s| &*s.password), Some("file-pw"));
        let mut flags = Cli::try_parse_from([
            "krpc",
            "-b",
            "flag:1",
            "--connect-timeout",
            "7s",
            "--sasl-password",
            "flag-pw",
            "--tls-server-name",
            "flag-name",
        ])
        .expect("valid")
        .broker;
        flags.file = args.file.clone();
        let config = flags.config().expect("valid");
        assert_eq!(config.bootstrap, ["flag:1"]);
        assert_eq!(config.connect_timeout, Duration::from_secs(7));
        assert_eq!(config.sasl.as_ref().map(|s| &*s.password), Some("flag-pw"));
        let tls = config.tls.expect("tls");
        assert_eq!(
            tls.server_name.as_deref(),
            Some("flag-name"),
            "the flag wins"
        );
        assert_eq!(
            tls.ca_file,
            Some("file-ca.pem".into()),
            "the file's, not overridden"
        );
    }

    /// A config file may leave the SASL password out (README: better in the environment); it
    /// then comes from `--sasl-password` / `KRPC_SASL_PASSWORD`, and a login with none at all
    /// is a usage error, not an empty password sent to the broker.
    #[test]
    fn a_sasl_table_without_a_password_takes_it_from_the_flag_or_environment() {
        let file = ConfigFile::parse(
            "[broker]\nbootstrap = [\"file:1\"]\n\
             sasl = { mechanism = \"SCRAM-SHA-512\", username = \"ops\" }\n",
        )
        .expect("a sasl table without a password is valid");
        let mut none = Cli::try_parse_from(["krpc"]).expect("valid").broker;
        none.file = file.clone();
        let err = none.config().expect_err("no password anywhere");
        assert!(err.to_string().contains("KRPC_SASL_PASSWORD"), "{err}");
        let mut given = Cli::try_parse_from(["krpc", "--sasl-password", "pw"])
            .expect("valid")
            .broker;
        given.file = file;
        let sasl = given.config().expect("valid").sasl.expect("sasl");
        assert_eq!((&*sasl.username, &*sasl.password), ("ops", "pw"));
    }

    /// `cargo test -p krpc-cli --no-default-features`: a build without TLS refuses the options
    /// before connecting, naming the feature.
    #[cfg(not(any(feature = "tls", feature = "tls-ring")))]
    #[tokio::test]
    async fn tls_options_are_refused_in_a_build_without_tls() {
        let err = parse(&["--tls"]).connect().await.expect_err("no TLS");
        assert!(err.to_string().contains("built without TLS"), "{err}");
        assert!(err.to_string().contains("`tls` feature"), "{err}");
    }
}
