//! kafka-rpc's `otel` feature against the real broker: with a `tracing-opentelemetry` layer
//! and an OpenTelemetry SDK installed (an in-memory exporter), a call made inside an
//! application's span is an OpenTelemetry child of that span, and the server's span of the
//! request is a child of the call's, in the same trace, with the RPC attributes.
//!
//! Runs only with `--features otel` (scripts/test runs it so).
#![cfg(feature = "otel")]

use std::time::Duration;

use kafka_rpc::{CallOptions, HandlerError, Server};
use krpc_tests::{rpc, wait, Broker};
use opentelemetry::trace::{SpanKind, TraceContextExt, TracerProvider};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_otel_the_servers_span_is_an_opentelemetry_child_of_the_callers() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("krpc-tests")))
        .try_init()
        .expect("the only global subscriber of this test binary");

    let addr = Broker::shared().addr().to_string();
    let svc = krpc_tests::unique_topic("otel").replace('.', "-");
    let kafka = krpc_tests::kafka::client(&addr).await;
    let server = Server::new(kafka, krpc_tests::tuning::server_options(&svc))
        .expect("valid server options")
        .method("add", |(a, b): (i64, i64)| async move {
            Ok::<_, HandlerError>(a + b)
        });
    let (stop, server) = rpc::run_in_background(server);
    let client = rpc::client(&addr).await;

    let app = tracing::info_span!("app-request");
    let app_context = app.context().span().span_context().clone();
    assert!(app_context.is_valid(), "the SDK gives the app's span ids");
    let r = client
        .call::<_, i64>(
            &svc,
            "add",
            &(1, 2),
            CallOptions::default().with_timeout(Duration::from_secs(60)),
        )
        .instrument(app.clone())
        .await
        .expect("add");
    assert_eq!(r.value, 3);
    drop(app);

    // Spans are exported when they end: the call's when it returned, the request's when its
    // task finishes.
    let name = format!("{svc}/add");
    let (call, request) = wait::until(
        "the client's and the server's span exported",
        Duration::from_secs(10),
        || async {
            let spans = exporter.get_finished_spans().expect("exporter");
            let find = |kind: SpanKind| {
                spans
                    .iter()
                    .find(|s| s.name == name && s.span_kind == kind)
                    .cloned()
            };
            Some((find(SpanKind::Client)?, find(SpanKind::Server)?))
        },
    )
    .await;
    assert_eq!(
        call.span_context.trace_id(),
        app_context.trace_id(),
        "the call continues the app's trace"
    );
    assert_eq!(call.parent_span_id, app_context.span_id());
    assert_eq!(
        request.span_context.trace_id(),
        call.span_context.trace_id(),
        "one trace id in the client's and the server's span"
    );
    assert_eq!(
        request.parent_span_id,
        call.span_context.span_id(),
        "the server's span is a child of the client's"
    );
    for span in [&call, &request] {
        assert_eq!(
            attribute(span, "rpc.system"),
            Some(Value::from("kafka-rpc"))
        );
        assert_eq!(
            attribute(span, "rpc.response.status_code"),
            Some(Value::from("OK"))
        );
        // The fields name the same ids as OpenTelemetry.
        assert_eq!(
            attribute(span, "trace_id").map(|v| v.to_string()),
            Some(span.span_context.trace_id().to_string())
        );
    }
    stop.send(()).unwrap();
    server.await.unwrap();
    let _ = provider.shutdown();
}
