//! One module per `krpc` subcommand.

pub mod bench;
pub mod call;
pub mod consume;
pub mod dlq;
pub mod groups;
pub mod produce;
pub mod serve;
pub mod status;
pub mod topics;
pub mod wire_demo;

/// Errors of a command, printed as one line.
pub type CmdResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
