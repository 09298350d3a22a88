//! Writes seed inputs for every fuzz target into `<dir>/<target>/seed-*` (default dir `corpus`):
//! valid record batches, compressed payloads, encoded responses and frames, so the fuzzer starts
//! past the checksums and length checks instead of having to discover them.
//!
//! Run with `cargo run --example gen_seeds -- corpus` from `fuzz/` (scripts/fuzz does).

use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::{Encodable, HeaderVersion, Request};
use krpc_kafka::records::{encode_batch, Header, ProducerRecord};
use krpc_kafka::Codec;
use krpc_kafka_fuzz::{with_api, ApiVisitor, API_COUNT};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn records() -> Vec<ProducerRecord> {
    vec![
        ProducerRecord::value("v0")
            .with_key("k0")
            .with_header("h", "x")
            .with_timestamp(1000),
        ProducerRecord {
            key: Some(Bytes::from_static(b"k1")),
            value: None,
            headers: vec![],
            timestamp: Some(1001),
        },
        ProducerRecord {
            key: None,
            value: Some(Bytes::from_static(
                b"a longer value, a longer value, a longer value",
            )),
            headers: vec![Header {
                key: "n".into(),
                value: None,
            }],
            timestamp: Some(999),
        },
    ]
}

/// Every response type at every version: a default body behind its response header.
struct Responses<'a> {
    dir: &'a Path,
    api_index: u8,
}

