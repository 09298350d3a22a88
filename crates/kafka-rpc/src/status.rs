//! Status codes of replies: gRPC's canonical codes, the subset a call over Kafka can meet.

/// Why a call did not return a value (or `Ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusCode {
    /// The handler returned a value.
    Ok,
    /// The handler failed with an error of its own.
    Unknown,
    /// The arguments could not be decoded into the method's parameter types.
    InvalidArgument,
    /// The deadline passed before the reply came: reported by the client when its timeout
    /// elapses, and sent by a server whose handler was still running at the deadline (it is
    /// cancelled). A server that sees an already expired request does not run it and sends
    /// nothing, since the caller has given up.
    DeadlineExceeded,
    /// The request exceeds the server's size limit.
    ResourceExhausted,
    /// The request is well formed but cannot be served in the state it asks for.
    FailedPrecondition,
    /// The service has no method of that name.
    Unimplemented,
    /// The handler panicked, or the server failed to encode the result.
    Internal,
    /// No server answered (the client side: a broker or transport failure).
    Unavailable,
    /// The request did not carry what the wire format requires (headers, version).
    DataLoss,
    /// The payload's authentication failed (payload security, not built yet).
    Unauthenticated,
}

impl StatusCode {
    /// Every code, for tables and tests.
    pub const ALL: [StatusCode; 11] = [
        StatusCode::Ok,
        StatusCode::Unknown,
        StatusCode::InvalidArgument,
        StatusCode::DeadlineExceeded,
        StatusCode::ResourceExhausted,
        StatusCode::FailedPrecondition,
        StatusCode::Unimplemented,
        StatusCode::Internal,
        StatusCode::Unavailable,
        StatusCode::DataLoss,
        StatusCode::Unauthenticated,
    ];

    /// The number on the wire (gRPC's numbering).
    pub fn code(self) -> u16 {
        match self {
            StatusCode::Ok => 0,
            StatusCode::Unknown => 2,
            StatusCode::InvalidArgument => 3,
            StatusCode::DeadlineExceeded => 4,
            StatusCode::ResourceExhausted => 8,
            StatusCode::FailedPrecondition => 9,
            StatusCode::Unimplemented => 12,
            StatusCode::Internal => 13,
            StatusCode::Unavailable => 14,
            StatusCode::DataLoss => 15,
            StatusCode::Unauthenticated => 16,
        }
    }

    /// The code with this wire number; an unknown number reads as `Unknown`.
    pub fn from_code(code: u16) -> Self {
        Self::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .unwrap_or(StatusCode::Unknown)
    }

    /// The gRPC name, e.g. `INVALID_ARGUMENT`.
    pub fn name(self) -> &'static str {
        match self {
            StatusCode::Ok => "OK",
            StatusCode::Unknown => "UNKNOWN",
            StatusCode::InvalidArgument => "INVALID_ARGUMENT",
            StatusCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            StatusCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            StatusCode::FailedPrecondition => "FAILED_PRECONDITION",
            StatusCode::Unimplemented => "UNIMPLEMENTED",
            StatusCode::Internal => "INTERNAL",
            StatusCode::Unavailable => "UNAVAILABLE",
            StatusCode::DataLoss => "DATA_LOSS",
            StatusCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl std::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_numbers_read_as_unknown() {
        for c in StatusCode::ALL {
            assert_eq!(StatusCode::from_code(c.code()), c);
        }
        assert_eq!(StatusCode::from_code(999), StatusCode::Unknown);
    }
}
