//! Record batch compression in pure Rust: gzip (flate2/miniz), snappy (snap, xerial framing as
//! Java writes it), lz4 (lz4_flex frame format), zstd (ruzstd). The zstd decoder is complete;
//! ruzstd's encoder has only its fastest level (about zstd level 1), so a zstd batch written here
//! is larger than one librdkafka or Java writes at their default level 3, and any reader decodes
//! it.
//!
//! Decompression is bounded: a batch may not inflate past a limit, so a hostile or corrupt
//! batch cannot make us allocate gigabytes.

use std::io::{Read, Write};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Snappy};
use kafka_protocol::records::Compression;

/// The codecs a producer can use.
///
/// In a config file (feature `serde`): `none`, `gzip`, `snappy`, `lz4` or `zstd`, the values of
/// Java's `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Codec {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// snappy (xerial framing, as the Java client writes it).
    Snappy,
    /// lz4 frame format.
    Lz4,
    /// zstd (KIP-110, brokers 2.1+; Produce v7+), written at ruzstd's fastest level: its encoder
    /// has no other (Java's `compression.zstd.level` default is 3; there is no such setting here).
    Zstd,
}

impl Codec {
    /// Every codec this build can write.
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    /// The protocol's compression attribute for this codec.
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    pub(crate) fn to_protocol(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }

    /// The name Kafka configuration uses (`compression.type`).
    pub fn name(self) -> &'static str {
        codec_name(self.to_protocol())
    }
}

impl std::str::FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Codec::None),
            "gzip" => Ok(Codec::Gzip),
            "snappy" => Ok(Codec::Snappy),
            "lz4" => Ok(Codec::Lz4),
            "zstd" => Ok(Codec::Zstd),
            other => Err(format!(
                "unknown codec {other:?} (none, gzip, snappy, lz4, zstd)"
            )),
        }
    }
}

/// The codec that attribute bits 0-2 of a record batch (or an old-format message) name, in
/// the protocol's numbering: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd; `None` for any other.
pub(crate) fn from_attribute(codec: u8) -> Option<Compression> {
    match codec {
        0 => Some(Compression::None),
        1 => Some(Compression::Gzip),
        2 => Some(Compression::Snappy),
        3 => Some(Compression::Lz4),
        4 => Some(Compression::Zstd),
        _ => None,
    }
}

/// The configuration name of a protocol compression attribute.
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) fn codec_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

/// Why a batch could not be decompressed.
#[derive(Debug, thiserror::Error)]
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) enum DecompressError {
    /// The data is corrupt or inflates past the limit.
    #[error("{codec}: {reason}")]
    Corrupt {
        /// Codec name.
        codec: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// Compresses `raw` with `codec`, appending to `out`.
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) fn compress(codec: Compression, raw: &[u8], out: &mut BytesMut) -> anyhow::Result<()> {
    match codec {
        Compression::None => out.put_slice(raw),
        Compression::Gzip => Gzip::compress(out, |tmp: &mut BytesMut| {
            tmp.put_slice(raw);
            Ok(())
        })?,
        Compression::Snappy => Snappy::compress(out, |tmp: &mut BytesMut| {
            tmp.put_slice(raw);
            Ok(())
        })?,
        Compression::Lz4 => {
            // Independent blocks: the Java client's lz4 reader refuses dependent ones.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out.writer());
            enc.write_all(raw)?;
            enc.finish()?;
        }
        Compression::Zstd => {
            // ruzstd's only implemented level; the others panic (unimplemented) in 0.9.
            ruzstd::encoding::compress(
                raw,
                out.writer(),
                ruzstd::encoding::CompressionLevel::Fastest,
            )
        }
    }
    Ok(())
}

/// Decompresses `data` written with `codec`, refusing to produce more than `limit` bytes.
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) fn decompress(
    codec: Compression,
    data: &[u8],
    limit: usize,
) -> Result<Bytes, DecompressError> {
    let name = codec_name(codec);
    let corrupt = |reason: String| DecompressError::Corrupt {
        codec: name,
        reason,
    };
    let mut out = Vec::new();
    match codec {
        Compression::None => out.extend_from_slice(data),
        Compression::Gzip => {
            read_bounded(flate2::read::GzDecoder::new(data), limit, &mut out).map_err(corrupt)?
        }
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(data), limit, &mut out)
            .map_err(corrupt)?,
        Compression::Snappy => snappy_decompress(data, limit, &mut out).map_err(corrupt)?,
        Compression::Zstd => zstd_decompress(data, limit, &mut out).map_err(corrupt)?,
    }
    if out.len() > limit {
        return Err(corrupt(format!("inflates past the limit of {limit} bytes")));
    }
    Ok(out.into())
}

