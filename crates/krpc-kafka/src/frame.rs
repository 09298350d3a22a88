//! Kafka's size-prefixed framing, via `tokio-util`'s length-delimited codec.

use tokio_util::codec::LengthDelimitedCodec;

/// A codec for 4-byte big-endian size-prefixed frames no larger than `max_frame_bytes`.
///
/// A negative size reads as a huge unsigned one and is refused like any oversize frame; the
/// connection is then dropped, so the stream never has to be re-aligned.
pub fn codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(max_frame_bytes)
        .new_codec()
}
