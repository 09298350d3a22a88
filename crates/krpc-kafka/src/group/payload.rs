//! The consumer protocol's member metadata (subscription) and assignment payloads, which ride
//! as opaque bytes in JoinGroup and SyncGroup. Each starts with a 2-byte version the
//! `kafka-protocol` crate does not write itself. We write version 0, which every client (Java,
//! librdkafka, kafka-python) reads; we read any version, decoding a newer one as the newest we
//! know, since later versions only append fields.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// What a member subscribes to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// Topic names.
    pub topics: Vec<String>,
    /// Opaque assignor data.
    pub user_data: Option<Bytes>,
}

/// Partitions given to one member: topic to partition ids (sorted).
pub type Assignment = BTreeMap<String, Vec<i32>>;

/// Why a payload could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed consumer-protocol {what}: {reason}")]
pub struct PayloadError {
    what: &'static str,
    reason: String,
}

fn read_version(buf: &mut Bytes, what: &'static str, max: i16) -> Result<i16, PayloadError> {
    if buf.remaining() < 2 {
        return Err(PayloadError {
            what,
            reason: "shorter than its version prefix".into(),
        });
    }
    let v = buf.get_i16();
    if v < 0 {
        return Err(PayloadError {
            what,
            reason: format!("negative version {v}"),
        });
    }
    Ok(v.min(max))
}

/// Encodes a subscription (version 0).
pub fn encode_subscription(sub: &Subscription) -> Bytes {
    let msg = ConsumerProtocolSubscription::default()
        .with_topics(
            sub.topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_user_data(sub.user_data.clone());
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    msg.encode(&mut buf, 0)
        .expect("a v0 subscription always encodes");
    buf.freeze()
}

/// Decodes a subscription of any version.
pub fn decode_subscription(mut data: Bytes) -> Result<Subscription, PayloadError> {
    let what = "subscription";
    let v = read_version(&mut data, what, ConsumerProtocolSubscription::VERSIONS.max)?;
    let msg = ConsumerProtocolSubscription::decode(&mut data, v).map_err(|e| PayloadError {
        what,
        reason: format!("{e:#}"),
    })?;
    Ok(Subscription {
        topics: msg.topics.iter().map(|t| t.to_string()).collect(),
        user_data: msg.user_data,
    })
}

/// Encodes an assignment (version 0).
pub fn encode_assignment(assignment: &Assignment) -> Bytes {
    let msg = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .map(|(t, ps)| {
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.clone())))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    msg.encode(&mut buf, 0)
        .expect("a v0 assignment always encodes");
    buf.freeze()
}

/// Decodes an assignment of any version; empty bytes (a member given nothing) is empty.
pub fn decode_assignment(mut data: Bytes) -> Result<Assignment, PayloadError> {
    if data.is_empty() {
        return Ok(Assignment::new());
    }
    let what = "assignment";
    let v = read_version(&mut data, what, ConsumerProtocolAssignment::VERSIONS.max)?;
    let msg = ConsumerProtocolAssignment::decode(&mut data, v).map_err(|e| PayloadError {
        what,
        reason: format!("{e:#}"),
    })?;
    let mut out = Assignment::new();
    for t in msg.assigned_partitions {
        let parts = out.entry(t.topic.0.to_string()).or_default();
        parts.extend(t.partitions);
        parts.sort_unstable();
        parts.dedup();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let sub = Subscription {
            topics: vec!["a".into(), "b".into()],
            user_data: Some(Bytes::from_static(b"u")),
        };
        assert_eq!(decode_subscription(encode_subscription(&sub)).unwrap(), sub);
        let mut a = Assignment::new();
        a.insert("a".into(), vec![0, 2]);
        a.insert("b".into(), vec![1]);
        assert_eq!(decode_assignment(encode_assignment(&a)).unwrap(), a);
    }

    /// Bytes as the Java client writes a v0 subscription to ["t"] with no user data.
    #[test]
    fn reads_the_java_v0_layout() {
        let java = [0u8, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff];
        let sub = decode_subscription(Bytes::copy_from_slice(&java)).unwrap();
        assert_eq!(sub.topics, vec!["t".to_string()]);
        assert_eq!(sub.user_data, None);
        assert_eq!(&encode_subscription(&sub)[..], &java[..]);
    }

    #[test]
    fn a_newer_version_with_appended_fields_is_read() {
        // v9 (unknown to us) = v3 layout: topics, user_data, owned_partitions, generation, rack.
        let mut b = BytesMut::new();
        b.put_i16(9);
        b.put_i32(1);
        b.put_i16(1);
        b.put_u8(b't');
        b.put_i32(-1); // user data null
        b.put_i32(0); // owned partitions
        b.put_i32(5); // generation
        b.put_i16(-1); // rack null
        assert_eq!(
            decode_subscription(b.freeze()).unwrap().topics,
            vec!["t".to_string()]
        );
    }

    #[test]
    fn garbage_is_an_error() {
        for junk in [&b""[..], b"\x00", b"\xff\xff", b"\x00\x00\x7f\xff\xff\xff"] {
            assert!(
                decode_subscription(Bytes::copy_from_slice(junk)).is_err(),
                "{junk:?}"
            );
        }
        assert!(decode_assignment(Bytes::from_static(b"\x00\x00\x00\x00\x00\x09")).is_err());
    }
}
