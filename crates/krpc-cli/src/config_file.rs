//! `--config FILE` (or `KRPC_CONFIG`): the settings of every command from a TOML file, read
//! into the libraries' option structs through their `serde` feature (keys are the Rust field
//! names; each field's doc names the Java setting it mirrors).
//!
//! Sections: `[broker]` (krpc-kafka's `ClientConfig`: bootstrap, timeouts, `sasl`, `tls`),
//! `[producer]` (`ProducerConfig`, for `produce` and `dlq replay`), `[fetch]` (`FetchConfig`,
//! for `consume` and `dlq`), `[client]` (kafka-rpc's `ClientOptions`, for `call` and `bench`),
//! `[server]` (`ServerOptions`, for `serve`) and `[topics]` (`TopicOptions`, the topics the
//! client and the server create). Precedence: command-line flags, then environment variables,
//! then this file, then the defaults. Every key is optional; an unknown key, a wrong type or a
//! malformed file is a usage error (exit code 2) naming the file, the line and the key.
//! Refused keys: `[server] service` (the command's `-s`) and `[client] instance_id` (every
//! process reading the file would share one reply slot).

use std::path::{Path, PathBuf};

use kafka_rpc::{ClientOptions, ServerOptions, TopicOptions};
use krpc_kafka::{ClientConfig, FetchConfig, ProducerConfig};

use crate::exit::UsageError;

/// The sections of a config file, each the option struct it configures.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[broker]`: where the cluster is and how to log in.
    pub broker: Option<ClientConfig>,
    /// `[producer]`: the producer of `produce` and `dlq replay`.
    pub producer: Option<ProducerConfig>,
    /// `[fetch]`: the fetcher of `consume` and `dlq`.
    pub fetch: Option<FetchConfig>,
    /// `[client]`: the RPC client of `call` and `bench`.
    pub client: Option<ClientOptions>,
    /// `[server]`: the server of `serve`.
    pub server: Option<ServerOptions>,
    /// `[topics]`: partitions and retention of the topics the client and the server create
    /// (the `topics` of both `[client]` and `[server]`; giving it there as well is refused).
    pub topics: Option<TopicOptions>,
    /// The file these settings came from (for messages); not a key.
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// Whether `[broker]` names a `client_id` (without one, `krpc` keeps its own, `krpc`,
    /// rather than the library's default); not a key.
    #[serde(skip)]
    pub client_id_given: bool,
}