impl ApiVisitor for Responses<'_> {
    type Output = usize;
    fn visit<R>(self) -> usize
    where
        R: Request,
        R::Response: Default,
    {
        let mut written = 0;
        let range = R::VERSIONS;
        for version in range.min..=range.max {
            let header_version = if R::KEY == 18 {
                0
            } else {
                <R::Response as HeaderVersion>::header_version(version)
            };
            let mut frame = BytesMut::new();
            frame.put_u8(self.api_index);
            frame.put_u8((version - range.min) as u8);
            let header = ResponseHeader::default().with_correlation_id(7);
            if header.encode(&mut frame, header_version).is_err() {
                continue;
            }
            if R::Response::default().encode(&mut frame, version).is_err() {
                continue;
            }
            write(
                self.dir,
                "responses",
                &format!("api{}-v{version}", R::KEY),
                &frame,
            );
            // The same body as a frame for the framing target.
            let mut framed = BytesMut::new();
            framed.put_u8(20); // 1 MiB max frame
            framed.put_u32((frame.len() - 2) as u32);
            framed.put_slice(&frame[2..]);
            if version == range.max {
                write(
                    self.dir,
                    "frames",
                    &format!("api{}-v{version}", R::KEY),
                    &framed,
                );
            }
            written += 1;
        }
        written
    }
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));

    // record_batches: one batch per codec, two batches back to back, a control batch, and a
    // trailing partial batch.
    let mut all = BytesMut::new();
    for codec in Codec::ALL {
        let batch = encode_batch(&records(), codec, 0).expect("encode batch");
        write(&dir, "record_batches", codec.name(), &batch);
        all.extend_from_slice(&batch);
    }
    write(&dir, "record_batches", "all-codecs", &all);
    // The fuzz target's CRC fix-up must agree with the encoder, or it would break valid batches.
    assert!(
        !krpc_kafka_fuzz::fix_batch_crcs(&mut all.to_vec()),
        "fix_batch_crcs disagrees with the encoder's CRC"
    );
    let mut control =
        BytesMut::from(&encode_batch(&records(), Codec::None, 0).expect("encode batch")[..]);
    control[22] |= 0x20;
    write(&dir, "record_batches", "control", &control);
    let partial = encode_batch(&records(), Codec::None, 0).expect("encode batch");
    let mut two = BytesMut::from(&partial[..]);
    two.extend_from_slice(&partial[..partial.len() - 5]);
    write(&dir, "record_batches", "partial-tail", &two);

    // record_batches, old formats: issue 11's poison pill (a magic-0 message at offset 5, then
    // a v2 batch at 6), magic 1 with timestamps, and compressed wrappers of both formats.
    use krpc_kafka_fuzz::legacy_entry;
    let mut pill = legacy_entry(5, 0, 0, 0, None, Some(b"abc"));
    let mut v2 = BytesMut::from(&encode_batch(&records(), Codec::None, 0).expect("encode")[..]);
    v2[0..8].copy_from_slice(&6i64.to_be_bytes());
    pill.extend_from_slice(&v2);
    write(&dir, "record_batches", "magic0-then-v2", &pill);
    let mut v1 = legacy_entry(0, 1, 0, 1000, Some(b"k"), Some(b"v"));
    v1.extend(legacy_entry(1, 1, 0x08, 2000, None, None));
    write(&dir, "record_batches", "magic1", &v1);
    for magic in [0u8, 1] {
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4] {
            let first = if magic == 0 { 10 } else { 0 };
            let inner: Vec<u8> = (0..3)
                .flat_map(|i| legacy_entry(first + i, magic, 0, 100 + i, None, Some(b"inner")))
                .collect();
            let mut compressed = BytesMut::new();
            krpc_kafka::compression::compress(codec.to_protocol(), &inner, &mut compressed)
                .expect("compress");
            let attrs = codec.to_protocol() as u8;
            let wrapper = legacy_entry(12, magic, attrs, 500, None, Some(&compressed));
            write(
                &dir,
                "record_batches",
                &format!("magic{magic}-{}-wrapper", codec.name()),
                &wrapper,
            );
        }
    }

    // decompress: the same text under every codec, the first byte picking the codec.
    let raw: Vec<u8> = b"krpc-kafka fuzz seed "
        .iter()
        .cycle()
        .take(2000)
        .copied()
        .collect();
    for codec in Codec::ALL {
        let mut out = BytesMut::new();
        out.put_u8(codec.to_protocol() as u8);
        krpc_kafka::compression::compress(codec.to_protocol(), &raw, &mut out).expect("compress");
        write(&dir, "decompress", codec.name(), &out);
    }
    write(
        &dir,
        "decompress",
        "zstd-truncated",
        b"\x04\x28\xb5\x2f\xfd",
    );

    // responses (and frames).
    let mut responses = 0;
    for api_index in 0..API_COUNT {
        responses += with_api(
            api_index,
            Responses {
                dir: &dir,
                api_index,
            },
        );
    }

    // frames: several small frames, an empty one, a partial one, an oversize one.
    let mut frames = BytesMut::new();
    frames.put_u8(6); // 64-byte max
    for body in [&b"\x00\x00\x00\x01hello"[..], b"", b"\x00\x00\x00\x02"] {
        frames.put_u32(body.len() as u32);
        frames.put_slice(body);
    }
    frames.put_u32(10);
    frames.put_slice(b"part");
    write(&dir, "frames", "several", &frames);
    write(&dir, "frames", "oversize", b"\x06\x00\x00\x01\x00abcd");
    write(&dir, "frames", "negative", b"\x14\xff\xff\xff\xfe");

    // legacy_messages: a Python request (msgpack.packb({'method_name': 'add', 'args': (1,),
    // 'kwargs': {'b': 2}}, use_bin_type=True)) plain, checksummed and encrypted; a reply.
    let python_request: &[u8] =
        b"\x83\xabmethod_name\xa3add\xa4args\x91\x01\xa6kwargs\x81\xa1b\x02";
    let reply = kafka_rpc::legacy::LegacyReply {
        ret: bytes::Bytes::from_static(&[0x03]),
        tact_time: 0.5,
        server_id: "s".into(),
        time: "2026-11-26 10:00:00.000000".into(),
        exception: Some(bytes::Bytes::from_static(b"\x80\x02.")),
        traceback: Some("Traceback\nValueError: x".into()),
    }
    .encode();
    for (name, flags, plain) in [("request", 0u8, python_request), ("reply", 0, &reply[..])] {
        for (suffix, flags) in [("", flags), ("-verify", 1), ("-encrypt", 2), ("-both", 3)] {
            let format = kafka_rpc::legacy::LegacyFormat {
                verify: flags & 1 == 1,
                cipher: (flags & 2 == 2).then(|| kafka_rpc::legacy::LegacyCipher::new("fuzz")),
            };
            let (value, header) = format.seal(plain);
            let sum = header.value.unwrap_or_default();
            let mut seed = vec![flags, sum.len() as u8];
            seed.extend_from_slice(&sum);
            seed.extend_from_slice(&value);
            write(&dir, "legacy_messages", &format!("{name}{suffix}"), &seed);
        }
    }

    println!("seeds written to {} ({responses} responses)", dir.display());
}
