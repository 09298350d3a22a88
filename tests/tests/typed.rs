//! Typed services (`#[kafka_rpc::service]`) against the real broker: a trait with methods of
//! zero, one and several arguments, a struct argument, a `Result` with a user error type and a
//! one-way method, served by the generated server and called through the generated client; the
//! same server read by the untyped client (what a Python or CLI caller sees); and a Python
//! kafka-rpc 1.0.8 client calling a generated server with keyword arguments, whose names come
//! from the trait.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_rpc::{CallOptions, RequestContext, RpcError, Server, StatusCode};
use krpc_tests::{python, rpc, wait, Broker};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A struct argument and result: travels as a msgpack map (field names on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: i64,
    pub y: i64,
}

/// The service's own error type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CalcError {
    DivideByZero { dividend: i64 },
    Overflow,
}

impl fmt::Display for CalcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalcError::DivideByZero { dividend } => write!(f, "{dividend} divided by zero"),
            CalcError::Overflow => f.write_str("the result overflows"),
        }
    }
}

impl std::error::Error for CalcError {}

/// What a handler learns from its request context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Caller {
    pub greeting: String,
    pub tenant: Option<String>,
    pub routing_key: Option<String>,
    pub server_id: String,
    pub request_id: String,
    pub method: String,
    pub time_left_ms: Option<u64>,
}

/// A calculator.
#[kafka_rpc::service]
pub trait Calc {
    /// No argument.
    async fn ping(&self) -> String;
    /// One argument.
    async fn negate(&self, x: i64) -> i64;
    /// Several arguments.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// A struct argument and result.
    async fn scale(&self, p: Point, by: i64) -> Point;
    /// A user error type.
    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
    /// Returns nothing: may be sent one-way.
    async fn record(&self, n: u32);
    /// Takes the request context (not an argument on the wire).
    async fn whoami(&self, ctx: &RequestContext, greeting: String) -> Caller;
}

#[derive(Default)]
struct Calculator {
    recorded: Arc<Mutex<BTreeSet<u32>>>,
}

impl Calc for Calculator {
    async fn ping(&self) -> String {
        "pong".into()
    }

    async fn negate(&self, x: i64) -> i64 {
        -x
    }

    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn scale(&self, p: Point, by: i64) -> Point {
        Point {
            x: p.x * by,
            y: p.y * by,
        }
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        if b == 0 {
            return Err(CalcError::DivideByZero { dividend: a });
        }
        a.checked_div(b).ok_or(CalcError::Overflow)
    }

    async fn record(&self, n: u32) {
        self.recorded.lock().unwrap().insert(n);
    }

    async fn whoami(&self, ctx: &RequestContext, greeting: String) -> Caller {
        Caller {
            greeting,
            tenant: ctx.metadata().get_str("tenant").map(str::to_string),
            routing_key: ctx
                .routing_key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            server_id: ctx.server_id().to_string(),
            request_id: ctx.request_id().to_string(),
            method: ctx.method().to_string(),
            time_left_ms: ctx.time_left().map(|d| d.as_millis() as u64),
        }
    }
}

