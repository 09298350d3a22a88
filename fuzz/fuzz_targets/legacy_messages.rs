// Covers the Python kafka-rpc 1.0.8 ("legacy") decoders a legacy server and client run on every
// record they read: the checksum check and the AES decryption (kafka_rpc::legacy::LegacyFormat::
// open), the request and reply maps (LegacyCall::decode, LegacyReply::decode), keyword-argument
// placement (LegacyCall::positional) and task ids. The first input byte picks the settings
// (bit 0: verify, bit 1: encrypt), the second the length of the checksum header value.
#![no_main]

use bytes::Bytes;
use kafka_rpc::legacy::{task_id, LegacyCall, LegacyCipher, LegacyFormat, LegacyReply};
use krpc_kafka::Header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, sum_len, rest @ ..] = data else {
        return;
    };
    let format = LegacyFormat {
        verify: flags & 1 == 1,
        cipher: (flags & 2 == 2).then(|| LegacyCipher::new("fuzz")),
    };
    let take = (*sum_len as usize).min(rest.len());
    let (sum, value) = rest.split_at(take);
    let headers = [Header {
        key: "checksum".into(),
        value: Some(Bytes::copy_from_slice(sum)),
    }];
    let _ = task_id(sum);
    // Whatever the settings, the plain decoders also see the raw value.
    for plain in [format.open(value, &headers).ok(), Some(value.to_vec())]
        .into_iter()
        .flatten()
    {
        if let Ok(call) = LegacyCall::decode(&plain) {
            let params = ["a".to_string(), "b".to_string(), "c".to_string()];
            let _ = call.positional(Some(&params));
            let _ = call.positional(None);
        }
        if let Ok(reply) = LegacyReply::decode(&plain) {
            let _ = reply.exception_line();
            let _ = reply.encode();
        }
    }
});
