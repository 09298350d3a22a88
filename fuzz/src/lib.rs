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
/// kafka-wire decodes today, then the consumer-group ones.
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

/// Rewrites the CRC of every complete v2 batch in `data` (walking the batches as
/// `kafka_wire::records::decode_batches` does) so the fuzzer's mutations reach the record
/// decoding behind the checksum. Returns whether any byte changed.
pub fn fix_batch_crcs(data: &mut [u8]) -> bool {
    const CRC_AT: usize = 17; // base offset 8, length 4, leader epoch 4, magic 1
    const CRC_FROM: usize = CRC_AT + 4;
    let mut changed = false;
    let mut at = 0;
    while data.len() - at >= 12 {
        let len = i32::from_be_bytes(data[at + 8..at + 12].try_into().expect("4 bytes"));
        if len < (61 - 12) {
            break;
        }
        let total = 12 + len as usize;
        if data.len() - at < total {
            break;
        }
        let batch = &mut data[at..at + total];
        let crc = crc32c(&batch[CRC_FROM..]).to_be_bytes();
        if batch[CRC_AT..CRC_FROM] != crc {
            batch[CRC_AT..CRC_FROM].copy_from_slice(&crc);
            changed = true;
        }
        at += total;
    }
    changed
}
