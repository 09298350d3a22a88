//! SASL authentication of a connection: PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802,
//! RFC 7677), carried by Kafka's SaslHandshake (v1) and SaslAuthenticate requests right after
//! ApiVersions (see `Connection::connect`).

mod plain;
mod scram;

use std::fmt;

/// A SASL mechanism this client speaks.
///
/// In a config file (feature `serde`): its IANA name, as Java's `sasl.mechanism` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616): the password travels as is; use it over TLS only.
    #[cfg_attr(feature = "serde", serde(rename = "PLAIN"))]
    Plain,
    /// SCRAM-SHA-256 (RFC 7677).
    #[cfg_attr(feature = "serde", serde(rename = "SCRAM-SHA-256"))]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[cfg_attr(feature = "serde", serde(rename = "SCRAM-SHA-512"))]
    ScramSha512,
}

impl SaslMechanism {
    /// The IANA name sent in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().replace('_', "-").as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" | "SCRAM256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" | "SCRAM512" => Ok(SaslMechanism::ScramSha512),
            _ => Err(format!(
                "unknown SASL mechanism {s:?} (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )),
        }
    }
}

/// Credentials and mechanism for SASL authentication (Java: `sasl.mechanism` and the
/// `username` and `password` of `sasl.jaas.config`).
///
/// With the `serde` feature `mechanism` and `username` are required when the table is given;
/// `password` may be left out (an application then sets it, e.g. from the environment), and is
/// read but never serialized (see [`crate::config`]).
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
#[non_exhaustive]
pub struct SaslConfig {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password (never printed by `Debug`, never written by `Serialize`).
    #[cfg_attr(feature = "serde", serde(skip_serializing, default))]
    pub password: String,
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl SaslConfig {
    /// Credentials for `mechanism`.
    pub fn new(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            mechanism,
            username: username.into(),
            password: password.into(),
        }
    }

    /// PLAIN credentials.
    pub fn plain(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::new(SaslMechanism::Plain, username, password)
    }

    /// SCRAM-SHA-256 credentials.
    pub fn scram_sha256(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::new(SaslMechanism::ScramSha256, username, password)
    }

    /// SCRAM-SHA-512 credentials.
    pub fn scram_sha512(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::new(SaslMechanism::ScramSha512, username, password)
    }
}

crate::config::with_setters! { SaslConfig {
    /// Sets [`mechanism`](Self::mechanism) (Java `sasl.mechanism`).
    with_mechanism(mechanism: SaslMechanism);
    /// Sets [`username`](Self::username) (`username` of Java's `sasl.jaas.config`).
    with_username(username: into String);
    /// Sets [`password`](Self::password) (`password` of Java's `sasl.jaas.config`).
    with_password(password: into String);
}}

/// One client-side SASL exchange: the bytes to send next, given what the server said.
pub(crate) enum Exchange {
    Plain(Option<Vec<u8>>),
    Scram(scram::ScramClient),
}

/// What the client does after a server message.
pub(crate) enum Step {
    /// Send these bytes and wait for the server's answer.
    Send(Vec<u8>),
    /// Authentication is complete.
    Done,
}

impl Exchange {
    /// Starts an exchange for `config`; errors name what is wrong with the credentials.
    pub(crate) fn start(config: &SaslConfig) -> Result<Self, String> {
        Ok(match config.mechanism {
            SaslMechanism::Plain => Exchange::Plain(Some(plain::initial_response(
                "",
                &config.username,
                &config.password,
            )?)),
            SaslMechanism::ScramSha256 => Exchange::Scram(scram::ScramClient::new(
                scram::ScramHash::Sha256,
                &config.username,
                &config.password,
            )),
            SaslMechanism::ScramSha512 => Exchange::Scram(scram::ScramClient::new(
                scram::ScramHash::Sha512,
                &config.username,
                &config.password,
            )),
        })
    }

    /// The client's first message.
    pub(crate) fn first(&mut self) -> Vec<u8> {
        match self {
            Exchange::Plain(msg) => msg.take().unwrap_or_default(),
            Exchange::Scram(c) => c.client_first(),
        }
    }

    /// The next step after the server answered `server`.
    pub(crate) fn next(&mut self, server: &[u8]) -> Result<Step, String> {
        match self {
            Exchange::Plain(_) => Ok(Step::Done),
            Exchange::Scram(c) => c.step(server),
        }
    }
}
