// Covers krpc_kafka::messages::decode_response (header + body), 13 response types, all versions.
#![no_main]

use bytes::Bytes;
use kafka_protocol::protocol::Request;
use krpc_kafka_fuzz::{pick_version, with_api, ApiVisitor};
use libfuzzer_sys::fuzz_target;

struct Decode<'a> {
    version_selector: u8,
    frame: &'a [u8],
}

impl ApiVisitor for Decode<'_> {
    type Output = ();
    fn visit<R>(self)
    where
        R: Request,
        R::Response: Default,
    {
        let version = pick_version::<R>(self.version_selector);
        let frame = Bytes::copy_from_slice(self.frame);
        // Ok or Err are both fine; only a panic (or a sanitizer report) is a finding.
        let _ = krpc_kafka::messages::decode_response::<R>(frame, version, "fuzz");
    }
}

fuzz_target!(|data: &[u8]| {
    let [api_selector, version_selector, frame @ ..] = data else {
        return;
    };
    with_api(
        *api_selector,
        Decode {
            version_selector: *version_selector,
            frame,
        },
    );
});
