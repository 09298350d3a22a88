//! `krpc`'s exit codes: what failed, in one place. A command returns its error; [`classify`]
//! reads the error (and its sources) by type and picks the code, so no command chooses a
//! number itself.

use std::error::Error as StdError;
use std::process::ExitCode;

/// The exit codes, as `krpc --help` and the README list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok = 0,
    /// 1: any other failure (a Kafka error the broker answered, bad data read, I/O ...).
    Other = 1,
    /// 2: the command line is wrong (clap's own errors use 2 as well).
    Usage = 2,
    /// 3: no broker could be reached, or the broker refused the TLS handshake or SASL login.
    Unreachable = 3,
    /// 4: an RPC got no reply in time (`call --timeout`).
    Timeout = 4,
    /// 5: the server answered the call with an error status (or the Python server raised).
    RemoteStatus = 5,
}

/// The text of `krpc --help` that lists the exit codes.
pub const HELP: &str = "\
Exit codes:
  0  done
  1  any other failure
  2  usage: the command line is wrong (unknown flag, bad value, missing --bootstrap, a bad
     --config file)
  3  unreachable: no broker reached in --connect-timeout, or TLS/SASL authentication refused
  4  timeout: the call got no reply within --timeout
  5  remote status: the server answered with an error status (printed on stderr)";

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A wrong command line found after parsing (a value clap cannot check, such as the JSON of
/// `call`'s arguments, or no bootstrap broker at all): exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for UsageError {}

/// The exit code of a command's error: the first error in its source chain whose type says
/// what failed decides; an error of no known type is [`Exit::Other`].
pub fn classify(error: &(dyn StdError + 'static)) -> Exit {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<UsageError>() {
            return Exit::Usage;
        }
        if let Some(e) = e.downcast_ref::<kafka_rpc::RpcError>() {
            use kafka_rpc::RpcError as R;
            match e {
                R::Timeout { .. } => return Exit::Timeout,
                R::Status { .. } | R::Remote { .. } => return Exit::RemoteStatus,
                R::InvalidArgument(_) => return Exit::Usage,
                // Its source is the krpc_kafka::Error, read on the next round.
                R::Kafka { .. } => {}
                _ => return Exit::Other,
            }
        }
        if let Some(e) = e.downcast_ref::<krpc_kafka::Error>() {
            use krpc_kafka::Error as K;
            return match e {
                K::BootstrapUnreachable { .. }
                | K::Connect { .. }
                | K::Authentication { .. }
                | K::Tls { .. } => Exit::Unreachable,
                K::InvalidArgument(_) => Exit::Usage,
                _ => Exit::Other,
            };
        }
        next = e.source();
    }
    Exit::Other
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn boxed(e: impl StdError + Send + Sync + 'static) -> Box<dyn StdError + Send + Sync> {
        Box::new(e)
    }

    #[test]
    fn errors_map_to_their_exit_codes() {
        let timeout = kafka_rpc::RpcError::Timeout {
            service: "S".into(),
            method: "m".into(),
            request_id: "r".into(),
            timeout: Duration::from_secs(1),
            stored: true,
        };
        assert_eq!(classify(boxed(timeout).as_ref()), Exit::Timeout);
        let unreachable = krpc_kafka::Error::BootstrapUnreachable {
            addrs: "127.0.0.1:1".into(),
            timeout: Duration::from_secs(1),
            reason: "refused".into(),
        };
        assert_eq!(classify(boxed(unreachable).as_ref()), Exit::Unreachable);
        let wrapped = kafka_rpc::RpcError::Kafka {
            context: "connect".into(),
            source: krpc_kafka::Error::Connect {
                broker: "127.0.0.1:1".into(),
                reason: "refused".into(),
            },
        };
        assert_eq!(classify(boxed(wrapped).as_ref()), Exit::Unreachable);
        assert_eq!(
            classify(boxed(UsageError("bad".into())).as_ref()),
            Exit::Usage
        );
        let other: Box<dyn StdError + Send + Sync> = "something".into();
        assert_eq!(classify(other.as_ref()), Exit::Other);
    }
}
