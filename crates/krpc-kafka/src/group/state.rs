//! What a member knows of its group, shared by the consumer, its join job and its heartbeats,
//! and the one place that decides what a member does about each group error code.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::error::ResponseError;

use super::coordinator;
use crate::client::{KafkaClient, Lane};
use crate::connection::Connection;
use crate::error::{Error, Recovery, Result};

/// Membership as of the last join.
#[derive(Debug, Default)]
pub(super) struct Member {
    /// The coordinator's address, once found.
    pub coordinator: Option<String>,
    /// Our member id (empty before the first join or after UNKNOWN_MEMBER_ID).
    pub member_id: String,
    /// Our generation (-1 before the first join or after ILLEGAL_GENERATION).
    pub generation: i32,
    /// A JoinGroup or SyncGroup of ours is in flight. The coordinator counts a member waiting
    /// in a join or a sync as alive, and the request holds our coordinator connection, so
    /// heartbeats pause meanwhile. In every other phase (stable, rebalance announced, the
    /// caller finishing revoked work) a member with a generation heartbeats (KIP-62).
    pub in_join: bool,
}

impl Member {
    /// Whether heartbeats are due: we hold a generation and no join or sync is in flight.
    pub fn heartbeats(&self) -> bool {
        !self.member_id.is_empty() && self.generation >= 0 && !self.in_join
    }
}

/// What a member does about an error from its coordinator. The classification follows the
/// Java consumer's (`AbstractCoordinator`'s JoinGroup, SyncGroup and Heartbeat handlers and
/// `ConsumerCoordinator`'s OffsetCommit handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reaction {
    /// The group is rebalancing (REBALANCE_IN_PROGRESS): keep our member id and generation
    /// (heartbeats go on and keep the session alive) and rejoin at the next poll.
    Rejoin,
    /// Our generation is gone (ILLEGAL_GENERATION): rejoin with our member id.
    ResetGeneration,
    /// We are no longer a member (UNKNOWN_MEMBER_ID): rejoin as a new member.
    ResetMember,
    /// The coordinator moved or is gone (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, or its
    /// connection failed): find it again and retry; the membership itself still stands.
    /// (COORDINATOR_LOAD_IN_PROGRESS is [`Reaction::Other`]: the same coordinator, after a
    /// backoff.)
    Rediscover,
    /// The member cannot go on (FENCED_INSTANCE_ID: another process uses our static id;
    /// GROUP_AUTHORIZATION_FAILED, INVALID_SESSION_TIMEOUT, INCONSISTENT_GROUP_PROTOCOL,
    /// INVALID_GROUP_ID, GROUP_MAX_SIZE_REACHED, UNSUPPORTED_VERSION): the next poll returns
    /// the error.
    Fatal,
    /// Anything else: retried (with backoff) if the error is retriable, else the caller's.
    Other,
}

/// The reaction to `e` (see [`Reaction`]), refined from the one classification of every
/// error, [`Error::recovery`]: a group that moved on splits by code into rejoin, reset the
/// generation, or reset the member; a stale view of the cluster is, for a member, its
/// coordinator to find again; a fatal error ends the member only when it is about the group
/// itself (as the Java consumer's coordinator raises them), and is otherwise the caller's.
pub(super) fn classify(e: &Error) -> Reaction {
    let code = e.protocol_error();
    match e.recovery() {
        Recovery::Rejoin => match code {
            Some(ResponseError::IllegalGeneration) => Reaction::ResetGeneration,
            Some(ResponseError::UnknownMemberId) => Reaction::ResetMember,
            _ => Reaction::Rejoin,
        },
        Recovery::RefreshMetadata => Reaction::Rediscover,
        Recovery::Fatal
            if matches!(
                code,
                Some(
                    ResponseError::FencedInstanceId
                        | ResponseError::GroupAuthorizationFailed
                        | ResponseError::InvalidSessionTimeout
                        | ResponseError::InconsistentGroupProtocol
                        | ResponseError::InvalidGroupId
                        | ResponseError::GroupMaxSizeReached
                        | ResponseError::UnsupportedVersion
                )
            ) =>
        {
            Reaction::Fatal
        }
        _ => Reaction::Other,
    }
}

/// Membership plus the "must rejoin" flag.
pub(super) struct Shared {
    member: Mutex<Member>,
    /// Set when the group rebalances or our membership is lost.
    pub rejoin: AtomicBool,
    /// A fatal group error; the consumer's next poll returns it.
    fatal: Mutex<Option<Error>>,
    /// This member's own coordinator connection.
    pub lane: Lane,
}