impl ConfigFile {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// A [`UsageError`] naming the file: unreadable, not TOML, an unknown section or key, a
    /// value of the wrong type (the message shows the line and the key).
    pub fn load(path: &Path) -> Result<Self, UsageError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError(format!(
                "cannot read the config file {}: {e}",
                path.display()
            ))
        })?;
        let mut file = Self::parse(&text)
            .map_err(|e| UsageError(format!("config file {}: {e}", path.display())))?;
        file.path = Some(path.to_path_buf());
        Ok(file)
    }

    /// Parses the text of a config file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let message = |e: toml::de::Error| e.to_string().trim().to_string();
        let table: toml::Table = toml::from_str(text).map_err(message)?;
        for section in ["client", "server"] {
            let nested = table
                .get(section)
                .and_then(toml::Value::as_table)
                .is_some_and(|t| t.contains_key("topics"));
            if nested && table.contains_key("topics") {
                return Err(format!(
                    "topic options are given in both [topics] and [{section}.topics]: keep one"
                ));
            }
        }
        // Keys the option structs accept but `krpc` must not take from a file: the service is
        // the required `-s` of each command (a file's would be silently replaced), and a fixed
        // client instance id would put every `krpc call`/`bench` sharing the file in one reply
        // slot, each counting the others' replies as stray (library users may set it on
        // purpose, for one long-lived process).
        let has = |section: &str, key: &str| {
            table
                .get(section)
                .and_then(toml::Value::as_table)
                .is_some_and(|t| t.contains_key(key))
        };
        if has("server", "service") {
            return Err(
                "[server] service is not read from the config file: name the service with \
                 -s/--service"
                    .into(),
            );
        }
        if has("client", "instance_id") {
            return Err(
                "[client] instance_id is not read from the config file: every krpc process \
                 reading the file would share one reply slot and take the others' replies as \
                 stray; leave it out (each process picks a random one)"
                    .into(),
            );
        }
        let mut file: Self = toml::from_str(text).map_err(message)?;
        file.client_id_given = table
            .get("broker")
            .and_then(toml::Value::as_table)
            .is_some_and(|t| t.contains_key("client_id"));
        Ok(file)
    }

    /// The producer settings: `[producer]`, or the defaults.
    pub fn producer(&self) -> ProducerConfig {
        self.producer.clone().unwrap_or_default()
    }

    /// The fetch settings: `[fetch]`, or the defaults.
    pub fn fetch(&self) -> FetchConfig {
        self.fetch.clone().unwrap_or_default()
    }

    /// The RPC client settings: `[client]` (or the defaults) with `[topics]`.
    pub fn client(&self) -> ClientOptions {
        let mut options = self.client.clone().unwrap_or_default();
        if let Some(topics) = &self.topics {
            options.topics = topics.clone();
        }
        options
    }

    /// The settings of a server of `service` (the required `-s`; the file cannot name one):
    /// `[server]` (or the defaults) with `[topics]`.
    pub fn server(&self, service: &str) -> ServerOptions {
        let mut options = match &self.server {
            Some(server) => {
                let mut options = server.clone();
                options.service = service.to_string();
                options
            }
            None => ServerOptions::new(service),
        };
        if let Some(topics) = &self.topics {
            options.topics = topics.clone();
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use krpc_kafka::{Acks, Codec, IsolationLevel, OffsetReset, SaslMechanism};

    use super::*;

    /// Every section, with keys of every kind (durations, optional durations, enums, nested
    /// tables, lists), read into the option structs; then written back and read again.
    const ALL: &str = r#"
[broker]
bootstrap = "k1:9092, k2:9092"
client_id = "ops"
connect_timeout = "3s"
request_timeout = "1m"
metadata_max_age = "2m 30s"
sasl = { mechanism = "SCRAM-SHA-512", username = "alice", password = "secret" }
tls = { ca_file = "ca.pem", client_cert = ["c.pem", "c.key"], server_name = "kafka.example" }

[producer]
acks = "1"
linger = "20ms"
codec = "zstd"
enable_idempotence = false

[fetch]
max_wait = "100ms"
offset_reset = "earliest"
isolation_level = "read_committed"
hole_wait = "2s"

[client]
default_timeout = "5s"
reply_fetch_max_wait = "10ms"
max_in_flight = 7
create_request_topics = true

[server]
server_id = "from-file"
concurrency = 3
session_timeout = "12s"
completion_trim_interval = "5m"
request_isolation = "read_uncommitted"

[topics]
request_partitions = 4
reply_retention = "2h"
"#;

    /// Java's properties write acks as a number; the new-user trial's `acks = 1` was refused
    /// with "wanted string or table".
    #[test]
    fn acks_reads_as_a_number_or_a_string_and_a_wrong_one_names_the_values() {
        for (text, want) in [
            ("1", Acks::Leader),
            ("0", Acks::None),
            ("-1", Acks::All),
            ("\"all\"", Acks::All),
            ("\"leader\"", Acks::Leader),
        ] {
            let file = ConfigFile::parse(&format!("[producer]\nacks = {text}\n"))
                .unwrap_or_else(|e| panic!("acks = {text}: {e}"));
            assert_eq!(file.producer().acks, want, "acks = {text}");
        }
        let err = ConfigFile::parse("[producer]\nacks = 2\n").expect_err("acks = 2");
        assert!(err.contains("\"all\" (or -1)"), "{err}");
    }

    #[test]
    fn a_file_with_every_section_reads_into_the_option_structs_and_back() {
        let file = ConfigFile::parse(ALL).expect("valid");
        let broker = file.broker.as_ref().expect("[broker]");
        assert_eq!(broker.bootstrap, ["k1:9092", "k2:9092"]);
        assert_eq!(broker.client_id, "ops");
        assert_eq!(broker.connect_timeout, Duration::from_secs(3));
        assert_eq!(broker.request_timeout, Duration::from_secs(60));
        assert_eq!(broker.metadata_max_age, Duration::from_secs(150));
        // Not in the file: the library's default.
        assert_eq!(broker.retry_backoff, Duration::from_millis(100));
        let sasl = broker.sasl.as_ref().expect("sasl");
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        assert_eq!((&*sasl.username, &*sasl.password), ("alice", "secret"));
        let tls = broker.tls.as_ref().expect("tls");
        assert_eq!(tls.ca_file, Some("ca.pem".into()));
        assert_eq!(tls.client_cert, Some(("c.pem".into(), "c.key".into())));
        assert_eq!(tls.server_name.as_deref(), Some("kafka.example"));

        let producer = file.producer();
        assert_eq!(producer.acks, Acks::Leader);
        assert_eq!(producer.linger, Duration::from_millis(20));
        assert_eq!(producer.codec, Codec::Zstd);
        assert!(!producer.enable_idempotence);
        assert_eq!(
            producer.max_batch_bytes,
            ProducerConfig::default().max_batch_bytes
        );

        let fetch = file.fetch();
        assert_eq!(fetch.max_wait, Duration::from_millis(100));
        assert_eq!(fetch.offset_reset, OffsetReset::Earliest);
        assert_eq!(fetch.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(fetch.hole_wait, Some(Duration::from_secs(2)));

        let client = file.client();
        assert_eq!(client.default_timeout, Duration::from_secs(5));
        assert_eq!(client.reply_fetch_max_wait, Duration::from_millis(10));
        assert_eq!(client.max_in_flight, 7);
        assert!(client.create_request_topics);
        assert_eq!(client.topics.request_partitions, 4, "[topics] applies");

        let server = file.server("Svc");
        assert_eq!(server.service, "Svc");
        assert_eq!(server.server_id, "from-file");
        assert_eq!(server.concurrency, 3);
        assert_eq!(server.session_timeout, Duration::from_secs(12));
        assert_eq!(
            server.completion_trim_interval,
            Some(Duration::from_secs(300))
        );
        assert_eq!(server.request_isolation, IsolationLevel::ReadUncommitted);
        assert_eq!(server.commit_interval, Duration::from_secs(5), "default");
        assert_eq!(server.topics.request_partitions, 4);
        assert_eq!(
            server.topics.reply_retention,
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            server.topics.dead_letter_retention,
            TopicOptions::default().dead_letter_retention
        );

        // Written back (humantime durations, Java enum values) and read again: the same
        // settings, except the SASL password, which is never written. (Without [topics]: the
        // sections write their own `topics`, and both at once are refused.)
        let mut file = file;
        file.topics = None;
        let text = toml::to_string(&file).expect("serializes");
        assert!(text.contains("linger = \"20ms\""), "{text}");
        assert!(text.contains("acks = \"1\""), "{text}");
        assert!(
            !text.contains("secret"),
            "the password is not written: {text}"
        );
        // Keys the file may not hold (the service is `-s`) are left out of what is read back.
        let readable: String = text
            .lines()
            .filter(|l| !l.starts_with("service = ") && !l.starts_with("instance_id = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut again = ConfigFile::parse(&readable.replace(
            "username = \"alice\"",
            "username = \"alice\"\npassword = \"secret\"",
        ))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        if let (Some(a), Some(f)) = (&mut again.server, &file.server) {
            a.service = f.service.clone();
        }
        if let (Some(a), Some(f)) = (&mut again.client, &file.client) {
            a.instance_id = f.instance_id.clone();
        }
        assert_eq!(format!("{again:?}"), format!("{file:?}"));
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_toml_are_named() {
        let err = ConfigFile::parse("[server]\nconcurency = 3\n").expect_err("typo");
        assert!(err.contains("concurency"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = ConfigFile::parse("[sever]\n").expect_err("unknown section");
        assert!(err.contains("sever"), "{err}");
        let err = ConfigFile::parse("[server]\nsession_timeout = \"soon\"\n").expect_err("dur");
        assert!(err.contains("session_timeout"), "{err}");
        let err = ConfigFile::parse("[broker\n").expect_err("not TOML");
        assert!(err.contains("line 1"), "{err}");
        let err = ConfigFile::parse("[topics]\nrequest_partitions = 2\n[server.topics]\n")
            .expect_err("two places");
        assert!(err.contains("[server.topics]"), "{err}");
        assert!(ConfigFile::parse("").is_ok(), "an empty file is valid");
    }

    /// Review S17: the flag's name (and Java's) works in the file too.
    #[test]
    fn a_setting_reads_under_its_flag_and_java_names_too() {
        let file = ConfigFile::parse(
            "[producer]\ncompression = \"gzip\"\n[fetch]\nisolation = \"read_committed\"\n\
             fetch_max_wait = \"20ms\"\n[client]\nfetch_max_wait = \"30ms\"\n",
        )
        .expect("aliases");
        assert_eq!(file.producer().codec, Codec::Gzip);
        assert_eq!(file.fetch().isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(file.fetch().max_wait, Duration::from_millis(20));
        assert_eq!(
            file.client().reply_fetch_max_wait,
            Duration::from_millis(30)
        );
        let file = ConfigFile::parse("[producer]\ncompression_type = \"snappy\"\n").expect("Java");
        assert_eq!(file.producer().codec, Codec::Snappy);
        let err = ConfigFile::parse("[producer]\ncodec = \"gzip\"\ncompression = \"lz4\"\n")
            .expect_err("one setting given twice");
        assert!(err.contains("duplicate"), "{err}");
    }

    /// Review S18: `[server] service` was read and then silently replaced by `-s`.
    #[test]
    fn a_service_in_the_file_is_refused_naming_the_flag() {
        let err = ConfigFile::parse("[server]\nservice = \"Orders\"\nconcurrency = 2\n")
            .expect_err("service in [server]");
        assert!(err.contains("[server] service"), "{err}");
        assert!(err.contains("-s/--service"), "{err}");
    }

    /// Review S23: a file shared by several `krpc call`/`bench` processes would put them all
    /// in one reply slot.
    #[test]
    fn a_client_instance_id_in_the_file_is_refused() {
        let err = ConfigFile::parse("[client]\ninstance_id = \"ops\"\n")
            .expect_err("instance_id in [client]");
        assert!(err.contains("[client] instance_id"), "{err}");
        assert!(err.contains("reply slot"), "{err}");
    }
}
