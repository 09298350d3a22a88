//! The one error type of the Kafka layer; every variant names where it happened.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey as ProtocolApiKey;

/// A Kafka API, as a request header's `request_api_key` names it (Produce is 0, Fetch is 1,
/// ...; the numbers of the Kafka protocol guide). Printed, with `{:?}` and `{}`, by the API's
/// name (`Fetch`).
///
/// Our own type, so that the public API does not expose the `kafka-protocol` copy underneath.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKey(ProtocolApiKey);

impl ApiKey {
    /// Produce (0).
    pub const PRODUCE: ApiKey = ApiKey(ProtocolApiKey::Produce);
    /// Fetch (1).
    pub const FETCH: ApiKey = ApiKey(ProtocolApiKey::Fetch);
    /// ListOffsets (2).
    pub const LIST_OFFSETS: ApiKey = ApiKey(ProtocolApiKey::ListOffsets);
    /// Metadata (3).
    pub const METADATA: ApiKey = ApiKey(ProtocolApiKey::Metadata);
    /// OffsetCommit (8).
    pub const OFFSET_COMMIT: ApiKey = ApiKey(ProtocolApiKey::OffsetCommit);
    /// OffsetFetch (9).
    pub const OFFSET_FETCH: ApiKey = ApiKey(ProtocolApiKey::OffsetFetch);
    /// FindCoordinator (10).
    pub const FIND_COORDINATOR: ApiKey = ApiKey(ProtocolApiKey::FindCoordinator);
    /// JoinGroup (11).
    pub const JOIN_GROUP: ApiKey = ApiKey(ProtocolApiKey::JoinGroup);
    /// Heartbeat (12).
    pub const HEARTBEAT: ApiKey = ApiKey(ProtocolApiKey::Heartbeat);
    /// LeaveGroup (13).
    pub const LEAVE_GROUP: ApiKey = ApiKey(ProtocolApiKey::LeaveGroup);
    /// SyncGroup (14).
    pub const SYNC_GROUP: ApiKey = ApiKey(ProtocolApiKey::SyncGroup);
    /// ApiVersions (18).
    pub const API_VERSIONS: ApiKey = ApiKey(ProtocolApiKey::ApiVersions);
    /// DescribeGroups (15).
    pub const DESCRIBE_GROUPS: ApiKey = ApiKey(ProtocolApiKey::DescribeGroups);
    /// ListGroups (16).
    pub const LIST_GROUPS: ApiKey = ApiKey(ProtocolApiKey::ListGroups);
    /// SaslHandshake (17).
    pub const SASL_HANDSHAKE: ApiKey = ApiKey(ProtocolApiKey::SaslHandshake);
    /// CreateTopics (19).
    pub const CREATE_TOPICS: ApiKey = ApiKey(ProtocolApiKey::CreateTopics);
    /// DeleteTopics (20).
    pub const DELETE_TOPICS: ApiKey = ApiKey(ProtocolApiKey::DeleteTopics);
    /// DeleteRecords (21).
    pub const DELETE_RECORDS: ApiKey = ApiKey(ProtocolApiKey::DeleteRecords);
    /// InitProducerId (22).
    pub const INIT_PRODUCER_ID: ApiKey = ApiKey(ProtocolApiKey::InitProducerId);
    /// DescribeConfigs (32).
    pub const DESCRIBE_CONFIGS: ApiKey = ApiKey(ProtocolApiKey::DescribeConfigs);
    /// SaslAuthenticate (36).
    pub const SASL_AUTHENTICATE: ApiKey = ApiKey(ProtocolApiKey::SaslAuthenticate);
    /// CreatePartitions (37).
    pub const CREATE_PARTITIONS: ApiKey = ApiKey(ProtocolApiKey::CreatePartitions);

    /// The API with number `key`, if the protocol has one.
    pub fn from_key(key: i16) -> Option<Self> {
        ProtocolApiKey::try_from(key).ok().map(ApiKey)
    }

    /// The API's number (`request_api_key`).
    pub fn key(self) -> i16 {
        self.0 as i16
    }

