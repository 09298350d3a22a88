//! The topic and group names kafka-rpc uses (wire/WIRE.md, "Topics").

/// The request topic of `service`: `krpc.<service>.requests`.
pub fn request_topic(service: &str) -> String {
    format!("krpc.{service}.requests")
}

/// The consumer group of the servers of `service`: `krpc.<service>.servers`.
pub fn server_group(service: &str) -> String {
    format!("krpc.{service}.servers")
}

/// The completions topic of `service`: `krpc.<service>.completed` (one record per answered
/// request, partitioned like the request topic; servers read it to deduplicate redeliveries).
pub fn completions_topic(service: &str) -> String {
    format!("krpc.{service}.completed")
}

/// The dead-letter topic of `service`: `krpc.<service>.dead-letters`.
pub fn dead_letter_topic(service: &str) -> String {
    format!("krpc.{service}.dead-letters")
}

/// The default shared reply topic.
pub const DEFAULT_REPLY_TOPIC: &str = "krpc.replies";

/// Checks a service name: 1 to 200 of `[A-Za-z0-9_-]`, so every derived name is a legal topic.
pub fn check_service(service: &str) -> Result<(), String> {
    let ok = !service.is_empty()
        && service.len() <= 200
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "service name {service:?} must be 1 to 200 characters of A-Z a-z 0-9 _ -"
        ))
    }
}
