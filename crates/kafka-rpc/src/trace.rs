//! Tracing: a [`tracing`] span per call and per served request, and the
//! [W3C Trace Context](https://www.w3.org/TR/trace-context/) (`traceparent`, `tracestate`)
//! carried as headers of the request record (wire/WIRE.md section 3.2), so the server's span is
//! a child of the caller's.
//!
//! # Spans
//!
//! | span           | where | OpenTelemetry kind |
//! |----------------|-------|--------------------|
//! | `krpc.call`    | the client, around one call or one-way call ([`RpcClient`](crate::RpcClient), [`LegacyClient`](crate::LegacyClient) and the typed clients): encoding, sending, waiting for the reply | `client` (`producer` for a one-way call) |
//! | `krpc.request` | the server, around one request record: decoding, dedup, the handler, the reply | `server` |
//!
//! Both are at level INFO and carry these fields (names from the OpenTelemetry semantic
//! conventions for RPC and for Kafka messaging where one fits):
//!
//! | field | value |
//! |-------|-------|
//! | `rpc.system` | `"kafka-rpc"` |
//! | `rpc.service`, `rpc.method` | service and method names |
//! | `messaging.system` | `"kafka"` |
//! | `messaging.destination.name` | the request topic |
//! | `messaging.destination.partition.id` | the request record's partition (the client records it once Kafka has stored the record) |
//! | `messaging.kafka.offset` | the request record's offset (likewise) |
//! | `messaging.message.id` | the request id (`krpc-id`, 32 hex digits) |
//! | `rpc.response.status_code` | the status name (`OK`, `DEADLINE_EXCEEDED`, ...; section 5 of WIRE.md), once known; on the server also `CANCELLED` or `ALREADY_EXISTS` (see "Statuses") |
//! | `otel.name`, `otel.kind`, `otel.status_code` | read by `tracing-opentelemetry`: the span's name (`Service/method`), kind, and `error` for a failed call |
//! | `trace_id`, `span_id` | this span's W3C trace id and span id (32 and 16 hex digits) |
//! | `parent_span_id` | the span id of its parent, when it has one (on the server: the caller's `krpc.call` span) |
//!
//! # Statuses
//!
//! A call's span records `OK` or the status of its error ([`RpcError::code`]). Every
//! `krpc.request` span records a status too, also for a request that is not run or not
//! answered (the status is recorded where it is decided):
//!
//! | the request | `rpc.response.status_code` |
//! |-------------|----------------------------|
//! | ran | the status of its reply (sent, or not sent for a one-way call) |
//! | refused (oversize, malformed, not authentic, unknown method, bad arguments) | the status of the refusal |
//! | past its deadline at pickup (not run, not answered) | `DEADLINE_EXCEEDED` |
//! | a duplicate of a request already answered (its reply re-sent) | the status of the re-sent reply |
//! | a duplicate of a request still running from an earlier offset (not started again; the reply comes from the first copy) | `ALREADY_EXISTS` |
//! | a legacy (Python) client's handshake (answered) | `OK` |
//! | its handler stopped because the server stopped (not answered; the request runs again on the partition's next owner) | `CANCELLED` |
//! | serving it panicked in the server itself (not in the handler; left uncommitted) | `INTERNAL` |
//!
//! `CANCELLED` and `ALREADY_EXISTS` are gRPC status names that no reply carries (they are not
//! in section 5 of WIRE.md); they appear only on spans, chosen as a gRPC server would show
//! them: a gRPC handler whose context is cancelled ends `CANCELLED` (grpc-go maps a cancelled
//! context to it), and `ALREADY_EXISTS` says "this request id exists, and is in progress"
//! (`ABORTED` would say the work was given up, `OK` that this copy was served). Neither marks
//! the server span as an error (`otel.status_code`): OpenTelemetry's gRPC conventions count
//! only `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE` and
//! `DATA_LOSS` as server errors.
//!
//! # Propagation
//!
//! The client writes `traceparent` (and `tracestate`, if any) on every request record it sends;
//! the server reads them and makes its `krpc.request` span a child of the caller's span
//! (same trace id; parent span id = the caller's span id). A missing header starts a new trace;
//! an invalid one is ignored (it comes off the network: the request is served as usual, a new
//! trace starts, the problem is logged at DEBUG and counted in the server's
//! `invalid_trace_headers` and in [`invalid_headers`]).
//!
//! Where the client takes its parent from, first match wins:
//!
//! 1. with the `otel` feature, the current `tracing` span's OpenTelemetry context (what
//!    tonic interceptors and tarpc do): a call made inside an instrumented function is a child
//!    of that function's span;
//! 2. the context of [`scope`]: the server runs every handler inside `scope(<the request's
//!    span context>)`, so a handler that calls another service continues the trace with no
//!    code (a task it spawns does not inherit a task-local: wrap its future in
//!    `trace::scope(ctx.trace().cloned().unwrap(), fut)`, or pass the context along);
//!    code outside a handler sets its own with [`scope`], e.g. from an incoming HTTP
//!    `traceparent` parsed with [`TraceContext::from_traceparent`];
//! 3. none: the call starts a new trace (a random trace id).
//!
//! The handler sees the request's trace in
//! [`RequestContext::trace`](crate::RequestContext::trace) (its own span's context) and
//! [`RequestContext::incoming_trace`](crate::RequestContext::incoming_trace) (as the caller
//! sent it).
//!
//! # The `otel` feature
//!
//! With it, span ids come from OpenTelemetry when a `tracing_opentelemetry` layer is installed:
//! the server span's parent is set with `OpenTelemetrySpanExt::set_parent`, and the
//! `traceparent` a client sends is its `krpc.call` span's OpenTelemetry context. The library
//! installs no exporter (the application chooses one). Without a layer, or without the
//! feature, the ids are made here and the headers travel all the same.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use krpc_kafka::{ConsumerRecord, Header};
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::envelope::RequestId;
use crate::error::RpcError;
use crate::server::stats::Stat;
use crate::status::StatusCode;