    /// Wraps the `kafka-protocol` key (crate-internal: the public API never names it).
    pub(crate) fn of(key: ProtocolApiKey) -> Self {
        ApiKey(key)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

/// An error code a broker answered with that this crate knows (the codes of the Kafka
/// protocol guide's error table, e.g. 6 NOT_LEADER_OR_FOLLOWER). Printed, with `{:?}` and
/// `{}`, by its name in CamelCase (`NotLeaderOrFollower`). Codes this crate does not know are
/// [`Error::UnknownBrokerError`] instead. [`classify`] says what to do about one.
///
/// Our own type, so that the public API does not expose the `kafka-protocol` copy underneath.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(ResponseError);

impl std::hash::Hash for ErrorCode {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.code().hash(state);
    }
}

impl ErrorCode {
    /// UNKNOWN_SERVER_ERROR (-1).
    pub const UNKNOWN_SERVER_ERROR: ErrorCode = ErrorCode(ResponseError::UnknownServerError);
    /// OFFSET_OUT_OF_RANGE (1).
    pub const OFFSET_OUT_OF_RANGE: ErrorCode = ErrorCode(ResponseError::OffsetOutOfRange);
    /// CORRUPT_MESSAGE (2).
    pub const CORRUPT_MESSAGE: ErrorCode = ErrorCode(ResponseError::CorruptMessage);
    /// UNKNOWN_TOPIC_OR_PARTITION (3).
    pub const UNKNOWN_TOPIC_OR_PARTITION: ErrorCode =
        ErrorCode(ResponseError::UnknownTopicOrPartition);
    /// LEADER_NOT_AVAILABLE (5).
    pub const LEADER_NOT_AVAILABLE: ErrorCode = ErrorCode(ResponseError::LeaderNotAvailable);
    /// NOT_LEADER_OR_FOLLOWER (6).
    pub const NOT_LEADER_OR_FOLLOWER: ErrorCode = ErrorCode(ResponseError::NotLeaderOrFollower);
    /// REQUEST_TIMED_OUT (7).
    pub const REQUEST_TIMED_OUT: ErrorCode = ErrorCode(ResponseError::RequestTimedOut);
    /// MESSAGE_TOO_LARGE (10).
    pub const MESSAGE_TOO_LARGE: ErrorCode = ErrorCode(ResponseError::MessageTooLarge);
    /// COORDINATOR_LOAD_IN_PROGRESS (14).
    pub const COORDINATOR_LOAD_IN_PROGRESS: ErrorCode =
        ErrorCode(ResponseError::CoordinatorLoadInProgress);
    /// COORDINATOR_NOT_AVAILABLE (15).
    pub const COORDINATOR_NOT_AVAILABLE: ErrorCode =
        ErrorCode(ResponseError::CoordinatorNotAvailable);
    /// NOT_COORDINATOR (16).
    pub const NOT_COORDINATOR: ErrorCode = ErrorCode(ResponseError::NotCoordinator);
    /// ILLEGAL_GENERATION (22).
    pub const ILLEGAL_GENERATION: ErrorCode = ErrorCode(ResponseError::IllegalGeneration);
    /// UNKNOWN_MEMBER_ID (25).
    pub const UNKNOWN_MEMBER_ID: ErrorCode = ErrorCode(ResponseError::UnknownMemberId);
    /// REBALANCE_IN_PROGRESS (27).
    pub const REBALANCE_IN_PROGRESS: ErrorCode = ErrorCode(ResponseError::RebalanceInProgress);
    /// TOPIC_AUTHORIZATION_FAILED (29).
    pub const TOPIC_AUTHORIZATION_FAILED: ErrorCode =
        ErrorCode(ResponseError::TopicAuthorizationFailed);
    /// GROUP_AUTHORIZATION_FAILED (30).
    pub const GROUP_AUTHORIZATION_FAILED: ErrorCode =
        ErrorCode(ResponseError::GroupAuthorizationFailed);
    /// UNSUPPORTED_VERSION (35).
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(ResponseError::UnsupportedVersion);
    /// TOPIC_ALREADY_EXISTS (36).
    pub const TOPIC_ALREADY_EXISTS: ErrorCode = ErrorCode(ResponseError::TopicAlreadyExists);
    /// INVALID_PARTITIONS (37).
    pub const INVALID_PARTITIONS: ErrorCode = ErrorCode(ResponseError::InvalidPartitions);
    /// INVALID_REPLICATION_FACTOR (38).
    pub const INVALID_REPLICATION_FACTOR: ErrorCode =
        ErrorCode(ResponseError::InvalidReplicationFactor);
    /// INVALID_CONFIG (40).
    pub const INVALID_CONFIG: ErrorCode = ErrorCode(ResponseError::InvalidConfig);
    /// NOT_CONTROLLER (41).
    pub const NOT_CONTROLLER: ErrorCode = ErrorCode(ResponseError::NotController);
    /// POLICY_VIOLATION (44).
    pub const POLICY_VIOLATION: ErrorCode = ErrorCode(ResponseError::PolicyViolation);
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: ErrorCode =
        ErrorCode(ResponseError::OutOfOrderSequenceNumber);
    /// DUPLICATE_SEQUENCE_NUMBER (46).
    pub const DUPLICATE_SEQUENCE_NUMBER: ErrorCode =
        ErrorCode(ResponseError::DuplicateSequenceNumber);
    /// INVALID_PRODUCER_EPOCH (47).
    pub const INVALID_PRODUCER_EPOCH: ErrorCode = ErrorCode(ResponseError::InvalidProducerEpoch);
    /// SASL_AUTHENTICATION_FAILED (58).
    pub const SASL_AUTHENTICATION_FAILED: ErrorCode =
        ErrorCode(ResponseError::SaslAuthenticationFailed);
    /// UNKNOWN_PRODUCER_ID (59).
    pub const UNKNOWN_PRODUCER_ID: ErrorCode = ErrorCode(ResponseError::UnknownProducerId);
    /// GROUP_ID_NOT_FOUND (69).
    pub const GROUP_ID_NOT_FOUND: ErrorCode = ErrorCode(ResponseError::GroupIdNotFound);
    /// FETCH_SESSION_ID_NOT_FOUND (70).
    pub const FETCH_SESSION_ID_NOT_FOUND: ErrorCode =
        ErrorCode(ResponseError::FetchSessionIdNotFound);
    /// INVALID_FETCH_SESSION_EPOCH (71).
    pub const INVALID_FETCH_SESSION_EPOCH: ErrorCode =
        ErrorCode(ResponseError::InvalidFetchSessionEpoch);
    /// FENCED_INSTANCE_ID (82).
    pub const FENCED_INSTANCE_ID: ErrorCode = ErrorCode(ResponseError::FencedInstanceId);
    /// PRODUCER_FENCED (90).
    pub const PRODUCER_FENCED: ErrorCode = ErrorCode(ResponseError::ProducerFenced);

