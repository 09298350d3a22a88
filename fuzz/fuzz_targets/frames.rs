// Covers krpc_kafka::frame::codec (size-prefixed frames) and protocol::peek_correlation_id.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let max = krpc_kafka_fuzz::pick_max_frame(selector);
    let mut codec = krpc_kafka::frame::codec(max);
    let mut buf = BytesMut::from(stream);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert!(
                    frame.len() <= max,
                    "frame of {} bytes passed a max of {max}",
                    frame.len()
                );
                let id = krpc_kafka::messages::peek_correlation_id(&frame);
                assert_eq!(id.is_some(), frame.len() >= 4);
            }
            Ok(None) => {
                // The stream ends here: a trailing partial frame must be reported, not dropped.
                let _ = codec.decode_eof(&mut buf);
                break;
            }
            Err(_) => break,
        }
    }
});
