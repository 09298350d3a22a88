//! Tracing against the real broker (src/trace.rs, wire/WIRE.md section 3.2): the client's
//! `krpc.call` span and the server's `krpc.request` span of one call share the trace id, the
//! server's span is a child of the client's, the request record carries `traceparent` (read
//! back with librdkafka), and a handler's own calls continue the trace.
//!
//! A `tracing` layer kept in this file records every span's fields; it is the process's global
//! subscriber, installed once for the tests of this binary.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kafka_rpc::trace::{self, TraceContext};
use kafka_rpc::{CallOptions, HandlerError, RequestContext, Server};
use krpc_tests::{python, rpc, wait, Broker};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// One span as the layer saw it: its name and its fields (values as text).
#[derive(Debug, Clone)]
struct Captured {
    name: &'static str,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn get(&self, field: &str) -> &str {
        self.fields
            .get(field)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("span {} has no field {field}: {self:?}", self.name))
    }
}

/// Every span of the process, in creation order (span ids are reused once a span closes, so
/// the id only points at the latest span that had it).
#[derive(Default)]
struct Spans {
    all: Vec<Captured>,
    by_id: HashMap<u64, usize>,
}

#[derive(Clone, Default)]
struct CaptureLayer(Arc<Mutex<Spans>>);

struct FieldsVisitor<'a>(&'a mut BTreeMap<String, String>);

impl Visit for FieldsVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for CaptureLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut FieldsVisitor(&mut fields));
        let mut spans = self.0.lock().unwrap();
        let index = spans.all.len();
        spans.all.push(Captured {
            name: attrs.metadata().name(),
            fields,
        });
        spans.by_id.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some(&i) = spans.by_id.get(&id.into_u64()) {
            values.record(&mut FieldsVisitor(&mut spans.all[i].fields));
        }
    }
}

fn capture() -> &'static CaptureLayer {
    static LAYER: OnceLock<CaptureLayer> = OnceLock::new();
    LAYER.get_or_init(|| {
        let layer = CaptureLayer::default();
        tracing_subscriber::registry()
            .with(layer.clone())
            .try_init()
            .expect("the only global subscriber of this test binary");
        layer
    })
}

/// The span named `name` whose request id (`messaging.message.id`) is `id`, once its status
/// is recorded (waits at most 10 s).
async fn span_of(name: &str, id: &str) -> Captured {
    wait::until(
        &format!("the {name} span of request {id} with its status"),
        Duration::from_secs(10),
        || async {
            let spans = capture().0.lock().unwrap();
            spans
                .all
                .iter()
                .rev()
                .find(|s| {
                    s.name == name
                        && s.fields.get("messaging.message.id").map(String::as_str) == Some(id)
                        && s.fields.contains_key("rpc.response.status_code")
                })
                .cloned()
        },
    )
    .await
}

fn service(prefix: &str) -> String {
    krpc_tests::unique_topic(prefix).replace('.', "-")
}

/// A client whose request topics have one partition (the records are read back from
/// partition 0).
async fn one_partition_client(addr: &str) -> kafka_rpc::RpcClient {
    let kafka = krpc_tests::kafka::client(addr).await;
    let mut options = krpc_tests::tuning::client_options();
    options.topics.request_partitions = 1;
    kafka_rpc::RpcClient::connect(kafka, options)
        .await
        .expect("rpc client")
}

/// A server of `svc` (one request partition): `echo` returns its request's trace context as
/// the handler sees it; `outer` calls `inner` of the same service with `client` and returns
/// what `inner` saw as its incoming trace context.
async fn spawn_server(
    addr: &str,
    svc: &str,
    client: kafka_rpc::RpcClient,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<kafka_rpc::ServerStats>,
) {
    let kafka = krpc_tests::kafka::client(addr).await;
    let mut options = krpc_tests::tuning::server_options(svc);
    options.topics.request_partitions = 1;
    let inner_svc = svc.to_string();
    let server = Server::new(kafka, options)
        .expect("valid server options")
        .method_with_context("echo", |ctx: RequestContext, (): ()| async move {
            Ok::<_, HandlerError>(ctx.trace().map(TraceContext::traceparent))
        })
        .method_with_context("inner", |ctx: RequestContext, (): ()| async move {
            Ok::<_, HandlerError>(ctx.incoming_trace().map(TraceContext::traceparent))
        })
        .method("outer", move |(): ()| {
            let (client, svc) = (client.clone(), inner_svc.clone());
            async move {
                // No trace code here: the server runs the handler inside its request's
                // trace context, and the client picks it up.
                let r = client
                    .call::<_, Option<String>>(
                        &svc,
                        "inner",
                        &(),
                        CallOptions::default().with_timeout(Duration::from_secs(30)),
                    )
                    .await
                    .map_err(|e| HandlerError::from(e.to_string()))?;
                Ok::<_, HandlerError>((r.meta.request_id.to_string(), r.value))
            }
        });
    rpc::run_in_background(server)
}