/// Record header carrying the W3C `traceparent` (ASCII text, e.g.
/// `00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01`).
pub const TRACEPARENT: &str = "traceparent";
/// Record header carrying the W3C `tracestate` (ASCII text, vendor entries `key=value,...`).
pub const TRACESTATE: &str = "tracestate";
/// The `rpc.system` of our spans.
pub const RPC_SYSTEM: &str = "kafka-rpc";
/// The `sampled` bit of the trace flags.
pub const FLAG_SAMPLED: u8 = 0x01;
/// The `random` bit of the trace flags (W3C Trace Context level 2: at least the right-most 7
/// bytes of the trace id are random).
pub const FLAG_RANDOM: u8 = 0x02;
/// The flag bits a version-00 `traceparent` defines (`sampled`, and level 2's `random`); a
/// parsed context keeps only these (W3C: vendors must set the other bits to zero).
pub const KNOWN_FLAGS: u8 = FLAG_SAMPLED | FLAG_RANDOM;

/// A W3C trace id: 16 bytes, never all zero; shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

/// A W3C span id (`parent-id` in `traceparent`): 8 bytes, never all zero; shown as 16
/// lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

macro_rules! id_type {
    ($t:ident, $n:literal) => {
        impl $t {
            /// A random id (never all zero).
            pub fn random() -> Self {
                loop {
                    let b: [u8; $n] = rand::random();
                    if b != [0; $n] {
                        return Self(b);
                    }
                }
            }

            /// The id of these bytes; `None` if they are all zero (the W3C invalid id).
            pub fn from_bytes(bytes: [u8; $n]) -> Option<Self> {
                (bytes != [0; $n]).then_some(Self(bytes))
            }

            /// Its bytes.
            pub fn to_bytes(self) -> [u8; $n] {
                self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($t))
            }
        }
    };
}
id_type!(TraceId, 16);
id_type!(SpanId, 8);

/// One span's place in a distributed trace: what `traceparent` and `tracestate` carry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    flags: u8,
    state: Option<String>,
}

/// Why a `traceparent` or `tracestate` value was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {header}: {reason}")]
pub struct InvalidTraceContext {
    /// [`TRACEPARENT`] or [`TRACESTATE`].
    pub header: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn invalid(header: &'static str, reason: impl Into<String>) -> InvalidTraceContext {
    InvalidTraceContext {
        header,
        reason: reason.into(),
    }
}

/// Lowercase hex only: the `hex` crate also accepts uppercase, which W3C Trace Context
/// (`HEXDIGLC`) does not, hence this small decoder.
fn lower_hex<const N: usize>(s: &[u8], what: &str) -> Result<[u8; N], InvalidTraceContext> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    if s.len() != 2 * N {
        return Err(invalid(
            TRACEPARENT,
            format!("{what} is not {} hex digits", 2 * N),
        ));
    }
    for (i, pair) in s.chunks_exact(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => out[i] = h << 4 | l,
            _ => {
                return Err(invalid(
                    TRACEPARENT,
                    format!("{what} is not lowercase hex digits"),
                ))
            }
        }
    }
    Ok(out)
}

