//! What a member knows of its group, shared by the consumer, its join job and its heartbeats.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::error::ResponseError;

use super::coordinator;
use crate::client::{Client, Lane};
use crate::connection::Connection;
use crate::error::{Error, Result};

/// Membership as of the last join.
#[derive(Debug, Default)]
pub(super) struct Member {
    /// The coordinator's address, once found.
    pub coordinator: Option<String>,
    /// Our member id (empty before the first join or after UNKNOWN_MEMBER_ID).
    pub member_id: String,
    /// Our generation (-1 before the first join).
    pub generation: i32,
    /// Heartbeats are sent only between a completed sync and the next rebalance.
    pub stable: bool,
}

/// Membership plus the "must rejoin" flag.
pub(super) struct Shared {
    member: Mutex<Member>,
    /// Set when the group rebalances or our membership is lost.
    pub rejoin: AtomicBool,
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

    /// Reacts to an error from the coordinator; returns true if it means "rejoin".
    pub fn on_coordinator_error(&self, e: &Error) -> bool {
        let mut m = self.member();
        let rejoin = match e.kafka_error() {
            Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => true,
            Some(ResponseError::UnknownMemberId | ResponseError::FencedInstanceId) => {
                m.member_id.clear();
                true
            }
            Some(
                ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress,
            ) => {
                m.coordinator = None;
                true
            }
            _ => {
                if matches!(
                    e,
                    Error::ConnectionBroken { .. } | Error::Connect { .. } | Error::Timeout { .. }
                ) {
                    m.coordinator = None;
                }
                false
            }
        };
        if rejoin {
            m.stable = false;
            self.set_rejoin(true);
        }
        rejoin
    }

    /// A connection to the group's coordinator, finding it first if needed.
    pub async fn coordinator(
        self: &Arc<Self>,
        client: &Client,
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