    /// The error for `code`, if this crate knows it (0, no error, is `None`).
    pub fn from_code(code: i16) -> Option<Self> {
        ResponseError::try_from_code(code).map(ErrorCode)
    }

    /// The numeric code (`error_code` in the response).
    pub fn code(self) -> i16 {
        self.0.code()
    }

    /// Wraps the `kafka-protocol` error (crate-internal).
    #[cfg(test)]
    pub(crate) fn of(error: ResponseError) -> Self {
        ErrorCode(error)
    }

    /// The `kafka-protocol` error (crate-internal: the public API never names it).
    pub(crate) fn protocol(self) -> ResponseError {
        self.0
    }

    /// Whether the Kafka protocol guide marks the error retriable (see [`classify`] for what
    /// this crate does about each).
    pub fn is_retriable(self) -> bool {
        self.0.is_retriable()
    }
}

impl std::fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

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
        error: ErrorCode,
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
    /// The producer's buffer (`ProducerConfig::buffer_memory`, Java's `buffer.memory`) stayed
    /// too full for this record for `max_block` (Java's `max.block.ms`): the record was not
    /// queued (Java: `TimeoutException` from `send`). Records already queued are acknowledged
    /// more slowly than they are sent; retry later or send less at a time.
    #[error("producer buffer full: a record of {size} bytes for {topic} waited {max_block:?} (max.block.ms) for space in the {buffer_memory}-byte buffer (buffer.memory); not sent")]
    BufferExhausted {
        /// Topic.
        topic: String,
        /// The record's size as the buffer counts it.
        size: usize,
        /// The buffer's size in bytes.
        buffer_memory: usize,
        /// How long the send waited.
        max_block: Duration,
    },
    /// A batch was not sent within `ProducerConfig::delivery_timeout` (Java's
    /// `delivery.timeout.ms`) and no attempt of it failed with an error that says why (an
    /// attempt's error, when there is one, is reported instead).
    #[error("{records} record(s) for {topic}/{partition} expired: {after:?} (delivery.timeout.ms) passed since the batch was created")]
    DeliveryTimeout {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Records in the batch.
        records: usize,
        /// The delivery timeout.
        after: Duration,
    },
    /// `Producer::close_timeout` ran out before everything sent was acknowledged; the
    /// records still queued or in flight failed with [`Error::Closed`].
    #[error(
        "producer close: {unfinished} batch(es) still unacknowledged after {after:?}; they failed"
    )]
    CloseTimeout {
        /// Batches failed by the forced close.
        unfinished: usize,
        /// The close timeout.
        after: Duration,
    },
    /// A partition returned bytes but not one complete record batch, even with the
    /// per-partition limit grown to the fetch's `max_bytes`: the batch at `offset` is larger
    /// than this consumer may fetch (Java: `RecordTooLargeException` before KIP-74).
    #[error("fetch of {topic}/{partition} at offset {offset} from broker {broker}: the batch there ({batch} bytes) does not fit the fetch limit of {limit} bytes")]
    FetchTooSmall {
        /// Broker address.
        broker: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offset fetched.
        offset: i64,
        /// The per-partition limit of the last attempt.
        limit: i32,
        /// The batch's size from its header, or -1 if not even a header came.
        batch: i64,
    },
    /// A group partition has no committed offset and the reset policy is
    /// [`crate::OffsetReset::Error`] (Java: `NoOffsetForPartitionException`).
    #[error("no committed offset for {topic}/{partition} in group {group}, and the reset policy is none")]
    NoResetPolicy {
        /// The group.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
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

/// What a caller does about a failure. [`classify`] and [`Error::recovery`] are the one place
/// that decides it for every Kafka error code and transport failure; every retry loop of this
/// crate asks them, and waits through [`crate::backoff::Backoff`] before trying again.
///
/// The split follows the Java client: its `InvalidMetadataException` subclasses are
/// [`Recovery::RefreshMetadata`], its other `RetriableException`s [`Recovery::Backoff`], the
/// group-membership errors its consumer answers by rejoining [`Recovery::Rejoin`], and
/// OFFSET_OUT_OF_RANGE the fetcher's `auto.offset.reset` ([`Recovery::ResetOffset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// Our view of the cluster is stale (leader moved, topic or coordinator unknown, broker
    /// gone): refresh metadata (or find the coordinator again), back off, retry.
    RefreshMetadata,
    /// Transient on the broker's side (timeout, loading, not enough replicas): back off, retry.
    Backoff,
    /// The group moved on without this member (rebalance, new generation, member unknown):
    /// rejoin the group; the request itself is not retried.
    Rejoin,
    /// The fetch position is outside the partition's log: apply the reset policy.
    ResetOffset,
    /// Retrying cannot help (authorization, invalid request, unknown code): surface it.
    Fatal,
}