impl TraceContext {
    /// A context of `trace_id` and `span_id` with `flags` (bit 0: sampled), no trace state.
    pub fn new(trace_id: TraceId, span_id: SpanId, flags: u8) -> Self {
        Self {
            trace_id,
            span_id,
            flags,
            state: None,
        }
    }

    /// The root of a new trace: random trace id and span id, sampled.
    pub fn new_root() -> Self {
        Self::new(TraceId::random(), SpanId::random(), FLAG_SAMPLED)
    }

    /// A child span of this one: same trace, flags and trace state, a new random span id.
    pub fn child(&self) -> Self {
        Self {
            span_id: SpanId::random(),
            ..self.clone()
        }
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span id (the `parent-id` a request carries: the caller's span).
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The trace flags byte (`trace-flags`).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the `sampled` flag is set.
    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// The `tracestate` value, if any (validated, as received).
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// Parses a `traceparent` value (W3C Trace Context level 1, section 3.2): version `00` is
    /// exactly 55 characters `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase
    /// hex, neither id all zeros; of its flags only [`KNOWN_FLAGS`] are kept (`sampled` and
    /// `random`: the other bits are not passed on to children). A higher version (but not
    /// `ff`) is read as its first 55 characters in the version 00 layout, followed by the end
    /// or a `-` and more fields, which are ignored; of its flags only `sampled` is kept
    /// (section 3.3 "Versioning").
    pub fn from_traceparent(value: &str) -> Result<Self, InvalidTraceContext> {
        let b = value.as_bytes();
        if b.len() < 55 {
            return Err(invalid(
                TRACEPARENT,
                format!("{} characters, fewer than 55", b.len()),
            ));
        }
        let [version] = lower_hex::<1>(&b[0..2], "the version")?;
        if version == 0xff {
            return Err(invalid(TRACEPARENT, "version ff is invalid"));
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(invalid(TRACEPARENT, "the fields are not separated by '-'"));
        }
        let trace_id = TraceId::from_bytes(lower_hex::<16>(&b[3..35], "the trace id")?)
            .ok_or_else(|| invalid(TRACEPARENT, "the trace id is all zeros"))?;
        let span_id = SpanId::from_bytes(lower_hex::<8>(&b[36..52], "the parent id")?)
            .ok_or_else(|| invalid(TRACEPARENT, "the parent id is all zeros"))?;
        let [mut flags] = lower_hex::<1>(&b[53..55], "the flags")?;
        if version == 0 {
            if b.len() != 55 {
                return Err(invalid(
                    TRACEPARENT,
                    format!("version 00 has 55 characters, not {}", b.len()),
                ));
            }
            flags &= KNOWN_FLAGS;
        } else {
            if b.len() > 55 && b[55] != b'-' {
                return Err(invalid(
                    TRACEPARENT,
                    "the flags of a newer version are not followed by '-' or the end",
                ));
            }
            flags &= FLAG_SAMPLED;
        }
        Ok(Self::new(trace_id, span_id, flags))
    }

    /// This context with the `tracestate` `value` (W3C Trace Context section 3.3): at most 32
    /// list members `key=value` separated by `,` (empty members and spaces around them are
    /// allowed), keys of `a-z 0-9 _ - * /` starting with a letter or, with a tenant
    /// (`tenant@system`), a digit, values of printable ASCII but `,` and `=`, no key twice.
    /// An empty value (no members) is no trace state.
    pub fn with_state(mut self, value: &str) -> Result<Self, InvalidTraceContext> {
        let mut keys = Vec::new();
        for member in value.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let (key, v) = member
                .split_once('=')
                .ok_or_else(|| invalid(TRACESTATE, "a list member has no '='"))?;
            if !valid_state_key(key) {
                return Err(invalid(TRACESTATE, format!("invalid key {key:?}")));
            }
            if !valid_state_value(v) {
                return Err(invalid(TRACESTATE, format!("invalid value of {key:?}")));
            }
            if keys.contains(&key) {
                return Err(invalid(TRACESTATE, format!("the key {key:?} is repeated")));
            }
            keys.push(key);
            if keys.len() > 32 {
                return Err(invalid(TRACESTATE, "more than 32 list members"));
            }
        }
        self.state = (!keys.is_empty()).then(|| value.to_string());
        Ok(self)
    }

    /// The `traceparent` value of this context, version 00.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }

    /// The headers carrying this context: `traceparent`, then `tracestate` if there is one.
    pub fn to_headers(&self) -> Vec<Header> {
        let mut headers = vec![Header::new(TRACEPARENT, self.traceparent())];
        if let Some(state) = &self.state {
            headers.push(Header::new(TRACESTATE, state.clone()));
        }
        headers
    }

    /// The context the headers of a record carry (WIRE.md section 3.2): `Ok(None)` without a
    /// `traceparent` (a null value counts as absent). A repeated or invalid `traceparent` is an
    /// error; so is an invalid `tracestate` (several `tracestate` headers are joined with `,`
    /// first, as HTTP joins repeated fields), which a reader may drop while keeping the
    /// `traceparent` ([`TraceContext::from_headers_lenient`] does).
    pub fn from_headers(headers: &[Header]) -> Result<Option<Self>, InvalidTraceContext> {
        let (parent, state) = Self::read_headers(headers)?;
        match (parent, state) {
            (None, _) => Ok(None),
            (Some(p), None) => Ok(Some(p)),
            (Some(p), Some(s)) => p.with_state(&s?).map(Some),
        }
    }

    /// As [`from_headers`](Self::from_headers), but an invalid `tracestate` only drops the
    /// trace state (W3C: a vendor may discard it and keep the `traceparent`). Returns the
    /// context and the problem, if any.
    pub fn from_headers_lenient(headers: &[Header]) -> (Option<Self>, Option<InvalidTraceContext>) {
        match Self::read_headers(headers) {
            Err(e) => (None, Some(e)),
            Ok((None, _)) => (None, None),
            Ok((Some(p), None)) => (Some(p), None),
            Ok((Some(p), Some(state))) => match state.and_then(|s| p.clone().with_state(&s)) {
                Ok(with) => (Some(with), None),
                Err(e) => (Some(p), Some(e)),
            },
        }
    }

    /// The traceparent (parsed) and the joined tracestate text (unparsed) of `headers`.
    #[allow(clippy::type_complexity)]
    fn read_headers(
        headers: &[Header],
    ) -> Result<(Option<Self>, Option<Result<String, InvalidTraceContext>>), InvalidTraceContext>
    {
        let mut parents = headers
            .iter()
            .filter(|h| h.key == TRACEPARENT)
            .filter_map(|h| h.value.as_ref());
        let Some(first) = parents.next() else {
            return Ok((None, None));
        };
        if parents.next().is_some() {
            return Err(invalid(TRACEPARENT, "the header is repeated"));
        }
        let text = std::str::from_utf8(first).map_err(|_| invalid(TRACEPARENT, "not UTF-8"))?;
        let parent = Self::from_traceparent(text)?;
        let mut state: Option<Result<String, InvalidTraceContext>> = None;
        for value in headers
            .iter()
            .filter(|h| h.key == TRACESTATE)
            .filter_map(|h| h.value.as_ref())
        {
            let part = std::str::from_utf8(value).map_err(|_| invalid(TRACESTATE, "not UTF-8"));
            state = Some(match (state, part) {
                (None, p) => p.map(str::to_string),
                (Some(Ok(s)), Ok(p)) => Ok(format!("{s},{p}")),
                (Some(Err(e)), _) | (_, Err(e)) => Err(e),
            });
        }
        Ok((Some(parent), state))
    }
}

fn state_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// `simple-key` (a letter, then up to 255 key characters) or `multi-tenant-key`
/// (`tenant@system`: a letter or digit then up to 240; a letter then up to 13).
fn valid_state_key(key: &str) -> bool {
    let b = key.as_bytes();
    match key.split_once('@') {
        None => {
            !b.is_empty()
                && b.len() <= 256
                && b[0].is_ascii_lowercase()
                && b.iter().all(|&c| state_key_char(c))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            !t.is_empty()
                && t.len() <= 241
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().all(|&c| state_key_char(c))
                && !s.is_empty()
                && s.len() <= 14
                && s[0].is_ascii_lowercase()
                && s.iter().all(|&c| state_key_char(c))
        }
    }
}

/// Up to 256 printable ASCII characters but `,` and `=`, not ending in a space.
fn valid_state_value(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// The trace context set by the innermost [`scope`] around the running task, if any (the
/// server sets one around every handler: the request's span context).
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `fut` with `context` as the [`current`] trace context: calls made inside it (on this
/// task) are its children. See the module documentation for how a client picks its parent.
pub fn scope<F: Future>(context: TraceContext, fut: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(context, fut)
}

static INVALID_HEADERS: AtomicU64 = AtomicU64::new(0);

/// Request records served by this process whose `traceparent` or `tracestate` was invalid
/// (ignored: the request started a new trace, or kept its `traceparent` without the state).
/// All servers of the process together; each server's own count is its `invalid_trace_headers`
/// ([`ServerStats`](crate::ServerStats), exported as `krpc_server_invalid_trace_headers_total`).
pub fn invalid_headers() -> u64 {
    INVALID_HEADERS.load(Ordering::Relaxed)
}

/// The trace context a request record carries; an invalid one is counted (in `invalid`, the
/// server's `invalid_trace_headers`, and in [`invalid_headers`]), logged at DEBUG and ignored
/// (never an error of the call: the headers come off the network).
fn extract(record: &ConsumerRecord, invalid: &Stat) -> Option<TraceContext> {
    let (context, problem) = TraceContext::from_headers_lenient(&record.headers);
    if let Some(e) = problem {
        INVALID_HEADERS.fetch_add(1, Ordering::Relaxed);
        invalid.add(1);
        tracing::debug!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %e, "trace context header ignored");
    }
    context
}

/// The trace of a request on the server: its span's context and the caller's, as received.
#[derive(Debug, Clone)]
pub(crate) struct RequestTrace {
    /// The `krpc.request` span's context (the parent of calls its handler makes).
    pub context: TraceContext,
    /// The caller's context from the record's headers, if valid.
    pub incoming: Option<TraceContext>,
}

/// Records the trace fields of `span`.
fn record_ids(span: &Span, own: &TraceContext, parent: Option<&TraceContext>) {
    span.record("trace_id", tracing::field::display(own.trace_id));
    span.record("span_id", tracing::field::display(own.span_id));
    if let Some(p) = parent {
        span.record("parent_span_id", tracing::field::display(p.span_id));
    }
}

/// The `krpc.call` span of a call (`one_way`: a [`RpcClient::notify`](crate::RpcClient::notify)) and
/// the context its request record carries. Its parent: see the module documentation.
pub(crate) fn client_span(
    service: &str,
    method: &str,
    topic: &str,
    id: RequestId,
    one_way: bool,
) -> (Span, TraceContext) {
    let span = tracing::info_span!(
        "krpc.call",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = if one_way { "producer" } else { "client" },
        otel.status_code = Empty,
        rpc.system = RPC_SYSTEM,
        rpc.service = service,
        rpc.method = method,
        messaging.system = "kafka",
        messaging.destination.name = topic,
        messaging.destination.partition.id = Empty,
        messaging.kafka.offset = Empty,
        messaging.message.id = %id,
        rpc.response.status_code = Empty,
        trace_id = Empty,
        span_id = Empty,
        parent_span_id = Empty,
    );
    #[cfg(feature = "otel")]
    if let Some((own, parent)) = otel::start_client(&span) {
        record_ids(&span, &own, parent.as_ref());
        return (span, own);
    }
    let parent = current();
    let own = parent
        .as_ref()
        .map_or_else(TraceContext::new_root, TraceContext::child);
    record_ids(&span, &own, parent.as_ref());
    (span, own)
}

/// The `krpc.request` span of a request record of `service`, a child of the caller's span
/// when the record carries a valid `traceparent`, else the root of a new trace (never a child
/// of the serving loop's span). An invalid trace header is counted in `invalid_headers` (the
/// server's counter).
pub(crate) fn server_span(
    service: &str,
    record: &ConsumerRecord,
    invalid_headers: &Stat,
) -> (Span, RequestTrace) {
    let incoming = extract(record, invalid_headers);
    let span = tracing::info_span!(
        parent: None,
        "krpc.request",
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = RPC_SYSTEM,
        rpc.service = service,
        rpc.method = Empty,
        messaging.system = "kafka",
        messaging.destination.name = %record.topic,
        messaging.destination.partition.id = %record.partition,
        messaging.kafka.offset = record.offset,
        messaging.message.id = Empty,
        rpc.response.status_code = Empty,
        trace_id = Empty,
        span_id = Empty,
        parent_span_id = Empty,
    );
    #[cfg(feature = "otel")]
    if let Some(context) = otel::start_server(&span, incoming.as_ref()) {
        record_ids(&span, &context, incoming.as_ref());
        return (span, RequestTrace { context, incoming });
    }
    let context = incoming
        .as_ref()
        .map_or_else(TraceContext::new_root, TraceContext::child);
    record_ids(&span, &context, incoming.as_ref());
    (span, RequestTrace { context, incoming })
}

/// Records the request's id and method on the current `krpc.request` span, once decoded.
pub(crate) fn record_request(service: &str, id: RequestId, method: &str) {
    let span = Span::current();
    span.record("rpc.method", method);
    span.record("messaging.message.id", tracing::field::display(id));
    span.record(
        "otel.name",
        tracing::field::display(format_args!("{service}/{method}")),
    );
    // The OpenTelemetry span exists already (its ids were needed): rename it there too.
    #[cfg(feature = "otel")]
    otel::rename(&span, format!("{service}/{method}"));
}

/// Records where Kafka stored the request record, on the current `krpc.call` span.
pub(crate) fn record_position(partition: i32, offset: i64) {
    let span = Span::current();
    span.record(
        "messaging.destination.partition.id",
        tracing::field::display(partition),
    );
    if offset >= 0 {
        span.record("messaging.kafka.offset", offset);
    }
}

/// Runs `call` inside its `krpc.call` span (from [`client_span`]) and records on the span how
/// it ended: `OK`, or the status of its error ([`RpcError::code`]).
///
/// A combinator, not an `async fn`: an `async fn` keeps its future argument and the copy it
/// awaits side by side, doubling the size of every call in flight.
pub(crate) fn in_call_span<T>(
    span: Span,
    call: impl Future<Output = Result<T, RpcError>>,
) -> impl Future<Output = Result<T, RpcError>> {
    use futures::FutureExt;
    call.instrument(span.clone()).map(move |result| {
        let code = result
            .as_ref()
            .map_or_else(RpcError::code, |_| StatusCode::Ok);
        record_status(&span, code, false);
        result
    })
}

/// `rpc.response.status_code` of a request whose handler was stopped because the server stopped
/// (gRPC `CANCELLED`, code 1; no reply carries it: see the module documentation).
pub(crate) const CANCELLED: &str = "CANCELLED";
/// `rpc.response.status_code` of a duplicate of a request still running (gRPC
/// `ALREADY_EXISTS`, code 6; no reply carries it: see the module documentation).
pub(crate) const ALREADY_EXISTS: &str = "ALREADY_EXISTS";

/// Records on a `krpc.request` span a status that no reply carries ([`CANCELLED`],
/// [`ALREADY_EXISTS`]); not an error of the span.
pub(crate) fn record_unanswered(span: &Span, name: &'static str) {
    span.record("rpc.response.status_code", name);
}

/// Records a call's or request's status on `span`; a status other than OK marks the span's
/// OpenTelemetry status `error` (on the server only the statuses OpenTelemetry's gRPC
/// conventions count as a server error: the caller's own mistakes are not).
pub(crate) fn record_status(span: &Span, code: StatusCode, server: bool) {
    span.record("rpc.response.status_code", code.name());
    let error = match code {
        StatusCode::Ok => false,
        StatusCode::Unknown
        | StatusCode::DeadlineExceeded
        | StatusCode::Unimplemented
        | StatusCode::Internal
        | StatusCode::Unavailable
        | StatusCode::DataLoss => true,
        _ => !server,
    };
    if error {
        span.record("otel.status_code", "error");
    }
}

#[cfg(feature = "otel")]
mod otel {
    //! The bridge to OpenTelemetry through `tracing-opentelemetry`.

    use opentelemetry::trace::{
        SpanContext, TraceContextExt, TraceFlags, TraceId as OtelTraceId, TraceState,
    };
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{SpanId, TraceContext, TraceId};

    /// The OpenTelemetry span context of `span`, if a layer gives it a valid one.
    fn context_of(span: &Span) -> Option<TraceContext> {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if !sc.is_valid() {
            return None;
        }
        let own = TraceContext::new(
            TraceId::from_bytes(sc.trace_id().to_bytes())?,
            SpanId::from_bytes(sc.span_id().to_bytes())?,
            sc.trace_flags().to_u8(),
        );
        let state = sc.trace_state().header();
        Some(if state.is_empty() {
            own
        } else {
            own.clone().with_state(&state).unwrap_or(own)
        })
    }

    fn remote(parent: &TraceContext) -> opentelemetry::Context {
        let state = parent
            .state()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let sc = SpanContext::new(
            OtelTraceId::from_bytes(parent.trace_id().to_bytes()),
            opentelemetry::trace::SpanId::from_bytes(parent.span_id().to_bytes()),
            TraceFlags::new(parent.flags()),
            true,
            state,
        );
        opentelemetry::Context::new().with_remote_span_context(sc)
    }

    /// A client span's context and its parent's: the current span's OpenTelemetry context is
    /// its parent (through the `tracing` span tree) if valid, else the task-local one (set
    /// as its remote parent). `None`: no OpenTelemetry layer.
    pub(super) fn start_client(span: &Span) -> Option<(TraceContext, Option<TraceContext>)> {
        let parent = match context_of(&Span::current()) {
            Some(p) => Some(p),
            None => {
                let p = super::current();
                if let Some(p) = &p {
                    let _ = span.set_parent(remote(p));
                }
                p
            }
        };
        context_of(span).map(|own| (own, parent))
    }

    /// Renames the OpenTelemetry span of `span` (`otel.name` is read only while the span is
    /// being built).
    pub(super) fn rename(span: &Span, name: String) {
        span.context().span().update_name(name);
    }

    /// A server span's context, its parent set to the caller's (if any). `None`: no
    /// OpenTelemetry layer.
    pub(super) fn start_server(
        span: &Span,
        incoming: Option<&TraceContext>,
    ) -> Option<TraceContext> {
        if let Some(p) = incoming {
            let _ = span.set_parent(remote(p));
        }
        context_of(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_valid_traceparent_parses_and_formats_back() {
        let c = TraceContext::from_traceparent(VALID).unwrap();
        assert_eq!(c.trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(c.span_id().to_string(), "b7ad6b7169203331");
        assert_eq!(c.flags(), 1);
        assert!(c.is_sampled());
        assert_eq!(c.traceparent(), VALID);
        let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        assert!(!TraceContext::from_traceparent(unsampled)
            .unwrap()
            .is_sampled());
    }

    #[test]
    fn uppercase_zero_ids_wrong_lengths_and_garbage_are_rejected() {
        let bad = [
            (
                "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
                "lowercase",
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
                "lowercase",
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0A",
                "lowercase",
            ),
            (
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                "all zeros",
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                "all zeros",
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
                "55",
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
                "fewer than 55",
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-011",
                "'-'",
            ),
            (
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "version ff",
            ),
            (
                "0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "version",
            ),
            (
                "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
                "'-'",
            ),
            ("", "fewer than 55"),
            ("garbage", "fewer than 55"),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033é1-01",
                "'-'",
            ),
            (
                " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "version",
            ),
        ];
        for (value, why) in bad {
            match TraceContext::from_traceparent(value) {
                Ok(c) => panic!("{value:?} accepted as {c:?}"),
                Err(e) => assert!(
                    e.reason.contains(why),
                    "{value:?}: {e} does not say {why:?}"
                ),
            }
        }
        // Random bytes never panic.
        let alphabet = ['0', 'a', 'f', '-', '9', 'Z', 'F', 'é', ' '];
        for i in 0..2000usize {
            let s: String = (0..i % 70)
                .map(|j| alphabet[(i * 7 + j * 13) % alphabet.len()])
                .collect();
            let _ = TraceContext::from_traceparent(&s);
        }
    }

    /// Review finding S21 of stop 11: all 8 flag bits were kept and passed on to children.
    #[test]
    fn version_00_keeps_only_the_sampled_and_random_flags() {
        let with = |flags: &str| {
            TraceContext::from_traceparent(&format!(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flags}"
            ))
            .unwrap()
        };
        for (sent, kept) in [
            ("ff", 0x03),
            ("fd", 0x01),
            ("82", 0x02),
            ("03", 0x03),
            ("04", 0x00),
        ] {
            let c = with(sent);
            assert_eq!(c.flags(), kept, "flags {sent}");
            assert_eq!(c.child().flags(), kept, "a child of flags {sent}");
            assert_eq!(
                c.child().traceparent()[53..],
                format!("{kept:02x}"),
                "what a child sends on"
            );
        }
        assert!(with("fd").is_sampled());
        assert!(!with("fe").is_sampled());
    }

    #[test]
    fn a_future_version_is_read_as_version_00_with_extra_fields_ignored() {
        let base = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03";
        for value in [base.to_string(), format!("{base}-what-the-future-holds")] {
            let c = TraceContext::from_traceparent(&value).unwrap();
            assert_eq!(c.trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
            assert_eq!(c.span_id().to_string(), "b7ad6b7169203331");
            assert_eq!(c.flags(), FLAG_SAMPLED, "only the sampled bit is kept");
            // We write what we speak: version 00.
            assert_eq!(
                c.traceparent(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            );
        }
        // The extra fields must follow a '-'.
        assert!(TraceContext::from_traceparent(&format!("{base}x")).is_err());
        // Version 00 must not have them.
        assert!(TraceContext::from_traceparent(&format!("{VALID}-extra")).is_err());
    }

    #[test]
    fn tracestate_is_validated_and_an_invalid_one_is_dropped_by_the_lenient_reader() {
        let c = TraceContext::from_traceparent(VALID).unwrap();
        let ok = c
            .clone()
            .with_state("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,,t@vendor=x")
            .unwrap();
        assert_eq!(
            ok.state(),
            Some("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,,t@vendor=x")
        );
        assert_eq!(c.clone().with_state(" , ").unwrap().state(), None);
        for bad in [
            "Rojo=1",
            "rojo",
            "rojo=a=b",
            "a=1,a=2",
            "rojo=a\u{7f}",
            "1abc=x",
            "a@=x",
            "a@b@c=x",
        ] {
            assert!(c.clone().with_state(bad).is_err(), "{bad:?} accepted");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(c.clone().with_state(&many.join(",")).is_err());
        assert!(c.clone().with_state(&many[..32].join(",")).is_ok());

        let headers = |state: &str| {
            vec![
                Header::new(TRACEPARENT, VALID),
                Header::new(TRACESTATE, state.to_string()),
            ]
        };
        let (got, problem) = TraceContext::from_headers_lenient(&headers("BAD"));
        assert_eq!(got, Some(c.clone()), "the traceparent is kept");
        assert_eq!(problem.unwrap().header, TRACESTATE);
        assert!(TraceContext::from_headers(&headers("BAD")).is_err());
        // Repeated tracestate headers are joined.
        let mut two = headers("a=1");
        two.push(Header::new(TRACESTATE, "b=2"));
        assert_eq!(
            TraceContext::from_headers(&two).unwrap().unwrap().state(),
            Some("a=1,b=2")
        );
    }

    #[test]
    fn headers_round_trip_and_absent_null_repeated_or_non_utf8_ones_are_handled() {
        let c = TraceContext::new_root().with_state("k=v").unwrap();
        let headers = c.to_headers();
        assert_eq!(headers[0].key, TRACEPARENT);
        assert_eq!(headers[1].key, TRACESTATE);
        assert_eq!(
            TraceContext::from_headers(&headers).unwrap(),
            Some(c.clone())
        );
        assert_eq!(TraceContext::from_headers(&[]).unwrap(), None);
        let null = Header {
            key: TRACEPARENT.into(),
            value: None,
        };
        assert_eq!(TraceContext::from_headers(&[null]).unwrap(), None);
        let repeated = [
            Header::new(TRACEPARENT, VALID),
            Header::new(TRACEPARENT, VALID),
        ];
        assert!(TraceContext::from_headers(&repeated).is_err());
        let binary = [Header::new(TRACEPARENT, vec![0xff; 55])];
        assert!(TraceContext::from_headers(&binary).is_err());
        // A child keeps the trace, flags and state, with a new span id.
        let child = c.child();
        assert_eq!(child.trace_id(), c.trace_id());
        assert_ne!(child.span_id(), c.span_id());
        assert_eq!(child.state(), Some("k=v"));
    }

    #[tokio::test]
    async fn scope_sets_the_current_context_for_its_future_only() {
        assert_eq!(current(), None);
        let c = TraceContext::new_root();
        let inside = scope(c.clone(), async { current() }).await;
        assert_eq!(inside, Some(c));
        assert_eq!(current(), None);
    }
}
