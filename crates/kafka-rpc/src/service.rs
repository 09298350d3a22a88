//! The seam between the dispatcher and user code: a [`Service`] is what a [`Server`](crate::Server)
//! calls for every request, with a [`RequestContext`] telling the handler about its call
//! (request id, deadline, routing key, the caller's [`Metadata`], the server id, and a
//! cancellation signal).
//!
//! A service is either built dynamically, method by method, with
//! [`Server::method`](crate::Server::method), or written as a Rust trait
//! and turned into a `Service` by the `#[kafka_rpc::service]` macro; either way the server
//! registers it with [`Server::service`](crate::Server::service) and the dispatcher sees only
//! this trait.
//!
//! Bytes in and out of a `Service` are plaintext msgpack (wire/WIRE.md section 6): the
//! arguments as an array of the positional arguments (keyword arguments of Python 1.0.8 callers
//! already put in place by [`Service::parameters`]), the result as one msgpack value. The
//! record codec (the crate-private `codec` module) has already checked and opened the record (native or
//! legacy format, payload sealing) before a `Service` sees it.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec;
use crate::envelope::RequestId;
use crate::error::HandlerError;
use crate::status::StatusCode;
use crate::trace::TraceContext;

/// The future a [`Service`] returns for one call: the msgpack-encoded result, or a status.
pub type ServiceFuture = Pin<Box<dyn Future<Output = Result<Bytes, HandlerError>> + Send>>;

/// What the dispatcher calls for every request that passed decoding, dedup and the deadline
/// check.
///
/// `call` is given the request's context, the method name and the plaintext msgpack arguments
/// (an array of the positional arguments), and returns a future of the msgpack-encoded result
/// or a [`HandlerError`] (its status goes to the caller). It runs concurrently with other
/// calls (up to [`ServerOptions::concurrency`](crate::ServerOptions::concurrency)); calls with
/// one routing key run one after another. An unknown method should answer
/// [`HandlerError::unimplemented`]. A panic in the future is caught by the dispatcher and
/// answered `INTERNAL` (and the request dead-lettered).
///
/// When the request's deadline passes while the future runs, the context's
/// [`cancelled`](RequestContext::cancelled) resolves; the future then has
/// [`ServerOptions::cancel_grace`](crate::ServerOptions::cancel_grace) to return before it is
/// dropped. Either way the caller gets `DEADLINE_EXCEEDED` and the concurrency permit is
/// released.
pub trait Service: Send + Sync + 'static {
    /// Runs `method` with `args` (msgpack array). The future must not borrow `self` or
    /// `method` (clone what it needs: a `Service` is shared by every running call).
    fn call(&self, ctx: RequestContext, method: &str, args: Bytes) -> ServiceFuture;

    /// The parameter names of `method`, in order, if known: a caller in the Python 1.0.8
    /// format may pass keyword arguments, which are put in place by these names before
    /// [`call`](Self::call). `None`: keyword arguments are refused (`INVALID_ARGUMENT`).
    fn parameters(&self, method: &str) -> Option<Vec<String>> {
        let _ = method;
        None
    }

    /// The service name this implementation is for, if it knows one (a macro-generated
    /// service does). [`Server::run`](crate::Server::run) refuses to serve it under another
    /// [`ServerOptions::service`](crate::ServerOptions::service). `None`: any name.
    fn name(&self) -> Option<&str> {
        None
    }
}

impl<S: Service + ?Sized> Service for Arc<S> {
    fn call(&self, ctx: RequestContext, method: &str, args: Bytes) -> ServiceFuture {
        (**self).call(ctx, method, args)
    }

    fn parameters(&self, method: &str) -> Option<Vec<String>> {
        (**self).parameters(method)
    }

    fn name(&self) -> Option<&str> {
        (**self).name()
    }
}

/// Caller metadata: named byte values a caller attaches to a call beside its arguments
/// (tracing ids, tenant, auth token...), delivered to the handler in its [`RequestContext`].
/// gRPC's metadata, tonic's `MetadataMap`, tarpc's context fields.
///
/// On the wire each entry is one request record header named
/// [`METADATA_HEADER_PREFIX`] + name (wire/WIRE.md section 3.1). Names are 1 to 128 of
/// `a-z 0-9 - _ .` (gRPC's rule for metadata keys: lowercase ASCII); a call with another name
/// is refused at the client ([`Metadata::check`]). Setting a name again replaces its value.
/// Order is kept (insertion order) and is the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, Bytes)>,
}

/// The record header prefix of caller metadata (wire/WIRE.md section 3.1): entry `name` is
/// header `krpc-meta-name`.
pub const METADATA_HEADER_PREFIX: &str = "krpc-meta-";

