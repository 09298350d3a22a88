//! The names the Python kafka-rpc 1.0.8 uses: one request and one reply topic per service, and
//! one consumer group for everything.

/// The topic Python servers of `name` consume: `krpc_<name>_server`.
pub fn server_topic(name: &str) -> String {
    format!("krpc_{name}_server")
}

/// The topic Python servers of `name` reply on: `krpc_<name>_client`.
pub fn client_topic(name: &str) -> String {
    format!("krpc_{name}_client")
}

/// Where our server records the requests it answered (the dedup window survives crashes).
pub fn completions_topic(name: &str) -> String {
    format!("krpc_{name}_completed")
}

/// Where our server puts the requests it cannot serve.
pub fn dead_letter_topic(name: &str) -> String {
    format!("krpc_{name}_dead_letters")
}

/// The consumer group every Python client and server joins. A Rust server that must share the
/// load with Python servers joins it too (a group of its own would run every request twice).
pub const PYTHON_GROUP: &str = "krpc";

/// Partitions the Python server creates its topics with.
pub const PYTHON_PARTITIONS: i32 = 64;

/// Key (and value) of the handshake record a Python client sends and expects back.
pub const HANDSHAKE: &[u8] = b"handshake";

/// Checks a legacy service name: 1 to 200 characters legal in a Kafka topic name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "legacy service name {name:?} must be 1 to 200 characters of A-Z a-z 0-9 . _ -"
        ))
    }
}