fn read_bounded(reader: impl Read, limit: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let mut bounded = reader.take(limit as u64 + 1);
    bounded.read_to_end(out).map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(format!("inflates past the limit of {limit} bytes"));
    }
    Ok(())
}

/// One or more concatenated zstd frames (as zstd-jni's stream reader accepts), bounded by
/// `limit` bytes of output; the window is capped at ruzstd's default maximum.
fn zstd_decompress(data: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let mut input = data;
    while !input.is_empty() {
        let decoder =
            ruzstd::decoding::StreamingDecoder::new(&mut input).map_err(|e| e.to_string())?;
        let room = limit.saturating_sub(out.len());
        read_bounded_into(decoder, room, out)?;
    }
    Ok(())
}

/// Appends what `reader` yields to `out`, refusing more than `room` new bytes.
fn read_bounded_into(reader: impl Read, room: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    reader
        .take(room as u64 + 1)
        .read_to_end(out)
        .map_err(|e| e.to_string())?;
    if out.len() - start > room {
        return Err(format!("inflates past the limit of {} bytes", start + room));
    }
    Ok(())
}

/// The xerial snappy framing (magic header, then length-prefixed raw snappy blocks), or a raw
/// snappy block when the magic is absent, as the Java client accepts.
///
/// Written here rather than using `kafka_protocol::compression::Snappy` because that decoder
/// allocates whatever size a block header claims (up to 4 GiB) before checking anything.
fn snappy_decompress(data: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), String> {
    const MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const HEADER_LEN: usize = 16;
    let raw_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), String> {
        let len = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
        if out.len().saturating_add(len) > limit {
            return Err(format!("inflates past the limit of {limit} bytes"));
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    if !data.starts_with(MAGIC) {
        return raw_block(data, out);
    }
    let mut rest = data.get(HEADER_LEN..).ok_or("truncated xerial header")?;
    while rest.has_remaining() {
        if rest.len() < 4 {
            return Err("truncated block length".into());
        }
        let len = rest.get_u32() as usize;
        let block = rest
            .get(..len)
            .ok_or_else(|| format!("block of {len} bytes is truncated"))?;
        raw_block(block, out)?;
        rest = &rest[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let raw: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in Codec::ALL {
            let mut out = BytesMut::new();
            compress(codec.to_protocol(), &raw, &mut out).unwrap();
            let back = decompress(codec.to_protocol(), &out, raw.len()).unwrap();
            assert_eq!(&back[..], &raw[..], "{codec:?}");
        }
    }

    #[test]
    fn inflation_past_the_limit_is_refused() {
        let raw = vec![0u8; 1 << 20];
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let mut out = BytesMut::new();
            compress(codec.to_protocol(), &raw, &mut out).unwrap();
            let err = decompress(codec.to_protocol(), &out, 1000).unwrap_err();
            assert!(err.to_string().contains("limit"), "{codec:?}: {err}");
        }
    }

    #[test]
    fn zstd_garbage_and_truncation_are_corrupt_errors() {
        assert!(matches!(
            decompress(Compression::Zstd, b"x", 10),
            Err(DecompressError::Corrupt { codec: "zstd", .. })
        ));
        let mut out = BytesMut::new();
        compress(Compression::Zstd, &[7u8; 5000], &mut out).unwrap();
        let cut = &out[..out.len() - 3];
        assert!(decompress(Compression::Zstd, cut, 1 << 20).is_err());
    }

    #[test]
    fn zstd_concatenated_frames_decode_as_one_stream() {
        let mut out = BytesMut::new();
        compress(Compression::Zstd, b"hello ", &mut out).unwrap();
        compress(Compression::Zstd, b"world", &mut out).unwrap();
        let back = decompress(Compression::Zstd, &out, 100).unwrap();
        assert_eq!(&back[..], b"hello world");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
            assert!(decompress(codec, b"\x82SNAPPY\x00garbage-garbage-garbage", 1 << 20).is_err());
        }
    }
}