/// The [`Recovery`] for a Kafka error code (see [`Recovery`] for the rule).
pub fn classify(error: ErrorCode) -> Recovery {
    use ResponseError as E;
    match error.0 {
        E::NotLeaderOrFollower
        | E::LeaderNotAvailable
        | E::UnknownTopicOrPartition
        | E::ReplicaNotAvailable
        | E::FencedLeaderEpoch
        | E::UnknownLeaderEpoch
        | E::KafkaStorageError
        | E::UnknownTopicId
        | E::InconsistentTopicId
        | E::NotController
        | E::NotCoordinator
        | E::CoordinatorNotAvailable
        | E::BrokerNotAvailable => Recovery::RefreshMetadata,
        E::RebalanceInProgress | E::IllegalGeneration | E::UnknownMemberId => Recovery::Rejoin,
        E::OffsetOutOfRange => Recovery::ResetOffset,
        e if e.is_retriable() => Recovery::Backoff,
        _ => Recovery::Fatal,
    }
}

impl Error {
    /// What to do about this error: the one classification (see [`Recovery`]). Transport
    /// failures (connect, broken connection, request timeout) and a missing leader refresh
    /// metadata, as the Java client requests a metadata update on a disconnect; an error code
    /// this crate does not know is fatal, as Java's `UnknownServerException`.
    pub fn recovery(&self) -> Recovery {
        match self {
            // No broker reachable at all (every broker down, a network partition) is an
            // outage that ends, as the Java client treats it: it keeps retrying.
            Error::BootstrapUnreachable { .. }
            | Error::Connect { .. }
            | Error::ConnectionBroken { .. }
            | Error::Timeout { .. }
            | Error::NoLeader { .. } => Recovery::RefreshMetadata,
            Error::Broker { error, .. } => classify(*error),
            _ => Recovery::Fatal,
        }
    }