/// Waits until `server` (running in the background) has its partitions, so its topics exist.
async fn assigned(counters: &kafka_rpc::server::Counters) {
    wait::until(
        "the server's first assignment",
        Duration::from_secs(60),
        || async {
            (counters
                .assignments
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0)
            .then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_service_is_served_and_called_through_the_broker() {
    let addr = Broker::shared().addr().to_string();
    let kafka = krpc_tests::kafka::client(&addr).await;
    let calculator = Calculator::default();
    let recorded = calculator.recorded.clone();
    let mut options = krpc_tests::tuning::server_options(CalcClient::SERVICE);
    options.server_id = "calc-1".into();
    let server = Server::new(kafka.clone(), options)
        .expect("valid server options")
        .service(CalcServer::new(calculator));
    let counters = server.counters();
    let (stop, running) = rpc::run_in_background(server);
    assert_eq!(CalcServer::<Calculator>::SERVICE, "Calc");
    assigned(&counters).await;

    let untyped = rpc::client(&addr).await;
    let calc = CalcClient::new(untyped.clone())
        .with_options(CallOptions::default().with_timeout(Duration::from_secs(30)));
    assert_eq!(calc.ping().await.unwrap(), "pong");
    assert_eq!(calc.negate(5).await.unwrap(), -5);
    assert_eq!(calc.add(1, 2).await.unwrap(), 3);
    assert_eq!(
        calc.scale(Point { x: 2, y: -3 }, 10).await.unwrap(),
        Point { x: 20, y: -30 }
    );
    // Per-call options: a routing key and a timeout of its own.
    assert_eq!(
        calc.add(40, 2)
            .routing_key("k1")
            .timeout(Duration::from_secs(20))
            .await
            .unwrap(),
        42
    );
    assert_eq!(calc.div(7, 2).await.unwrap(), Ok(3));
    assert_eq!(
        calc.div(7, 0).await.unwrap(),
        Err(CalcError::DivideByZero { dividend: 7 }),
        "the user error comes back typed"
    );
    assert_eq!(
        calc.div(i64::MIN, -1).await.unwrap(),
        Err(CalcError::Overflow)
    );
    calc.record(1).await.unwrap();
    // One-way: returns once stored; the server runs it.
    calc.record(2).one_way().await.unwrap();
    wait::until(
        "the one-way call to run",
        Duration::from_secs(30),
        || async { recorded.lock().unwrap().contains(&2).then_some(()) },
    )
    .await;
    assert_eq!(*recorded.lock().unwrap(), BTreeSet::from([1, 2]));
    // The context: caller metadata, routing key, server id, request id, deadline.
    let caller = calc
        .whoami("hello".into())
        .metadata("tenant", "acme")
        .routing_key("user-7")
        .timeout(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(caller.greeting, "hello");
    assert_eq!(caller.tenant.as_deref(), Some("acme"));
    assert_eq!(caller.routing_key.as_deref(), Some("user-7"));
    assert_eq!(
        (caller.server_id.as_str(), caller.method.as_str()),
        ("calc-1", "whoami")
    );
    assert_eq!(caller.request_id.len(), 32);
    let left = caller.time_left_ms.expect("a call has a deadline");
    assert!(left > 0 && left <= 20_000, "{left} ms left of 20 s");
    // The context is no argument on the wire: the method takes one.
    let r = untyped
        .call::<_, Caller>("Calc", "whoami", &("hey",), CallOptions::default())
        .await
        .unwrap();
    assert_eq!((r.value.greeting.as_str(), r.value.tenant), ("hey", None));

    // What an untyped caller sees: positional arrays, a struct as a map, the user error as
    // status UNKNOWN with its Display text.
    let wait = || CallOptions::default().with_timeout(Duration::from_secs(30));
    let r = untyped
        .call::<_, i64>("Calc", "add", &(5, 6), wait())
        .await
        .unwrap();
    assert_eq!((r.value, r.meta.server_id.as_str()), (11, "calc-1"));
    let p = untyped
        .call::<_, Value>("Calc", "scale", &(json!({"x": 1, "y": 2}), 3), wait())
        .await
        .unwrap();
    assert_eq!(p.value, json!({"x": 3, "y": 6}));
    match untyped.call::<_, i64>("Calc", "div", &(1, 0), wait()).await {
        Err(RpcError::Status {
            code,
            message,
            details,
            ..
        }) => {
            assert_eq!(code, StatusCode::Unknown);
            assert_eq!(message, "1 divided by zero");
            assert!(details.is_some(), "the error value travels beside the text");
        }
        other => panic!("expected a status, got {other:?}"),
    }
    // Wrong argument types are refused by the generated server, not misread.
    match untyped
        .call::<_, i64>("Calc", "add", &("one", 2), wait())
        .await
    {
        Err(e) => assert_eq!(e.code(), StatusCode::InvalidArgument, "{e}"),
        Ok(v) => panic!("mistyped arguments answered {:?}", v.value),
    }

    stop.send(()).unwrap();
    let stats = running.await.unwrap();
    assert_eq!(stats.ok, 12, "{stats}");
    assert_eq!(stats.handler_errors, 3, "{stats}");

    // The service name is the trait's: a server configured for another name refuses it.
    let wrong = Server::new(kafka, krpc_tests::tuning::server_options("NotCalc"))
        .expect("valid server options")
        .service(CalcServer::new(Calculator::default()))
        .run(async {})
        .await;
    assert!(
        matches!(&wrong, Err(RpcError::InvalidArgument(m)) if m.contains("Calc")),
        "{wrong:?}"
    );
}

/// What the Python test peer calls (tests/interop/legacy_peer.py `client`): `add(a, b)` on
/// integers or floats, `echo(x)`, `fail(message)`.
#[kafka_rpc::service(name = "typed-python")]
pub trait PyPeer {
    async fn add(&self, a: Number, b: Number) -> Number;
    async fn echo(&self, x: Value) -> Value;
    async fn fail(&self, message: String) -> Result<(), PeerError>;
}

/// An integer or a float, as Python sends them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Number {
    Int(i64),
    Float(f64),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PeerError(String);

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

struct Peer;

impl PyPeer for Peer {
    async fn add(&self, a: Number, b: Number) -> Number {
        match (a, b) {
            (Number::Int(a), Number::Int(b)) => Number::Int(a + b),
            (a, b) => {
                let f = |n| match n {
                    Number::Int(i) => i as f64,
                    Number::Float(f) => f,
                };
                Number::Float(f(a) + f(b))
            }
        }
    }

    async fn echo(&self, x: Value) -> Value {
        x
    }

    async fn fail(&self, message: String) -> Result<(), PeerError> {
        Err(PeerError(message))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_callers_pass_keyword_arguments_named_by_the_trait() {
    let addr = Broker::shared().addr().to_string();
    let kafka = krpc_tests::kafka::client(&addr).await;
    let mut options = krpc_tests::tuning::server_options(PyPeerClient::SERVICE);
    options.server_id = "typed-rust".into();
    options.legacy = Some(kafka_rpc::LegacyOptions::default());
    let server = Server::new(kafka, options)
        .expect("valid server options")
        .service(PyPeerServer::new(Peer));
    let counters = server.counters();
    let (stop, running) = rpc::run_in_background(server);
    assigned(&counters).await;
    let out = python::run_with(
        python::seed_python(),
        "legacy_peer.py",
        &["client", &addr, PyPeerClient::SERVICE, "0", "-"],
        Duration::from_secs(180),
    );
    let got: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let ok = |key: &str, expected: Value| {
        assert_eq!(got[key]["ret"], expected, "{key}: {got}");
        assert_eq!(got[key]["server_id"], json!("typed-rust"), "{key}");
        assert!(got[key].get("exception").is_none(), "{key}: {got}");
    };
    ok("add", json!(3));
    ok("add_kwargs", json!(3));
    ok("add_all_kwargs", json!(3.5));
    ok("echo", json!({"k": [1, "x", null], "n": -7}));
    let raised = |key: &str, expected: &str| {
        assert_eq!(got[key]["ret"], Value::Null, "{key}");
        assert_eq!(got[key]["exception"], json!(expected), "{key}: {got}");
    };
    raised("fail", "RuntimeError('boom')");
    raised(
        "bad_kwarg",
        "TypeError(\"add() got an unexpected keyword argument 'c'\")",
    );
    stop.send(()).unwrap();
    let stats = running.await.unwrap();
    assert_eq!(stats.ok, 4, "{stats}");
}
