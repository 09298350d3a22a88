//! The golden vectors of wire/WIRE.md: every file in `wire/vectors/` is one record exactly as it
//! appears on the wire, with what a decoder must read from it. This test decodes each with the
//! real envelope code and checks every field of `expect`; for the valid requests and replies it
//! also checks that encoding the decoded value gives back the very same record.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kafka_rpc::envelope::{Reply, ReplyTo, Request, RequestId};
use kafka_rpc::krpc_kafka::{ConsumerRecord, Header, ProducerRecord};
use kafka_rpc::trace::TraceContext;
use kafka_rpc::StatusCode;
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wire/vectors")
}

fn unhex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd-length hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex {s:?}")))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `null` or a hex string, as bytes.
fn opt_bytes(v: &Value) -> Option<Bytes> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Bytes::from(unhex(s))),
        other => panic!("expected null or a hex string, got {other}"),
    }
}

/// The record a vector describes: its key, value, headers (in order) and timestamp.
struct Wire {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<Header>,
    timestamp: Option<i64>,
}

fn parse_record(r: &Value) -> Wire {
    let headers = r["headers"]
        .as_array()
        .expect("record.headers is an array")
        .iter()
        .map(|h| {
            let pair = h.as_array().expect("a header is [name, hex|null]");
            assert_eq!(pair.len(), 2, "a header is [name, hex|null]: {h}");
            Header {
                key: pair[0].as_str().expect("header name").to_string(),
                value: opt_bytes(&pair[1]),
            }
        })
        .collect();
    Wire {
        key: opt_bytes(&r["key_hex"]),
        value: opt_bytes(&r["value_hex"]),
        headers,
        timestamp: match &r["timestamp"] {
            Value::Null => None,
            t => Some(t.as_i64().expect("record.timestamp is an integer or null")),
        },
    }
}

fn consumer_record(w: &Wire) -> ConsumerRecord {
    ConsumerRecord {
        topic: Arc::from("t"),
        partition: 0,
        offset: 0,
        // A null timestamp is the producer's choice; the envelope never reads it.
        timestamp: w.timestamp.unwrap_or(0),
        log_append_time: false,
        key: w.key.clone(),
        value: w.value.clone(),
        headers: w.headers.clone(),
    }
}

fn field<'a>(expect: &'a Value, name: &str) -> &'a Value {
    expect
        .get(name)
        .unwrap_or_else(|| panic!("expect.{name} is missing"))
}

fn id_json(id: Option<RequestId>) -> Value {
    id.map_or(Value::Null, |i| Value::String(i.to_string()))
}

fn reply_to_json(r: &Option<ReplyTo>) -> Value {
    match r {
        None => Value::Null,
        Some(r) => serde_json::json!({"topic": r.topic, "partition": r.partition}),
    }
}

fn msgpack_json(payload: &[u8]) -> Value {
    rmp_serde::from_slice::<Value>(payload)
        .unwrap_or_else(|e| panic!("payload {} is not msgpack: {e}", hex(payload)))
}

fn status_by_name(name: &str) -> StatusCode {
    StatusCode::ALL
        .into_iter()
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("no status named {name}"))
}

/// Encoding the decoded value must give back the file's record, byte for byte and in order.
fn assert_reencodes(name: &str, w: &Wire, produced: &ProducerRecord) {
    let show = |hs: &[Header]| -> Vec<(String, Option<String>)> {
        hs.iter()
            .map(|h| (h.key.clone(), h.value.as_deref().map(hex)))
            .collect()
    };
    assert_eq!(
        show(&produced.headers),
        show(&w.headers),
        "{name}: re-encoded headers"
    );
    assert_eq!(produced.value, w.value, "{name}: re-encoded value");
    assert_eq!(produced.key, w.key, "{name}: re-encoded key");
    assert_eq!(
        produced.timestamp, w.timestamp,
        "{name}: re-encoded timestamp"
    );
}

fn check_request(name: &str, w: &Wire, expect: &Value) {
    let rec = consumer_record(w);
    let req = Request::from_record(&rec).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        Value::String(req.id.to_string()),
        *field(expect, "id"),
        "{name}: id"
    );
    assert_eq!(
        req.method,
        field(expect, "method").as_str().expect("method"),
        "{name}: method"
    );
    assert_eq!(
        reply_to_json(&req.reply_to),
        *field(expect, "reply_to"),
        "{name}: reply_to"
    );
    assert_eq!(
        req.deadline_ms,
        field(expect, "deadline_ms").as_i64(),
        "{name}: deadline_ms"
    );
    assert_eq!(
        Some(req.sent_ms),
        field(expect, "sent_ms").as_i64(),
        "{name}: sent_ms"
    );
    assert_eq!(
        msgpack_json(&req.payload),
        *field(expect, "args_json"),
        "{name}: args"
    );
    assert!(
        field(expect, "args_json").is_array(),
        "{name}: arguments are an array"
    );
    // Caller metadata (WIRE.md 3.1): name -> value hex; absent means none.
    let metadata: serde_json::Map<String, Value> = req
        .metadata
        .iter()
        .map(|(n, v)| (n.to_string(), Value::String(hex(v))))
        .collect();
    let expected = expect
        .get("metadata")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    assert_eq!(Value::Object(metadata), expected, "{name}: metadata");
    // W3C trace context (WIRE.md 3.2): headers after the envelope's, read on their own.
    let trace = TraceContext::from_headers(&w.headers).unwrap_or_else(|e| panic!("{name}: {e}"));
    let trace_json = trace.as_ref().map_or(Value::Null, |t| {
        serde_json::json!({
            "traceparent": t.traceparent(),
            "trace_id": t.trace_id().to_string(),
            "parent_id": t.span_id().to_string(),
            "sampled": t.is_sampled(),
            "tracestate": t.state(),
        })
    });
    let expected = expect.get("trace").cloned().unwrap_or(Value::Null);
    assert_eq!(trace_json, expected, "{name}: trace");
    let mut record = req.to_record(w.key.clone());
    record
        .headers
        .extend(trace.iter().flat_map(TraceContext::to_headers));
    assert_reencodes(name, w, &record);
}