/// The longest metadata name, in bytes.
pub const METADATA_MAX_NAME: usize = 128;

impl Metadata {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value` (replacing an earlier value of `name`).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Bytes>) {
        let (name, value) = (name.into(), value.into());
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((name, value)),
        }
    }

    /// `self` with `name` set to `value` (builder style).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.insert(name, value);
        self
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The value of `name` as UTF-8 text (`None` if absent or not UTF-8).
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks every name against the rule (1 to [`METADATA_MAX_NAME`] bytes of
    /// `a-z 0-9 - _ .`); the error names the first bad one.
    pub fn check(&self) -> Result<(), String> {
        for (name, _) in &self.entries {
            let ok = !name.is_empty()
                && name.len() <= METADATA_MAX_NAME
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
                });
            if !ok {
                return Err(format!(
                    "metadata name {name:?} must be 1 to {METADATA_MAX_NAME} characters of a-z 0-9 - _ ."
                ));
            }
        }
        Ok(())
    }
}

/// Why a request's context was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// The request's deadline passed: the caller has given up (it gets `DEADLINE_EXCEEDED`).
    DeadlineExceeded,
    /// The server is stopping and its drain timeout ran out
    /// ([`ServerOptions::drain_timeout`](crate::ServerOptions::drain_timeout)); the request
    /// stays uncommitted and runs again on the partition's next owner.
    ServerStopping,
}

/// What a handler knows about the call it is running. Cheap to clone (shared).
#[derive(Clone)]
pub struct RequestContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    request_id: RequestId,
    service: String,
    method: String,
    deadline_ms: Option<i64>,
    deadline: Option<Instant>,
    sent_ms: i64,
    routing_key: Option<Bytes>,
    metadata: Metadata,
    server_id: String,
    one_way: bool,
    partition: i32,
    offset: i64,
    trace: Option<TraceContext>,
    incoming_trace: Option<TraceContext>,
    cancel: CancellationToken,
    reason: AtomicU8,
}

impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.inner;
        f.debug_struct("RequestContext")
            .field("request_id", &i.request_id.to_string())
            .field("service", &i.service)
            .field("method", &i.method)
            .field("deadline_ms", &i.deadline_ms)
            .field("routing_key", &i.routing_key)
            .field("metadata", &i.metadata)
            .field("server_id", &i.server_id)
            .field("one_way", &i.one_way)
            .field("trace", &i.trace.as_ref().map(TraceContext::traceparent))
            .field("cancelled", &self.cancel_reason())
            .finish()
    }
}

/// Builds a [`RequestContext`]: the dispatcher does this for every request; tests and code
/// that calls a [`Service`] directly do it by hand.
#[derive(Debug, Clone)]
pub struct ContextBuilder {
    request_id: RequestId,
    service: String,
    method: String,
    deadline_ms: Option<i64>,
    sent_ms: i64,
    routing_key: Option<Bytes>,
    metadata: Metadata,
    server_id: String,
    one_way: bool,
    partition: i32,
    offset: i64,
    trace: Option<TraceContext>,
    incoming_trace: Option<TraceContext>,
    cancel: Option<CancellationToken>,
}

impl ContextBuilder {
    /// Service name.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Absolute deadline, ms since the Unix epoch (the request's `krpc-deadline-ms`).
    pub fn deadline_ms(mut self, deadline_ms: Option<i64>) -> Self {
        self.deadline_ms = deadline_ms;
        self
    }

    /// Deadline `after` from now.
    pub fn timeout(self, after: Duration) -> Self {
        let d = crate::envelope::now_ms()
            .saturating_add(after.as_millis().min(i64::MAX as u128) as i64);
        self.deadline_ms(Some(d))
    }

    /// When the caller sent it, ms since the Unix epoch.
    pub fn sent_ms(mut self, sent_ms: i64) -> Self {
        self.sent_ms = sent_ms;
        self
    }

    /// The routing key (the request record's key).
    pub fn routing_key(mut self, key: Option<Bytes>) -> Self {
        self.routing_key = key;
        self
    }

    /// Caller metadata.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The serving server's id.
    pub fn server_id(mut self, server_id: impl Into<String>) -> Self {
        self.server_id = server_id.into();
        self
    }

    /// Whether the caller waits for no reply.
    pub fn one_way(mut self, one_way: bool) -> Self {
        self.one_way = one_way;
        self
    }

    /// Where the request record was read (partition, offset).
    pub fn position(mut self, partition: i32, offset: i64) -> Self {
        self.partition = partition;
        self.offset = offset;
        self
    }

    /// The trace context of the request's span on this server (see
    /// [`RequestContext::trace`]).
    pub fn trace(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The caller's trace context as its request carried it (see
    /// [`RequestContext::incoming_trace`]).
    pub fn incoming_trace(mut self, trace: Option<TraceContext>) -> Self {
        self.incoming_trace = trace;
        self
    }

    /// Cancel the context when `parent` is cancelled (the server's shutdown token).
    pub fn parent(mut self, parent: &CancellationToken) -> Self {
        self.cancel = Some(parent.child_token());
        self
    }

    /// The context.
    pub fn build(self) -> RequestContext {
        let deadline = self.deadline_ms.map(|d| {
            let left = d.saturating_sub(crate::envelope::now_ms());
            Instant::now() + Duration::from_millis(left.max(0) as u64)
        });
        RequestContext {
            inner: Arc::new(ContextInner {
                request_id: self.request_id,
                service: self.service,
                method: self.method,
                deadline_ms: self.deadline_ms,
                deadline,
                sent_ms: self.sent_ms,
                routing_key: self.routing_key,
                metadata: self.metadata,
                server_id: self.server_id,
                one_way: self.one_way,
                partition: self.partition,
                offset: self.offset,
                trace: self.trace,
                incoming_trace: self.incoming_trace,
                cancel: self.cancel.unwrap_or_default(),
                reason: AtomicU8::new(0),
            }),
        }
    }
}

impl RequestContext {
    /// A builder for a context of `method` called as request `request_id`.
    pub fn builder(request_id: RequestId, method: impl Into<String>) -> ContextBuilder {
        ContextBuilder {
            request_id,
            service: String::new(),
            method: method.into(),
            deadline_ms: None,
            sent_ms: crate::envelope::now_ms(),
            routing_key: None,
            metadata: Metadata::default(),
            server_id: String::new(),
            one_way: false,
            partition: -1,
            offset: -1,
            trace: None,
            incoming_trace: None,
            cancel: None,
        }
    }

    /// The call's id (`krpc-id`; for the Python format, the task id).
    pub fn request_id(&self) -> RequestId {
        self.inner.request_id
    }

    /// The service served.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// The method called.
    pub fn method(&self) -> &str {
        &self.inner.method
    }

    /// The absolute deadline as sent (ms since the Unix epoch), if the call has one. One-way
    /// calls sent without a deadline, and every call in the Python 1.0.8 format, have none.
    pub fn deadline_ms(&self) -> Option<i64> {
        self.inner.deadline_ms
    }

    /// The deadline on this process's monotonic clock (taken from [`deadline_ms`](Self::deadline_ms)
    /// when the request was picked up; the caller's and server's wall clocks are trusted to agree).
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// Time left before the deadline (zero once passed); `None` without a deadline.
    pub fn time_left(&self) -> Option<Duration> {
        self.inner
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// When the caller sent the call, ms since the Unix epoch (its clock).
    pub fn sent_ms(&self) -> i64 {
        self.inner.sent_ms
    }

    /// The routing key the caller chose (the request record's key), if any.
    pub fn routing_key(&self) -> Option<&Bytes> {
        self.inner.routing_key.as_ref()
    }

    /// The caller's metadata headers.
    pub fn metadata(&self) -> &Metadata {
        &self.inner.metadata
    }

    /// This server's id ([`ServerOptions::server_id`](crate::ServerOptions::server_id)).
    pub fn server_id(&self) -> &str {
        &self.inner.server_id
    }

    /// Whether the caller waits for no reply (a one-way call, a job).
    pub fn is_one_way(&self) -> bool {
        self.inner.one_way
    }

    /// The request topic partition and offset the request was read at (-1, -1 if built by hand).
    pub fn position(&self) -> (i32, i64) {
        (self.inner.partition, self.inner.offset)
    }

    /// The trace context of this request's `krpc.request` span: the caller's trace id (a new
    /// one when the request carried no valid `traceparent`) and this span's id. The server runs
    /// the handler inside [`trace::scope`](crate::trace::scope) of it, so calls the handler
    /// makes on its own task are children of this span; hand it to other tasks with
    /// `trace::scope(ctx.trace().cloned().unwrap(), fut)`. `None` for a context built by hand
    /// without one.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.inner.trace.as_ref()
    }

    /// The caller's trace context as its request record carried it (`traceparent`,
    /// `tracestate`; wire/WIRE.md section 3.2); `None` if absent or invalid.
    pub fn incoming_trace(&self) -> Option<&TraceContext> {
        self.inner.incoming_trace.as_ref()
    }

    /// Resolves once the call is cancelled: its deadline passed, or the server is stopping
    /// and gave up waiting. A handler should stop then; the caller no longer waits (the reply
    /// is `DEADLINE_EXCEEDED` whatever it returns). Cancel-safe.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Whether the call is cancelled (see [`cancelled`](Self::cancelled)).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Why the call was cancelled, if it was.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        match self.inner.reason.load(Ordering::Acquire) {
            1 => Some(CancelReason::DeadlineExceeded),
            2 => Some(CancelReason::ServerStopping),
            _ if self.is_cancelled() => Some(CancelReason::ServerStopping),
            _ => None,
        }
    }

    /// The cancellation token (for `select!` or to hand to other tasks; a child token of it
    /// is cancelled with it).
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Cancels the call for `reason` (the dispatcher does this; the first reason stays).
    pub fn cancel(&self, reason: CancelReason) {
        let code = match reason {
            CancelReason::DeadlineExceeded => 1,
            CancelReason::ServerStopping => 2,
        };
        let _ = self
            .inner
            .reason
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.inner.cancel.cancel();
    }
}

/// A method handler behind one signature: context and msgpack arguments in, msgpack result or
/// a status out.
type Handler = Arc<dyn Fn(RequestContext, Bytes) -> ServiceFuture + Send + Sync>;

/// A [`Service`] built at run time from closures, one per method: what
/// [`Server::method`](crate::Server::method) and its siblings fill. Argument decoding errors
/// become `INVALID_ARGUMENT`, a handler panic `INTERNAL`.
#[derive(Clone, Default)]
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) struct Methods {
    handlers: HashMap<String, Handler>,
    params: HashMap<String, Vec<String>>,
}

impl std::fmt::Debug for Methods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.handlers.keys().collect();
        names.sort();
        f.debug_struct("Methods").field("methods", &names).finish()
    }
}

fn decode_args<A: DeserializeOwned>(payload: &[u8]) -> Result<A, HandlerError> {
    codec::decode_args(payload).map_err(|e| {
        HandlerError::new(
            StatusCode::InvalidArgument,
            format!("the arguments do not match the method's parameters: {e}"),
        )
    })
}

fn encode_result<R: Serialize>(value: &R) -> Result<Bytes, HandlerError> {
    codec::encode(value).map_err(|e| {
        HandlerError::new(
            StatusCode::Internal,
            format!("cannot encode the result: {e}"),
        )
    })
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".to_string()
    }
}

/// The status of a caught panic.
pub(crate) fn panicked(payload: &(dyn std::any::Any + Send)) -> HandlerError {
    HandlerError::new(
        StatusCode::Internal,
        format!("the handler panicked: {}", panic_message(payload)),
    )
}

impl Methods {
    /// No methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there are no methods.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    /// Adds an async method taking the tuple of its arguments `A` and the request context.
    pub fn add_with_context<A, R, F, Fut>(&mut self, name: &str, f: F)
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(RequestContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let handler: Handler = Arc::new(move |ctx: RequestContext, payload: Bytes| {
            let f = f.clone();
            Box::pin(async move {
                let args: A = decode_args(&payload)?;
                let value = AssertUnwindSafe(async move { f(ctx, args).await })
                    .catch_unwind()
                    .await
                    .map_err(|p| panicked(&*p))??;
                encode_result(&value)
            })
        });
        self.handlers.insert(name.to_string(), handler);
    }

    /// Adds an async method taking the tuple of its arguments `A`.
    pub fn add<A, R, F, Fut>(&mut self, name: &str, f: F)
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        self.add_with_context(name, move |_ctx: RequestContext, args: A| f(args));
    }

    /// Adds a blocking method (run on the blocking thread pool). A blocking method cannot be
    /// stopped from outside: at its deadline its permit is released and the caller answered,
    /// but the thread runs on until the function returns (check
    /// [`RequestContext::is_cancelled`] in long loops).
    pub fn add_blocking_with_context<A, R, F>(&mut self, name: &str, f: F)
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(RequestContext, A) -> Result<R, HandlerError> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let handler: Handler = Arc::new(move |ctx: RequestContext, payload: Bytes| {
            let f = f.clone();
            Box::pin(async move {
                let args: A = decode_args(&payload)?;
                let value = tokio::task::spawn_blocking(move || f(ctx, args))
                    .await
                    .map_err(|e| match e.try_into_panic() {
                        Ok(p) => panicked(&*p),
                        Err(e) => HandlerError::new(
                            StatusCode::Internal,
                            format!("the handler was cancelled: {e}"),
                        ),
                    })??;
                encode_result(&value)
            })
        });
        self.handlers.insert(name.to_string(), handler);
    }

    /// Adds a blocking method taking the tuple of its arguments `A`.
    pub fn add_blocking<A, R, F>(&mut self, name: &str, f: F)
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Result<R, HandlerError> + Send + Sync + 'static,
    {
        self.add_blocking_with_context(name, move |_ctx: RequestContext, args: A| f(args));
    }

    /// Declares the parameter names of `method`, in order (for Python 1.0.8 keyword arguments).
    pub fn set_parameters(&mut self, method: &str, names: &[&str]) {
        self.params.insert(
            method.to_string(),
            names.iter().map(|n| n.to_string()).collect(),
        );
    }
}

impl Service for Methods {
    fn call(&self, ctx: RequestContext, method: &str, args: Bytes) -> ServiceFuture {
        match self.handlers.get(method) {
            Some(h) => h(ctx, args),
            None => {
                let e = HandlerError::unimplemented(method);
                Box::pin(async move { Err(e) })
            }
        }
    }

    fn parameters(&self, method: &str) -> Option<Vec<String>> {
        self.params.get(method).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &Methods, method: &str, payload: Bytes) -> Result<Bytes, HandlerError> {
        let ctx = RequestContext::builder(RequestId([7; 16]), method).build();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(s.call(ctx, method, payload))
    }

    #[test]
    fn arguments_errors_and_panics_become_statuses() {
        let mut m = Methods::new();
        m.add("add", |(a, b): (i64, i64)| async move {
            Ok::<_, HandlerError>(a + b)
        });
        m.add("fails", |(): ()| async move {
            Err::<(), _>(HandlerError::from("boom"))
        });
        m.add("panics", |(): ()| async move {
            if true {
                panic!("kaput");
            }
            Ok::<(), HandlerError>(())
        });
        let five = run(&m, "add", codec::encode(&(2, 3)).unwrap()).unwrap();
        assert_eq!(codec::decode::<i64>(&five).unwrap(), 5);
        let bad = run(&m, "add", codec::encode(&("x",)).unwrap()).unwrap_err();
        assert_eq!(bad.code, StatusCode::InvalidArgument);
        let garbage = run(&m, "add", Bytes::from_static(&[0xc1])).unwrap_err();
        assert_eq!(garbage.code, StatusCode::InvalidArgument);
        let e = run(&m, "fails", codec::encode(&()).unwrap()).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (StatusCode::Unknown, "boom"));
        let e = run(&m, "panics", codec::encode(&()).unwrap()).unwrap_err();
        assert_eq!(e.code, StatusCode::Internal);
        assert!(e.message.contains("kaput"), "{}", e.message);
        let e = run(&m, "nope", codec::encode(&()).unwrap()).unwrap_err();
        assert_eq!(e.code, StatusCode::Unimplemented);
    }

    #[test]
    fn the_context_reaches_the_handler() {
        let mut m = Methods::new();
        m.add_with_context("who", |ctx: RequestContext, (): ()| async move {
            Ok::<_, HandlerError>((
                ctx.metadata().get_str("tenant").map(str::to_string),
                ctx.request_id().to_string(),
            ))
        });
        let ctx = RequestContext::builder(RequestId([1; 16]), "who")
            .metadata(Metadata::new().with("tenant", "acme"))
            .build();
        let out = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(m.call(ctx, "who", codec::encode_args(&()).unwrap()))
            .unwrap();
        let (tenant, id): (Option<String>, String) = codec::decode(&out).unwrap();
        assert_eq!(tenant.as_deref(), Some("acme"));
        assert_eq!(id, "01".repeat(16));
    }

    #[test]
    fn metadata_names_follow_grpcs_rule() {
        assert!(Metadata::new().with("trace-id.v1_x", "1").check().is_ok());
        assert!(Metadata::new().with("Trace", "1").check().is_err());
        assert!(Metadata::new().with("", "1").check().is_err());
        assert!(Metadata::new().with("a b", "1").check().is_err());
        let mut m = Metadata::new().with("a", "1");
        m.insert("a", "2");
        assert_eq!((m.len(), m.get_str("a")), (1, Some("2")));
    }

    #[test]
    fn cancellation_keeps_its_first_reason() {
        let ctx = RequestContext::builder(RequestId([1; 16]), "m").build();
        assert_eq!(ctx.cancel_reason(), None);
        ctx.cancel(CancelReason::DeadlineExceeded);
        ctx.cancel(CancelReason::ServerStopping);
        assert!(ctx.is_cancelled());
        assert_eq!(ctx.cancel_reason(), Some(CancelReason::DeadlineExceeded));
    }
}