impl Shared {
    /// A member that has not joined yet.
    pub fn new() -> Self {
        Self {
            member: Mutex::new(Member {
                generation: -1,
                ..Member::default()
            }),
            rejoin: AtomicBool::new(true),
            fatal: Mutex::new(None),
            lane: Lane::Coordinator(Lane::unique_id()),
        }
    }

    /// The membership, locked.
    pub fn member(&self) -> MutexGuard<'_, Member> {
        self.member.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a rejoin is needed.
    pub fn must_rejoin(&self) -> bool {
        self.rejoin.load(Ordering::SeqCst)
    }

    /// Marks that a rejoin is (or is no longer) needed.
    pub fn set_rejoin(&self, on: bool) {
        self.rejoin.store(on, Ordering::SeqCst);
    }

    /// The fatal error that ended this member, if any.
    pub fn fatal(&self) -> Option<Error> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reacts to an error from the coordinator (see [`classify`]) and returns the reaction.
    pub fn on_coordinator_error(&self, e: &Error) -> Reaction {
        let reaction = classify(e);
        let mut m = self.member();
        match reaction {
            Reaction::Rejoin => self.set_rejoin(true),
            Reaction::ResetGeneration => {
                m.generation = -1;
                self.set_rejoin(true);
            }
            Reaction::ResetMember => {
                m.member_id.clear();
                m.generation = -1;
                self.set_rejoin(true);
            }
            Reaction::Rediscover => m.coordinator = None,
            Reaction::Fatal => {
                tracing::error!(error = %e, "fatal consumer-group error: this member stops");
                m.generation = -1;
                *self.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
            }
            Reaction::Other => {}
        }
        reaction
    }

    /// A connection to the group's coordinator, finding it first if needed.
    pub async fn coordinator(
        self: &Arc<Self>,
        client: &KafkaClient,
        group: &str,
    ) -> Result<Arc<Connection>> {
        let known = self.member().coordinator.clone();
        let addr = match known {
            Some(a) => a,
            None => {
                let a = coordinator::find_coordinator(client, group).await?;
                self.member().coordinator = Some(a.clone());
                a
            }
        };
        client.connection(&addr, self.lane).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker_error(error: ResponseError) -> Error {
        Error::Broker {
            broker: "b".into(),
            api: crate::ApiKey::HEARTBEAT,
            error: crate::ErrorCode::of(error),
            context: String::new(),
        }
    }

    #[test]
    fn group_errors_are_classified_as_the_java_consumer_does() {
        use ResponseError as E;
        for (error, reaction) in [
            (E::RebalanceInProgress, Reaction::Rejoin),
            (E::IllegalGeneration, Reaction::ResetGeneration),
            (E::UnknownMemberId, Reaction::ResetMember),
            (E::NotCoordinator, Reaction::Rediscover),
            (E::CoordinatorNotAvailable, Reaction::Rediscover),
            (E::CoordinatorLoadInProgress, Reaction::Other),
            (E::FencedInstanceId, Reaction::Fatal),
            (E::GroupAuthorizationFailed, Reaction::Fatal),
            (E::InconsistentGroupProtocol, Reaction::Fatal),
            (E::UnknownServerError, Reaction::Other),
        ] {
            assert_eq!(classify(&broker_error(error)), reaction, "{error:?}");
        }
    }

    #[test]
    fn a_rebalance_keeps_the_membership_so_heartbeats_go_on() {
        let shared = Shared::new();
        {
            let mut m = shared.member();
            m.member_id = "m".into();
            m.generation = 3;
        }
        shared.set_rejoin(false);
        shared.on_coordinator_error(&broker_error(ResponseError::RebalanceInProgress));
        assert!(shared.must_rejoin());
        assert!(
            shared.member().heartbeats(),
            "heartbeats go on while the caller drains"
        );
        shared.on_coordinator_error(&broker_error(ResponseError::IllegalGeneration));
        assert!(!shared.member().heartbeats());
        assert_eq!(shared.member().member_id, "m");
        shared.on_coordinator_error(&broker_error(ResponseError::UnknownMemberId));
        assert!(shared.member().member_id.is_empty());
        assert!(shared.fatal().is_none());
        shared.on_coordinator_error(&broker_error(ResponseError::FencedInstanceId));
        assert!(shared.fatal().is_some());
    }
}