fn check_reply(name: &str, w: &Wire, expect: &Value) {
    let rec = consumer_record(w);
    let reply = Reply::from_record(&rec).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        Value::String(reply.id.to_string()),
        *field(expect, "id"),
        "{name}: id"
    );
    let status = field(expect, "status").as_str().expect("status");
    assert_eq!(reply.status.name(), status, "{name}: status");
    assert_eq!(reply.status, status_by_name(status), "{name}: status");
    assert_eq!(
        Some(u64::from(reply.status.code())),
        field(expect, "status_code").as_u64(),
        "{name}: status_code"
    );
    assert_eq!(
        reply.message,
        field(expect, "message").as_str().expect("message"),
        "{name}: message"
    );
    assert_eq!(
        reply.server_id,
        field(expect, "server_id").as_str().expect("server_id"),
        "{name}: server_id"
    );
    assert_eq!(
        Some(reply.handler_us),
        field(expect, "handler_us").as_u64(),
        "{name}: handler_us"
    );
    assert_eq!(
        Some(reply.queue_ms),
        field(expect, "queue_ms").as_i64(),
        "{name}: queue_ms"
    );
    match expect.get("result_json") {
        Some(result) => assert_eq!(msgpack_json(&reply.payload), *result, "{name}: result"),
        None => assert!(
            reply.payload.is_empty(),
            "{name}: no result_json, so the value must be empty"
        ),
    }
    assert_reencodes(name, w, &reply.to_record());
}

fn check_invalid_request(name: &str, w: &Wire, expect: &Value) {
    let rec = consumer_record(w);
    let err = match Request::from_record(&rec) {
        Ok(r) => panic!("{name}: decoded as a valid request: {r:?}"),
        Err(e) => e,
    };
    let want = field(expect, "error_contains")
        .as_str()
        .expect("error_contains");
    assert!(
        err.reason.contains(want),
        "{name}: error {:?} does not contain {want:?}",
        err.reason
    );
    assert_eq!(id_json(err.id), *field(expect, "id"), "{name}: id");
    assert_eq!(
        reply_to_json(&err.reply_to),
        *field(expect, "reply_to"),
        "{name}: reply_to"
    );
    assert_eq!(
        Some(err.unsupported_version),
        field(expect, "unsupported_version").as_bool(),
        "{name}: unsupported_version"
    );
    // What the server does with it (server/dispatch.rs): reply when it knows the id and where.
    if let Some(status) = expect.get("server_reply_status") {
        let server = match (&err.id, &err.reply_to) {
            (Some(_), Some(_)) if err.unsupported_version => {
                Value::from(StatusCode::FailedPrecondition.name())
            }
            (Some(_), Some(_)) => Value::from(StatusCode::DataLoss.name()),
            _ => Value::Null,
        };
        assert_eq!(server, *status, "{name}: server_reply_status");
    }
}

fn check_invalid_reply(name: &str, w: &Wire, expect: &Value) {
    let rec = consumer_record(w);
    let err = match Reply::from_record(&rec) {
        Ok(r) => panic!("{name}: decoded as a valid reply: {r:?}"),
        Err(e) => e.to_string(),
    };
    let want = field(expect, "error_contains")
        .as_str()
        .expect("error_contains");
    assert!(
        err.contains(want),
        "{name}: error {err:?} does not contain {want:?}"
    );
}

#[test]
fn every_golden_vector_decodes_as_expected_and_valid_ones_reencode_exactly() {
    let dir = vectors_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "{} holds {} vectors; expected at least 8",
        dir.display(),
        files.len()
    );
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable vector");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        let name = v["name"].as_str().expect("name").to_string();
        assert_eq!(
            path.file_stem().and_then(|s| s.to_str()),
            Some(name.as_str()),
            "the file is named after the vector"
        );
        assert!(v["description"].is_string(), "{name}: description");
        let w = parse_record(&v["record"]);
        let expect = &v["expect"];
        let kind = expect["kind"].as_str().expect("expect.kind").to_string();
        match kind.as_str() {
            "request" => check_request(&name, &w, expect),
            "reply" => check_reply(&name, &w, expect),
            "invalid_request" => check_invalid_request(&name, &w, expect),
            "invalid_reply" => check_invalid_reply(&name, &w, expect),
            other => panic!("{name}: unknown kind {other}"),
        }
        *kinds.entry(kind).or_default() += 1;
    }
    for kind in ["request", "reply", "invalid_request"] {
        assert!(kinds.contains_key(kind), "no vector of kind {kind}");
    }
}