    /// Whether retrying the same operation (after a metadata refresh or a backoff) may succeed:
    /// [`Recovery::RefreshMetadata`] or [`Recovery::Backoff`].
    pub fn is_retriable(&self) -> bool {
        matches!(
            self.recovery(),
            Recovery::RefreshMetadata | Recovery::Backoff
        )
    }

    /// Whether this error means our cached metadata (leaders, partitions, coordinator) is
    /// stale: [`Recovery::RefreshMetadata`].
    pub fn invalidates_metadata(&self) -> bool {
        self.recovery() == Recovery::RefreshMetadata
    }

    /// Whether this error ends attempts to connect at all (authentication, TLS, settings): it
    /// would fail the same way on every broker and every retry.
    pub fn ends_connect_attempts(&self) -> bool {
        matches!(
            self,
            Error::Authentication { .. } | Error::Tls { .. } | Error::InvalidArgument(_)
        )
    }

    /// The `kafka-protocol` error, if the broker sent one (crate-internal matching).
    pub(crate) fn protocol_error(&self) -> Option<ResponseError> {
        self.kafka_error().map(ErrorCode::protocol)
    }

    /// The broker's numeric error code, known to this crate or not
    /// ([`Error::Broker`] or [`Error::UnknownBrokerError`]); `None` for every other error.
    pub fn error_code(&self) -> Option<i16> {
        match self {
            Error::Broker { error, .. } => Some(error.code()),
            Error::UnknownBrokerError { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The Kafka error code, if the broker sent one.
    pub fn kafka_error(&self) -> Option<ErrorCode> {
        match self {
            Error::Broker { error, .. } => Some(*error),
            _ => None,
        }
    }
}

/// Turns a response error code into `Ok(())` or a [`Error::Broker`] with context.
pub(crate) fn check_code(
    code: i16,
    broker: &str,
    api: ProtocolApiKey,
    context: impl FnOnce() -> String,
) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    match ErrorCode::from_code(code) {
        Some(error) => Err(Error::Broker {
            broker: broker.to_string(),
            api: ApiKey::of(api),
            error,
            context: context(),
        }),
        None => Err(Error::UnknownBrokerError {
            broker: broker.to_string(),
            api: ApiKey::of(api),
            code,
            context: context(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(error: ResponseError) -> Error {
        Error::Broker {
            broker: "b:1".into(),
            api: ApiKey::FETCH,
            error: ErrorCode::of(error),
            context: String::new(),
        }
    }

    #[test]
    fn every_known_code_has_one_recovery() {
        use ResponseError as E;
        let cases = [
            (E::NotLeaderOrFollower, Recovery::RefreshMetadata),
            (E::UnknownTopicOrPartition, Recovery::RefreshMetadata),
            (E::FencedLeaderEpoch, Recovery::RefreshMetadata),
            (E::NotCoordinator, Recovery::RefreshMetadata),
            (E::RequestTimedOut, Recovery::Backoff),
            (E::CoordinatorLoadInProgress, Recovery::Backoff),
            (E::NotEnoughReplicas, Recovery::Backoff),
            (E::RebalanceInProgress, Recovery::Rejoin),
            (E::UnknownMemberId, Recovery::Rejoin),
            (E::OffsetOutOfRange, Recovery::ResetOffset),
            (E::TopicAuthorizationFailed, Recovery::Fatal),
            (E::InvalidTopicException, Recovery::Fatal),
            (E::FencedInstanceId, Recovery::Fatal),
        ];
        for (code, want) in cases {
            assert_eq!(classify(ErrorCode::of(code)), want, "{code:?}");
            let e = broker(code);
            assert_eq!(e.recovery(), want, "{code:?}");
            assert_eq!(
                e.is_retriable(),
                matches!(want, Recovery::RefreshMetadata | Recovery::Backoff),
                "{code:?}"
            );
            assert_eq!(
                e.invalidates_metadata(),
                want == Recovery::RefreshMetadata,
                "{code:?}"
            );
        }
        // Every code the crate knows is classified without a panic, and the retriable ones
        // are never fatal.
        for code in -1..=130i16 {
            if let Some(e) = ResponseError::try_from_code(code) {
                if e.is_retriable() {
                    assert_ne!(classify(ErrorCode::of(e)), Recovery::Fatal, "{e:?}");
                }
            }
        }
        let timeout = Error::Timeout {
            broker: "b:1".into(),
            api: ApiKey::METADATA,
            after: Duration::from_secs(1),
        };
        assert_eq!(timeout.recovery(), Recovery::RefreshMetadata);
        let outage = Error::BootstrapUnreachable {
            addrs: "b:1".into(),
            timeout: Duration::from_secs(1),
            reason: "connection refused".into(),
        };
        assert!(
            outage.is_retriable(),
            "every broker down is an outage, not the end"
        );
        let unknown = Error::UnknownBrokerError {
            broker: "b:1".into(),
            api: ApiKey::FETCH,
            code: 9999,
            context: String::new(),
        };
        assert_eq!(unknown.recovery(), Recovery::Fatal);
        // The numeric code is there for known and unknown codes alike.
        assert_eq!(unknown.error_code(), Some(9999));
        assert_eq!(unknown.kafka_error(), None);
        assert_eq!(broker(ResponseError::InvalidConfig).error_code(), Some(40));
    }

    /// Our own keys and codes carry the protocol guide's numbers.
    #[test]
    fn api_keys_and_error_codes_have_the_protocol_numbers() {
        for (key, n) in [
            (ApiKey::PRODUCE, 0),
            (ApiKey::FETCH, 1),
            (ApiKey::JOIN_GROUP, 11),
            (ApiKey::CREATE_TOPICS, 19),
            (ApiKey::DESCRIBE_CONFIGS, 32),
            (ApiKey::CREATE_PARTITIONS, 37),
        ] {
            assert_eq!(key.key(), n, "{key}");
            assert_eq!(ApiKey::from_key(n), Some(key));
        }
        assert_eq!(ApiKey::from_key(-5), None);
        for (code, n) in [
            (ErrorCode::UNKNOWN_SERVER_ERROR, -1),
            (ErrorCode::NOT_LEADER_OR_FOLLOWER, 6),
            (ErrorCode::UNSUPPORTED_VERSION, 35),
            (ErrorCode::INVALID_CONFIG, 40),
            (ErrorCode::FETCH_SESSION_ID_NOT_FOUND, 70),
            (ErrorCode::PRODUCER_FENCED, 90),
        ] {
            assert_eq!(code.code(), n, "{code}");
            assert_eq!(ErrorCode::from_code(n), Some(code));
        }
    }
}
