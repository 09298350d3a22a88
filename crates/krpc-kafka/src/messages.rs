//! Glue between `kafka-protocol` messages and frames: headers, encoding, strict decoding.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use crate::error::{Error, Result};

/// Encodes `req` at `version` with its request header into one frame body (no size prefix).
pub fn encode_request<R: Request>(
    req: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<Bytes> {
    let api = api_key::<R>();
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let encode_err = |e: anyhow::Error| Error::Encode {
        api: crate::ApiKey::of(api),
        reason: format!("v{version}: {e:#}"),
    };
    // Sized up front: a Produce request carries whole record batches, which a buffer grown
    // by doubling would copy several times.
    let size = header
        .compute_size(R::header_version(version))
        .and_then(|h| Ok(h + req.compute_size(version)?))
        .map_err(encode_err)?;
    let mut buf = BytesMut::with_capacity(size);
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(encode_err)?;
    req.encode(&mut buf, version).map_err(encode_err)?;
    Ok(buf.freeze())
}

/// The API key of a request type.
pub fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions)
}

/// The correlation id at the start of a response frame, if the frame is long enough.
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    frame
        .get(..4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes a response frame of `api` at `version`; leftover bytes are an error.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
    broker: &str,
) -> Result<R::Response> {
    let api = api_key::<R>();
    let malformed = |reason: String| Error::Malformed {
        broker: broker.to_string(),
        what: format!("{api:?} v{version} response"),
        reason,
    };
    // An ApiVersions response header is always v0, whatever the request version.
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        <R::Response as kafka_protocol::protocol::HeaderVersion>::header_version(version)
    };
    ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| malformed(format!("header: {e:#}")))?;
    let body = R::Response::decode(&mut frame, version).map_err(|e| malformed(format!("{e:#}")))?;
    if frame.has_remaining() {
        return Err(malformed(format!(
            "{} bytes left over after the body",
            frame.remaining()
        )));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    #[test]
    fn a_huge_array_count_is_an_error_not_an_abort() {
        // Metadata v1 response: correlation id, then a brokers array claiming 2^31-1 entries.
        let frame = Bytes::from_static(&[0, 0, 0, 7, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1]);
        let err = decode_response::<MetadataRequest>(frame, 1, "b:1").unwrap_err();
        assert!(err.to_string().contains("Metadata v1 response"), "{err}");
    }

    #[test]
    fn leftover_bytes_are_an_error() {
        // ApiVersions v0: correlation id, error 0, empty api list, then one stray byte.
        let frame = Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9]);
        let err = decode_response::<ApiVersionsRequest>(frame, 0, "b:1").unwrap_err();
        assert!(err.to_string().contains("left over"), "{err}");
    }

    #[test]
    fn requests_carry_their_header() {
        let frame = encode_request(
            &ApiVersionsRequest::default(),
            0,
            42,
            &StrBytes::from_static_str("me"),
        )
        .unwrap();
        assert_eq!(
            &frame[..8],
            &[0, 18, 0, 0, 0, 0, 0, 42],
            "api key 18, v0, correlation 42"
        );
        assert_eq!(peek_correlation_id(&frame[4..]), Some(42));
        assert_eq!(peek_correlation_id(&[1, 2]), None);
    }
}
