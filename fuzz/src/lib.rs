//! Helpers shared by the fuzz targets and the seed generator (`examples/gen_seeds.rs`).

use kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, FetchRequest, FindCoordinatorRequest,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::Request;
use kafka_protocol::records::Compression;

/// Something done with one request type, chosen at run time by [`with_api`].
pub trait ApiVisitor {
    /// What the visit returns.
    type Output;
    /// Visits request type `R` (whose response is `R::Response`).
    fn visit<R>(self) -> Self::Output
    where
        R: Request,
        R::Response: Default;
}

/// How many request types [`with_api`] chooses among.
pub const API_COUNT: u8 = 13;

/// Calls `v.visit::<R>()` for the request type numbered `selector % API_COUNT`: the responses
/// krpc-kafka decodes today, then the consumer-group ones.
pub fn with_api<V: ApiVisitor>(selector: u8, v: V) -> V::Output {
    match selector % API_COUNT {
        0 => v.visit::<ApiVersionsRequest>(),
        1 => v.visit::<MetadataRequest>(),
        2 => v.visit::<ProduceRequest>(),
        3 => v.visit::<FetchRequest>(),
        4 => v.visit::<ListOffsetsRequest>(),
        5 => v.visit::<CreateTopicsRequest>(),
        6 => v.visit::<FindCoordinatorRequest>(),
        7 => v.visit::<JoinGroupRequest>(),
        8 => v.visit::<SyncGroupRequest>(),
        9 => v.visit::<HeartbeatRequest>(),
        10 => v.visit::<LeaveGroupRequest>(),
        11 => v.visit::<OffsetCommitRequest>(),
        _ => v.visit::<OffsetFetchRequest>(),
    }
}

/// The version of `R` that `selector` picks: `R::VERSIONS.min + selector % (range size)`.
pub fn pick_version<R: Request>(selector: u8) -> i16 {
    let range = R::VERSIONS;
    let span = (range.max - range.min + 1).max(1) as u16;
    range.min + (selector as u16 % span) as i16
}

/// The codec the `decompress` target picks from its first byte.
pub fn pick_codec(selector: u8) -> Compression {
    match selector % 5 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        _ => Compression::Zstd,
    }
}

/// The maximum frame size the `frames` target picks from its first byte: 1 B to 1 MiB.
pub fn pick_max_frame(selector: u8) -> usize {
    1 << (selector % 21)
}

/// CRC-32C (Castagnoli), as a v2 record batch's checksum uses.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// CRC-32 (IEEE), as an old-format (magic 0 and 1) message's checksum uses.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Rewrites the checksum of every complete entry in `data` (walking the entries as
/// `krpc_kafka::records::decode_batches` does): CRC-32C of a v2 batch, CRC-32 of an old-format
/// (magic 0/1) message, so the fuzzer's mutations reach the decoding behind the checksums.
/// Returns whether any byte changed.
pub fn fix_batch_crcs(data: &mut [u8]) -> bool {
    const MAGIC_AT: usize = 16; // base offset 8, length 4, leader epoch or legacy CRC 4
    let mut changed = false;
    let mut at = 0;
    while data.len() - at >= 12 {
        let len = i32::from_be_bytes(data[at + 8..at + 12].try_into().expect("4 bytes"));
        if len < 0 {
            break;
        }
        let total = 12 + len as usize;
        if data.len() - at < total {
            break;
        }
        let entry = &mut data[at..at + total];
        let (crc_at, crc) = match entry.get(MAGIC_AT) {
            // v2: CRC-32C at 17..21 over the attributes onwards.
            Some(2) if total >= 61 => (17, crc32c(&entry[21..])),
            // v0/v1: CRC-32 at 12..16 over the magic onwards.
            Some(0 | 1) => (12, crc32(&entry[MAGIC_AT..])),
            _ => {
                at += total;
                continue;
            }
        };
        let crc = crc.to_be_bytes();
        if entry[crc_at..crc_at + 4] != crc {
            entry[crc_at..crc_at + 4].copy_from_slice(&crc);
            changed = true;
        }
        at += total;
    }
    changed
}

/// One old-format message set entry (offset, size, CRC-32, magic, attributes, [timestamp for
/// magic 1], key, value) as a broker stores it.
pub fn legacy_entry(
    offset: i64,
    magic: u8,
    attributes: u8,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Vec<u8> {
    let mut body = vec![magic, attributes];
    if magic == 1 {
        body.extend_from_slice(&timestamp.to_be_bytes());
    }
    for field in [key, value] {
        match field {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                body.extend_from_slice(&(b.len() as i32).to_be_bytes());
                body.extend_from_slice(b);
            }
        }
    }
    let mut out = offset.to_be_bytes().to_vec();
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}