fn call_options() -> CallOptions {
    CallOptions::default().with_timeout(Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_trace_id_is_the_same_in_client_and_server_spans_and_its_record_carries_traceparent(
) {
    capture();
    let addr = Broker::shared().addr().to_string();
    let svc = service("traced");
    let client = one_partition_client(&addr).await;
    let (stop, server) = spawn_server(&addr, &svc, client.clone()).await;

    // 1. A call made outside any trace starts one.
    let r = client
        .call::<_, Option<String>>(&svc, "echo", &(), call_options())
        .await
        .expect("echo");
    let id = r.meta.request_id.to_string();
    let call = span_of("krpc.call", &id).await;
    let request = span_of("krpc.request", &id).await;
    for (span, kind) in [(&call, "client"), (&request, "server")] {
        assert_eq!(span.get("rpc.system"), "kafka-rpc");
        assert_eq!(span.get("rpc.service"), svc);
        assert_eq!(span.get("rpc.method"), "echo");
        assert_eq!(span.get("rpc.response.status_code"), "OK");
        assert_eq!(span.get("otel.kind"), kind);
        assert_eq!(
            span.get("messaging.destination.name"),
            format!("krpc.{svc}.requests")
        );
        assert_eq!(span.get("messaging.destination.partition.id"), "0");
        assert_eq!(span.get("trace_id").len(), 32);
        assert_eq!(span.get("span_id").len(), 16);
    }
    assert_eq!(
        call.get("trace_id"),
        request.get("trace_id"),
        "one trace id in the client's and the server's span"
    );
    assert_eq!(
        request.get("parent_span_id"),
        call.get("span_id"),
        "the server's span is a child of the client's"
    );
    assert!(
        !call.fields.contains_key("parent_span_id"),
        "a call outside any trace is a root: {call:?}"
    );
    let offset = call.get("messaging.kafka.offset");
    assert_eq!(request.get("messaging.kafka.offset"), offset);
    // The handler's context is its span's.
    assert_eq!(
        r.value.as_deref(),
        Some(
            format!(
                "00-{}-{}-01",
                request.get("trace_id"),
                request.get("span_id")
            )
            .as_str()
        )
    );

    // 2. The request record as an independent client (librdkafka) reads it.
    let out = python::run(
        "peers.py",
        &[
            "consume",
            "confluent",
            &addr,
            &format!("krpc.{svc}.requests"),
            "1",
        ],
        Duration::from_secs(120),
    );
    let record: serde_json::Value = serde_json::from_str(out.lines().next().expect("a record"))
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(record["offset"].to_string(), offset, "the call's record");
    let header = |name: &str| -> Option<Vec<u8>> {
        record["headers"].as_array().unwrap().iter().find_map(|h| {
            (h[0] == name).then(|| {
                let hex = h[1].as_str().expect("a value");
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect()
            })
        })
    };
    assert_eq!(
        header("krpc-id").map(|_| ()),
        Some(()),
        "a krpc request: {record}"
    );
    let traceparent = header(trace::TRACEPARENT).expect("the record carries traceparent");
    let traceparent = String::from_utf8(traceparent).expect("ASCII");
    let sent = TraceContext::from_traceparent(&traceparent).expect("a valid traceparent");
    assert_eq!(sent.trace_id().to_string(), call.get("trace_id"));
    assert_eq!(sent.span_id().to_string(), call.get("span_id"));
    assert_eq!(header(trace::TRACESTATE), None, "no trace state to pass on");

    // 3. A call inside `trace::scope` continues the given trace.
    let given =
        TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap()
            .with_state("congo=t61rcWkgMzE")
            .unwrap();
    let r = trace::scope(
        given.clone(),
        client.call::<_, Option<String>>(&svc, "echo", &(), call_options()),
    )
    .await
    .expect("echo in a trace");
    let id = r.meta.request_id.to_string();
    let call = span_of("krpc.call", &id).await;
    let request = span_of("krpc.request", &id).await;
    assert_eq!(call.get("trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(call.get("parent_span_id"), "00f067aa0ba902b7");
    assert_eq!(request.get("trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(request.get("parent_span_id"), call.get("span_id"));

    // 4. A handler's own call continues its request's trace, with no trace code in it.
    let r = client
        .call::<_, (String, Option<String>)>(&svc, "outer", &(), call_options())
        .await
        .expect("outer");
    let (inner_id, inner_saw) = r.value;
    let outer_call = span_of("krpc.call", &r.meta.request_id.to_string()).await;
    let outer_request = span_of("krpc.request", &r.meta.request_id.to_string()).await;
    let inner_call = span_of("krpc.call", &inner_id).await;
    let inner_request = span_of("krpc.request", &inner_id).await;
    let trace_id = outer_call.get("trace_id");
    for span in [&outer_request, &inner_call, &inner_request] {
        assert_eq!(span.get("trace_id"), trace_id, "one trace: {span:?}");
    }
    assert_eq!(
        inner_call.get("parent_span_id"),
        outer_request.get("span_id"),
        "the handler's call is a child of its request's span"
    );
    assert_eq!(
        inner_request.get("parent_span_id"),
        inner_call.get("span_id")
    );
    assert_eq!(
        inner_saw.as_deref(),
        Some(format!("00-{trace_id}-{}-01", inner_call.get("span_id")).as_str()),
        "the inner handler received the handler's call's context"
    );

    stop.send(()).unwrap();
    let stats = server.await.unwrap();
    assert_eq!(stats.ok, 4, "{stats}");
}
