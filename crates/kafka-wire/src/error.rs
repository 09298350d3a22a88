//! The one error type of the Kafka layer; every variant names where it happened.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

/// Result alias of the Kafka layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure of the Kafka layer, with the broker, API and topic/partition it concerns.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No broker of the bootstrap list could be reached in time.
    #[error("cannot reach any bootstrap broker ({addrs}) within {timeout:?}: {reason}")]
    BootstrapUnreachable {
        /// The bootstrap addresses tried.
        addrs: String,
        /// The connect timeout that elapsed.
        timeout: Duration,
        /// The last failure seen.
        reason: String,
    },
    /// Dialling one broker failed.
    #[error("cannot connect to broker {broker}: {reason}")]
    Connect {
        /// Broker address.
        broker: String,
        /// What went wrong.
        reason: String,
    },
    /// The connection broke while (or before) the request was in flight.
    #[error("connection to broker {broker} broken ({api:?}): {reason}")]
    ConnectionBroken {
        /// Broker address.
        broker: String,
        /// The API of the request that failed, if one was in flight.
        api: Option<ApiKey>,
        /// What broke it.
        reason: String,
    },
    /// The broker did not answer within the request timeout.
    #[error("{api:?} request to broker {broker} timed out after {after:?}")]
    Timeout {
        /// Broker address.
        broker: String,
        /// The API of the request.
        api: ApiKey,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The broker answered with an error code.
    #[error("{api:?} on broker {broker}{context}: {error:?} ({code})", code = error.code())]
    Broker {
        /// Broker address.
        broker: String,
        /// The API of the request.
        api: ApiKey,
        /// The Kafka error.
        error: ResponseError,
        /// Topic/partition or other context, formatted as ` topic/partition`.
        context: String,
    },
    /// The broker answered with an error code this crate does not know.
    #[error("{api:?} on broker {broker}{context}: unknown error code {code}")]
    UnknownBrokerError {
        /// Broker address.
        broker: String,
        /// The API of the request.
        api: ApiKey,
        /// The raw code.
        code: i16,
        /// Topic/partition context.
        context: String,
    },
    /// Bytes from the network could not be decoded.
    #[error("malformed {what} from broker {broker}: {reason}")]
    Malformed {
        /// Broker address.
        broker: String,
        /// What was being decoded (an API response, a record batch...).
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// No version of an API is supported by both sides.
    #[error("broker {broker} supports {api:?} versions {broker_min}..={broker_max}, this client {ours_min}..={ours_max}: no version in common")]
    NoVersionMatch {
        /// Broker address.
        broker: String,
        /// The API.
        api: ApiKey,
        /// Broker's lowest version.
        broker_min: i16,
        /// Broker's highest version.
        broker_max: i16,
        /// Our lowest version.
        ours_min: i16,
        /// Our highest version.
        ours_max: i16,
    },
    /// A record batch uses a compression codec this build cannot decode.
    #[error("{topic}/{partition}: record batch compressed with {codec}, which this build does not support")]
    UnsupportedCompression {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The codec's name.
        codec: &'static str,
    },
    /// A record is larger than the configured maximum and was not sent.
    #[error("record of {size} bytes for {topic} exceeds the maximum of {max} bytes; not sent")]
    RecordTooLarge {
        /// Topic.
        topic: String,
        /// Encoded size.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A topic is not known to the cluster.
    #[error("unknown topic {topic}")]
    UnknownTopic {
        /// Topic.
        topic: String,
    },
    /// A partition has no leader (or does not exist).
    #[error("no leader for {topic}/{partition}")]
    NoLeader {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// Encoding a request failed (a bug or an invalid argument).
    #[error("cannot encode {api:?} request: {reason}")]
    Encode {
        /// The API.
        api: ApiKey,
        /// Why.
        reason: String,
    },
    /// A setting or argument is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The producer or client was closed.
    #[error("{0} is closed")]
    Closed(&'static str),
    /// SASL authentication with a broker failed: wrong password or unknown user (the broker's
    /// message), mechanism not enabled, or the broker closed the connection during the exchange.
    /// Not retriable: the same credentials fail the same way.
    #[error("SASL {mechanism} authentication with broker {broker} failed: {reason}")]
    Authentication {
        /// Broker address.
        broker: String,
        /// The mechanism tried.
        mechanism: crate::sasl::SaslMechanism,
        /// What went wrong.
        reason: String,
    },
    /// TLS with a broker failed: the broker's certificate is not trusted or not valid for its
    /// name, a certificate or key file cannot be read, or this build has no TLS. Not retriable.
    #[error("TLS with broker {broker} failed: {reason}")]
    Tls {
        /// Broker address.
        broker: String,
        /// What went wrong.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same operation (after a metadata refresh or a reconnect) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::ConnectionBroken { .. }
            | Error::Timeout { .. }
            | Error::NoLeader { .. } => true,
            Error::Broker { error, .. } => error.is_retriable(),
            _ => false,
        }
    }

    /// Whether this error means our cached metadata (leaders, partitions) is stale.
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            Error::Broker { error, .. } => matches!(
                error,
                ResponseError::NotLeaderOrFollower
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::NotController
                    | ResponseError::NotCoordinator
                    | ResponseError::BrokerNotAvailable
            ),
            Error::NoLeader { .. } | Error::Connect { .. } | Error::ConnectionBroken { .. } => true,
            _ => false,
        }
    }

    /// Whether this error ends attempts to connect at all (authentication, TLS, settings): it
    /// would fail the same way on every broker and every retry.
    pub fn ends_connect_attempts(&self) -> bool {
        matches!(
            self,
            Error::Authentication { .. } | Error::Tls { .. } | Error::InvalidArgument(_)
        )
    }

    /// The Kafka error code, if the broker sent one.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            Error::Broker { error, .. } => Some(*error),
            _ => None,
        }
    }
}

/// Turns a response error code into `Ok(())` or a [`Error::Broker`] with context.
pub fn check_code(
    code: i16,
    broker: &str,
    api: ApiKey,
    context: impl FnOnce() -> String,
) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    match ResponseError::try_from_code(code) {
        Some(error) => Err(Error::Broker {
            broker: broker.to_string(),
            api,
            error,
            context: context(),
        }),
        None => Err(Error::UnknownBrokerError {
            broker: broker.to_string(),
            api,
            code,
            context: context(),
        }),
    }
}
