//! Metrics: every metric a client and a server record, named here and nowhere else.
//!
//! kafka-rpc records through the [`metrics`] facade. Nothing is kept or sent anywhere until the
//! application installs a recorder: an exporter such as `metrics-exporter-prometheus` (which
//! `krpc serve --metrics-addr` installs), or any other `metrics` recorder. Install it before
//! starting servers: a server binds its counters to the recorder installed when
//! [`Server::run`](crate::Server::run) starts. Client metrics are looked up at each call.
//! [`describe`] registers the help text and unit of each metric with the installed recorder.
//!
//! Durations are histograms in seconds (`f64`, Prometheus base units); for Prometheus, give
//! them the buckets [`DURATION_BUCKETS`] (an exporter without buckets renders summaries).
//! Labels: `service`, `method` (bounded: see below), `status` (a [`StatusCode`] name such as
//! `OK` or `UNIMPLEMENTED`), `partition` (of the request topic). No label carries a request
//! id or anything else per call.
//!
//! | name | type | labels | unit | meaning |
//! |---|---|---|---|---|
//! | `krpc_client_calls_total` | counter | service, method | calls | calls made, refused ones included ([`RpcClient::call`](crate::RpcClient::call), [`LegacyClient`](crate::LegacyClient)) |
//! | `krpc_client_errors_total` | counter | service, method, status | calls | calls and one-way calls that failed, by the status they failed with ([`RpcError::code`]: a client timeout is `DEADLINE_EXCEEDED`, a broker failure `UNAVAILABLE`) |
//! | `krpc_client_timeouts_total` | counter | service, method | calls | calls with no reply within their timeout (also in the errors, as `DEADLINE_EXCEEDED`) |
//! | `krpc_client_one_way_total` | counter | service, method | calls | one-way calls stored ([`RpcClient::notify`](crate::RpcClient::notify)) |
//! | `krpc_client_stray_replies_total` | counter | | replies | replies for no call of the client (another client in its slot, or a call that timed out) |
//! | `krpc_client_malformed_replies_total` | counter | | records | records in the client's reply slot that are not replies |
//! | `krpc_client_call_duration_seconds` | histogram | service, method, status | seconds | end-to-end latency of a call: send, queue, handler, reply |
//! | `krpc_client_calls_in_flight` | gauge | service | calls | calls made and not yet answered or failed (waiting for room under `max_in_flight` included) |
//! | `krpc_server_<counter>_total` | counter | service | events | each counter of [`ServerStats`](crate::ServerStats) (`received`, `ok`, `handler_errors`, ...: the full list is [`COUNTER_NAMES`](crate::server::stats::COUNTER_NAMES)) |
//! | `krpc_server_handler_duration_seconds` | histogram | service, method, status | seconds | time in the handler of a request, or about 0 for one refused before its handler ran (`UNIMPLEMENTED`, `INVALID_ARGUMENT`, past its deadline) |
//! | `krpc_server_queue_wait_seconds` | histogram | service, method | seconds | from the caller sending a request to the server picking it up (clocks of two hosts: skew shows here) |
//! | `krpc_server_requests_in_flight` | gauge | service | requests | requests fetched from the request topic and not finished (queued or running); the sum over the servers of the service in this process |
//! | `krpc_server_consumer_lag` | gauge | service, partition | records | request records not yet **fetched**: high watermark (last stable offset with read_committed) minus the fetch position, as of the last fetch; 0 for a partition no server of the service in this process owns. Records fetched and not finished are in `requests_in_flight`, not here: a saturated server shows its backlog there (Java's `records-lag` is measured from the records handed to the application, which sits between the two) |
//! | `krpc_server_invalid_trace_headers_total` | counter | service | records | request records whose `traceparent` or `tracestate` was invalid and ignored ([`crate::trace`]; the server counter `invalid_trace_headers`) |
//!
//! The `method` label takes the method name as called. On a server a request answered
//! `UNIMPLEMENTED` is labelled `_unknown` (whoever decided it, the dispatcher for a method the
//! service does not have or the handler itself), and past [`MAX_METHOD_LABELS`] names (per
//! server, or per process for clients) further names are labelled `_other`. A client's
//! `service` label is bounded the same way, by [`MAX_SERVICE_LABELS`] per process: a caller
//! cannot grow the number of series without bound. Which names get their own label is first
//! come, first served, so after a restart it can differ.
//!
//! The server gauges are shared by the servers of one service in one process (one
//! `service` label): each server adds its own part and takes it back when its run ends (or
//! its counters are dropped), so the gauge is their sum.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram, Counter, Gauge, Unit};

use crate::error::RpcError;
use crate::status::StatusCode;

/// Label: the service name.
pub const LABEL_SERVICE: &str = "service";
/// Label: the method name (bounded, see the module docs).
pub const LABEL_METHOD: &str = "method";
/// Label: a [`StatusCode`] name (`OK`, `UNKNOWN`, `DEADLINE_EXCEEDED`, ...).
pub const LABEL_STATUS: &str = "status";
/// Label: a partition of the service's request topic.
pub const LABEL_PARTITION: &str = "partition";

/// Counter (calls), labels service, method: calls made by a client (refused ones included).
pub const CLIENT_CALLS: &str = "krpc_client_calls_total";
/// Counter (calls), labels service, method, status: calls that failed, by status
/// ([`RpcError::code`]).
pub const CLIENT_ERRORS: &str = "krpc_client_errors_total";
/// Counter (calls), labels service, method: calls with no reply within their timeout.
pub const CLIENT_TIMEOUTS: &str = "krpc_client_timeouts_total";
/// Counter (calls), labels service, method: one-way calls stored.
pub const CLIENT_ONE_WAY: &str = "krpc_client_one_way_total";
/// Counter (replies), no label: replies for no call of the client.
pub const CLIENT_STRAY_REPLIES: &str = "krpc_client_stray_replies_total";
/// Counter (records), no label: records in a client's reply slot that are not replies.
pub const CLIENT_MALFORMED_REPLIES: &str = "krpc_client_malformed_replies_total";
/// Histogram (seconds), labels service, method, status: end-to-end latency of a call.
pub const CLIENT_CALL_SECONDS: &str = "krpc_client_call_duration_seconds";
/// Gauge (calls), label service: calls made and not yet finished.
pub const CLIENT_CALLS_IN_FLIGHT: &str = "krpc_client_calls_in_flight";
/// Histogram (seconds), labels service, method, status: time in the handler.
pub const SERVER_HANDLER_SECONDS: &str = "krpc_server_handler_duration_seconds";
/// Histogram (seconds), labels service, method: from the caller's send to the server's pickup.
pub const SERVER_QUEUE_WAIT_SECONDS: &str = "krpc_server_queue_wait_seconds";
/// Gauge (requests), label service: requests taken and not finished (queued or running).
pub const SERVER_REQUESTS_IN_FLIGHT: &str = "krpc_server_requests_in_flight";
/// Gauge (records), labels service, partition: request records not yet fetched (high
/// watermark minus position as of the last fetch).
pub const SERVER_CONSUMER_LAG: &str = "krpc_server_consumer_lag";

/// The `metrics` name of the server counter `$name` of
/// [`ServerStats`](crate::ServerStats): `krpc_server_<name>_total`.
macro_rules! server_counter_name {
    ($name:ident) => {
        concat!("krpc_server_", stringify!($name), "_total")
    };
}
pub(crate) use server_counter_name;

/// Counter (records), label service: request records whose `traceparent` or `tracestate`
/// header was invalid and ignored (the request ran in a new trace, or without the state); see
/// [`crate::trace`]. The server counter `invalid_trace_headers` of
/// [`ServerStats`](crate::ServerStats).
pub const SERVER_INVALID_TRACE_HEADERS: &str = server_counter_name!(invalid_trace_headers);

/// Histogram buckets for the duration metrics, in seconds: 0.5 ms to 60 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Most distinct `method` label values per server (per process for clients); further
/// methods are labelled `_other`.
pub const MAX_METHOD_LABELS: usize = 100;
/// Most distinct `service` label values of client metrics per process; further services are
/// labelled `_other`.
pub const MAX_SERVICE_LABELS: usize = 100;
/// The `method` label of calls past [`MAX_METHOD_LABELS`] (and the `service` label of
/// services past [`MAX_SERVICE_LABELS`]).
pub const OTHER_METHOD: &str = "_other";
/// The `method` label of a server's `UNIMPLEMENTED` calls (methods it does not have).
pub const UNKNOWN_METHOD: &str = "_unknown";

/// Registers the help text and unit of every metric with the installed recorder (call it
/// after installing one; without a recorder it does nothing).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        CLIENT_CALLS,
        Unit::Count,
        "Calls made by a kafka-rpc client, refused ones included."
    );
    describe_counter!(
        CLIENT_ERRORS,
        Unit::Count,
        "Calls and one-way calls that failed, by status (a client timeout is DEADLINE_EXCEEDED)."
    );
    describe_counter!(
        CLIENT_TIMEOUTS,
        Unit::Count,
        "Calls with no reply within their timeout."
    );
    describe_counter!(CLIENT_ONE_WAY, Unit::Count, "One-way calls stored.");
    describe_counter!(
        CLIENT_STRAY_REPLIES,
        Unit::Count,
        "Replies for no call of the client (another client in its slot, or a call that timed out)."
    );
    describe_counter!(
        CLIENT_MALFORMED_REPLIES,
        Unit::Count,
        "Records in the client's reply slot that are not replies."
    );
    describe_histogram!(
        CLIENT_CALL_SECONDS,
        Unit::Seconds,
        "End-to-end latency of a call: send, queue, handler, reply."
    );
    describe_gauge!(
        CLIENT_CALLS_IN_FLIGHT,
        Unit::Count,
        "Calls made and not yet answered or failed (waiting for room under max_in_flight included)."
    );
    for (_, name, help) in crate::server::stats::COUNTER_NAMES {
        describe_counter!(*name, Unit::Count, help.trim());
    }
    describe_histogram!(
        SERVER_HANDLER_SECONDS,
        Unit::Seconds,
        "Time in the handler of a request (about 0 for one refused before its handler ran)."
    );
    describe_histogram!(
        SERVER_QUEUE_WAIT_SECONDS,
        Unit::Seconds,
        "From the caller sending a request to the server picking it up."
    );
    describe_gauge!(
        SERVER_REQUESTS_IN_FLIGHT,
        Unit::Count,
        "Requests fetched from the request topic and not finished (queued or running)."
    );
    describe_gauge!(
        SERVER_CONSUMER_LAG,
        Unit::Count,
        "Request records not yet fetched: high watermark minus fetch position, as of the last fetch."
    );
}

/// A set of label values in use, bounded: past `max` distinct names, further names get
/// [`OTHER_METHOD`].
#[derive(Debug)]
struct BoundedLabels {
    max: usize,
    seen: Mutex<HashSet<String>>,
}

impl BoundedLabels {
    fn new(max: usize) -> Self {
        Self {
            max,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// The label for `name`: itself while the set has room or already holds it, else
    /// [`OTHER_METHOD`].
    fn label(&self, name: &str) -> String {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(name) {
            return name.to_string();
        }
        if seen.len() >= self.max {
            return OTHER_METHOD.to_string();
        }
        seen.insert(name.to_string());
        name.to_string()
    }
}

/// The client side's `(service, method)` labels: one bounded set of each per process
/// (clients call what their code names; a gateway may forward names its callers choose).
fn client_labels(service: &str, method: &str) -> (String, String) {
    static SERVICES: OnceLock<BoundedLabels> = OnceLock::new();
    static METHODS: OnceLock<BoundedLabels> = OnceLock::new();
    let services = SERVICES.get_or_init(|| BoundedLabels::new(MAX_SERVICE_LABELS));
    let methods = METHODS.get_or_init(|| BoundedLabels::new(MAX_METHOD_LABELS));
    (services.label(service), methods.label(method))
}

/// A gauge that several servers of one service in one process add to (they share its
/// labels): each holds its own part and moves the gauge by the difference, so the gauge is
/// the sum of the parts; dropping it takes its part back.
#[derive(Debug)]
struct GaugePart {
    gauge: Gauge,
    mine: f64,
}

impl GaugePart {
    fn new(gauge: Gauge) -> Self {
        Self { gauge, mine: 0.0 }
    }

    fn set(&mut self, value: f64) {
        self.gauge.increment(value - self.mine);
        self.mine = value;
    }
}

impl Drop for GaugePart {
    fn drop(&mut self) {
        self.gauge.decrement(self.mine);
    }
}

/// One client call being measured: counted when started; its latency, status and the calls
/// in flight recorded when [`finish`](ClientCall::finish)ed (the gauge also when dropped
/// unfinished, e.g. a cancelled call).
pub(crate) struct ClientCall {
    service: String,
    method: String,
    started: Instant,
    in_flight: Gauge,
}

impl ClientCall {
    /// Counts a call of `service.method` and adds it to the calls in flight.
    pub fn start(service: &str, method: &str) -> Self {
        let (service, method) = client_labels(service, method);
        counter!(CLIENT_CALLS, LABEL_SERVICE => service.clone(), LABEL_METHOD => method.clone())
            .increment(1);
        let in_flight = gauge!(CLIENT_CALLS_IN_FLIGHT, LABEL_SERVICE => service.clone());
        in_flight.increment(1.0);
        Self {
            service,
            method,
            started: Instant::now(),
            in_flight,
        }
    }

    /// Runs `call` as a call of `service.method`: [`start`](Self::start) now, then
    /// [`finish`](Self::finish) with its result (the in-flight gauge goes down also if the
    /// future is dropped).
    ///
    /// A combinator, not an `async fn`: an `async fn` keeps its future argument and the copy
    /// it awaits side by side, doubling the size of every call in flight.
    pub fn measure<T>(
        service: &str,
        method: &str,
        call: impl std::future::Future<Output = Result<T, RpcError>>,
    ) -> impl std::future::Future<Output = Result<T, RpcError>> {
        use futures::FutureExt;
        let measured = Self::start(service, method);
        call.map(move |result| {
            measured.finish(&result);
            result
        })
    }

    /// Records how the call ended: its latency by status, and its error and timeout counts.
    pub fn finish<T>(self, result: &Result<T, RpcError>) {
        let status = match result {
            Ok(_) => StatusCode::Ok,
            Err(e) => e.code(),
        };
        let (service, method) = (self.service.clone(), self.method.clone());
        histogram!(CLIENT_CALL_SECONDS, LABEL_SERVICE => service.clone(), LABEL_METHOD => method.clone(), LABEL_STATUS => status.name())
            .record(self.started.elapsed());
        if let Err(e) = result {
            counter!(CLIENT_ERRORS, LABEL_SERVICE => service.clone(), LABEL_METHOD => method.clone(), LABEL_STATUS => status.name())
                .increment(1);
            if matches!(e, RpcError::Timeout { .. }) {
                counter!(CLIENT_TIMEOUTS, LABEL_SERVICE => service, LABEL_METHOD => method)
                    .increment(1);
            }
        }
    }
}

impl Drop for ClientCall {
    fn drop(&mut self) {
        self.in_flight.decrement(1.0);
    }
}

/// Counts a one-way call stored.
pub(crate) fn client_one_way(service: &str, method: &str) {
    let (service, method) = client_labels(service, method);
    counter!(CLIENT_ONE_WAY, LABEL_SERVICE => service, LABEL_METHOD => method).increment(1);
}

/// Counts a one-way call that failed (before or while it was stored) in the errors, by status.
pub(crate) fn client_one_way_failed(service: &str, method: &str, error: &RpcError) {
    let (service, method) = client_labels(service, method);
    counter!(CLIENT_ERRORS, LABEL_SERVICE => service, LABEL_METHOD => method, LABEL_STATUS => error.code().name())
        .increment(1);
}

/// Counts a reply for no call of ours.
pub(crate) fn client_stray_reply() {
    counter!(CLIENT_STRAY_REPLIES).increment(1);
}

/// Counts a record in our reply slot that is not a reply.
pub(crate) fn client_malformed_reply() {
    counter!(CLIENT_MALFORMED_REPLIES).increment(1);
}

/// The `metrics` counter `name` (one of `krpc_server_<counter>_total`) of `service`.
pub(crate) fn server_counter(name: &'static str, service: &str) -> Counter {
    counter!(name, LABEL_SERVICE => service.to_string())
}

/// A server's histograms and gauges, bound to the recorder installed when it started.
#[derive(Debug)]
pub(crate) struct ServerMetrics {
    service: String,
    methods: BoundedLabels,
    /// This server's part of the requests in flight of its service.
    in_flight: Mutex<GaugePart>,
    /// This server's part of the lag gauge of each request partition it reported so far.
    lag: Mutex<HashMap<i32, GaugePart>>,
}

impl ServerMetrics {
    /// The metrics of a server of `service`.
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_string(),
            methods: BoundedLabels::new(MAX_METHOD_LABELS),
            in_flight: Mutex::new(GaugePart::new(
                gauge!(SERVER_REQUESTS_IN_FLIGHT, LABEL_SERVICE => service.to_string()),
            )),
            lag: Mutex::new(HashMap::new()),
        }
    }

    /// Records a request that ran: its handler time by status, and its queue wait.
    pub fn request(
        &self,
        method: &str,
        status: StatusCode,
        handler: Duration,
        queue_wait: Duration,
    ) {
        let method = if status == StatusCode::Unimplemented {
            UNKNOWN_METHOD.to_string()
        } else {
            self.methods.label(method)
        };
        histogram!(SERVER_HANDLER_SECONDS, LABEL_SERVICE => self.service.clone(), LABEL_METHOD => method.clone(), LABEL_STATUS => status.name())
            .record(handler);
        histogram!(SERVER_QUEUE_WAIT_SECONDS, LABEL_SERVICE => self.service.clone(), LABEL_METHOD => method)
            .record(queue_wait);
    }

    /// Takes this server's part out of the gauges (it stopped; its counters may be kept).
    pub fn release(&self) {
        self.requests_in_flight(0);
        self.consumer_lag(&HashMap::new());
    }

    /// Sets this server's requests in flight.
    pub fn requests_in_flight(&self, n: usize) {
        let mut part = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        part.set(n as f64);
    }

    /// Sets this server's lag of each request partition in `lags`; partitions it reported
    /// before and does not now (revoked) lose its part (0 unless another server of the
    /// service in this process reports them).
    pub fn consumer_lag(&self, lags: &HashMap<i32, i64>) {
        let mut parts = self.lag.lock().unwrap_or_else(|p| p.into_inner());
        for (partition, part) in parts.iter_mut() {
            if !lags.contains_key(partition) {
                part.set(0.0);
            }
        }
        for (&partition, &lag) in lags {
            parts
                .entry(partition)
                .or_insert_with(|| {
                    GaugePart::new(gauge!(SERVER_CONSUMER_LAG, LABEL_SERVICE => self.service.clone(), LABEL_PARTITION => partition.to_string()))
                })
                .set(lag as f64);
        }
    }
}

/// What the dispatcher and the serving loop record, in one line each (nothing before the
/// server binds its counters).
impl crate::server::Counters {
    /// Records a request that ran (`outcome`), its handler time and its queue wait (ms).
    pub(crate) fn observe(
        &self,
        method: &str,
        outcome: &Result<bytes::Bytes, crate::HandlerError>,
        handler: Duration,
        queue_ms: i64,
    ) {
        if let Some(m) = self.exported() {
            let status = outcome.as_ref().map_or_else(|e| e.code, |_| StatusCode::Ok);
            let queue_wait = Duration::from_millis(queue_ms.max(0) as u64);
            m.request(method, status, handler, queue_wait);
        }
    }

    /// Sets the requests in flight (taken and not finished).
    pub(crate) fn requests_in_flight(&self, n: usize) {
        if let Some(m) = self.exported() {
            m.requests_in_flight(n);
        }
    }

    /// Takes this server's part out of the shared gauges (at the end of its run).
    pub(crate) fn release_gauges(&self) {
        if let Some(m) = self.exported() {
            m.release();
        }
    }

    /// Sets the lag of the request partitions (`None`: no partition has a known lag).
    pub(crate) fn consumer_lag(&self, lags: Option<&HashMap<i32, i64>>) {
        if let Some(m) = self.exported() {
            m.consumer_lag(lags.unwrap_or(&HashMap::new()));
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Reading a [`DebuggingRecorder`](metrics_util::debugging::DebuggingRecorder) snapshot in
    //! unit tests.

    use std::collections::HashMap;

    use metrics_util::debugging::{DebugValue, Snapshotter};

    /// A snapshot keyed `name{k=v,...}` (labels sorted by key). Taking it resets counters and
    /// gauges in the recorder (the DebuggingRecorder's rule): take one per test, at the end.
    pub fn values(snapshotter: &Snapshotter) -> HashMap<String, DebugValue> {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                (format!("{}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect()
    }

    /// The counter `key` (0 if never recorded; panics if it is not a counter).
    pub fn counter(values: &HashMap<String, DebugValue>, key: &str) -> u64 {
        match values.get(key) {
            None => 0,
            Some(DebugValue::Counter(n)) => *n,
            Some(other) => panic!("{key} is not a counter: {other:?}"),
        }
    }

    /// The samples of histogram `key` (none if never recorded).
    pub fn samples(values: &HashMap<String, DebugValue>, key: &str) -> Vec<f64> {
        match values.get(key) {
            None => Vec::new(),
            Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.0).collect(),
            Some(other) => panic!("{key} is not a histogram: {other:?}"),
        }
    }

    /// The gauge `key` (`None` if never recorded).
    pub fn gauge(values: &HashMap<String, DebugValue>, key: &str) -> Option<f64> {
        match values.get(key) {
            None => None,
            Some(DebugValue::Gauge(v)) => Some(v.0),
            Some(other) => panic!("{key} is not a gauge: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::DebuggingRecorder;

    use super::testing::{counter, gauge, samples, values};
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        let labels = BoundedLabels::new(MAX_METHOD_LABELS);
        for i in 0..MAX_METHOD_LABELS {
            assert_eq!(labels.label(&format!("m{i}")), format!("m{i}"));
        }
        assert_eq!(labels.label("one-too-many"), OTHER_METHOD);
        assert_eq!(
            labels.label("m0"),
            "m0",
            "names already in use keep their label"
        );
    }

    #[test]
    fn a_client_call_counts_its_status_latency_and_time_in_flight() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let ok = ClientCall::start("Svc", "add");
            let late = ClientCall::start("Svc", "add");
            let refused = ClientCall::start("Svc", "nope");
            ok.finish(&Ok::<(), RpcError>(()));
            late.finish(&Err::<(), _>(RpcError::Timeout {
                service: "Svc".into(),
                method: "add".into(),
                request_id: "r".into(),
                timeout: Duration::from_millis(1),
                stored: true,
            }));
            refused.finish(&Err::<(), _>(RpcError::Status {
                service: "Svc".into(),
                method: "nope".into(),
                request_id: "r".into(),
                code: StatusCode::Unimplemented,
                message: "no".into(),
                details: None,
            }));
            // A call dropped unfinished (cancelled) leaves the calls in flight too.
            drop(ClientCall::start("Svc", "add"));
            client_stray_reply();
            client_one_way("Svc", "add");
        });
        let v = values(&snapshotter);
        assert_eq!(
            counter(&v, "krpc_client_calls_total{method=add,service=Svc}"),
            3
        );
        assert_eq!(
            counter(&v, "krpc_client_calls_total{method=nope,service=Svc}"),
            1
        );
        assert_eq!(
            counter(
                &v,
                "krpc_client_errors_total{method=add,service=Svc,status=DEADLINE_EXCEEDED}"
            ),
            1
        );
        assert_eq!(
            counter(
                &v,
                "krpc_client_errors_total{method=nope,service=Svc,status=UNIMPLEMENTED}"
            ),
            1
        );
        assert_eq!(
            counter(&v, "krpc_client_timeouts_total{method=add,service=Svc}"),
            1
        );
        assert_eq!(counter(&v, "krpc_client_stray_replies_total{}"), 1);
        assert_eq!(
            counter(&v, "krpc_client_one_way_total{method=add,service=Svc}"),
            1
        );
        assert_eq!(
            samples(
                &v,
                "krpc_client_call_duration_seconds{method=add,service=Svc,status=OK}"
            )
            .len(),
            1
        );
        assert_eq!(
            gauge(&v, "krpc_client_calls_in_flight{service=Svc}"),
            Some(0.0)
        );
    }

    #[test]
    fn server_lag_gauges_follow_the_partitions_reported() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _m = metrics::with_local_recorder(&recorder, || {
            let m = ServerMetrics::new("Svc");
            m.consumer_lag(&HashMap::from([(0, 5), (1, 7)]));
            // Partition 1 revoked, 0 caught up.
            m.consumer_lag(&HashMap::from([(0, 2)]));
            m.requests_in_flight(3);
            m
        });
        let v = values(&snapshotter);
        assert_eq!(
            gauge(&v, "krpc_server_consumer_lag{partition=0,service=Svc}"),
            Some(2.0)
        );
        assert_eq!(
            gauge(&v, "krpc_server_consumer_lag{partition=1,service=Svc}"),
            Some(0.0)
        );
        assert_eq!(
            gauge(&v, "krpc_server_requests_in_flight{service=Svc}"),
            Some(3.0)
        );
    }

    /// Two servers of service `Svc` in one process (one set of labels), with 3 and 4 requests
    /// in flight and the first at lag 5 on partition 0; `then` acts on them under the recorder
    /// and returns what stays alive while the gauges are read. Returns the gauges read and that.
    fn two_servers<K>(
        then: impl FnOnce(ServerMetrics, ServerMetrics) -> K,
    ) -> (HashMap<String, metrics_util::debugging::DebugValue>, K) {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let kept = metrics::with_local_recorder(&recorder, || {
            let a = ServerMetrics::new("Svc");
            let b = ServerMetrics::new("Svc");
            a.requests_in_flight(3);
            b.requests_in_flight(4);
            a.consumer_lag(&HashMap::from([(0, 5)]));
            then(a, b)
        });
        (values(&snapshotter), kept)
    }

    fn in_flight(v: &HashMap<String, metrics_util::debugging::DebugValue>) -> Option<f64> {
        gauge(v, "krpc_server_requests_in_flight{service=Svc}")
    }

    fn lag(
        v: &HashMap<String, metrics_util::debugging::DebugValue>,
        partition: i32,
    ) -> Option<f64> {
        gauge(
            v,
            &format!("krpc_server_consumer_lag{{partition={partition},service=Svc}}"),
        )
    }

    /// Two servers of one service in one process (one set of labels) add up in the gauges,
    /// and a partition that moves from one to the other shows the new owner's lag, not 0 on
    /// every poll of the old one (review S7: each server used to set the gauge outright).
    #[test]
    fn servers_of_one_service_in_one_process_add_up_in_the_gauges() {
        let (v, _servers) = two_servers(|a, b| {
            a.consumer_lag(&HashMap::from([(0, 5), (1, 7)]));
            b.consumer_lag(&HashMap::new());
            // Partition 1 moves to b; a polls again afterwards.
            b.consumer_lag(&HashMap::from([(1, 6)]));
            a.consumer_lag(&HashMap::from([(0, 5)]));
            (a, b)
        });
        assert_eq!(in_flight(&v), Some(7.0));
        assert_eq!(lag(&v, 0), Some(5.0));
        assert_eq!(lag(&v, 1), Some(6.0));
    }

    #[test]
    fn a_server_dropped_takes_its_part_of_the_gauges_back() {
        let (v, _b) = two_servers(|a, b| {
            drop(a);
            b
        });
        assert_eq!(in_flight(&v), Some(4.0));
        assert_eq!(lag(&v, 0), Some(0.0));
    }

    /// A stopped server whose counters are still held (`Server::counters()` is cloned before
    /// `run`) takes its part out of the gauges when it releases them at the end of its run;
    /// dropping was the only way before (review of stop 12, R2).
    #[test]
    fn a_stopped_server_releases_its_part_while_its_counters_are_held() {
        let (v, _servers) = two_servers(|a, b| {
            a.release();
            (a, b)
        });
        assert_eq!(in_flight(&v), Some(4.0));
        assert_eq!(lag(&v, 0), Some(0.0));
    }

    #[test]
    fn service_labels_are_bounded() {
        let labels = BoundedLabels::new(MAX_SERVICE_LABELS);
        for i in 0..MAX_SERVICE_LABELS {
            assert_eq!(labels.label(&format!("s{i}")), format!("s{i}"));
        }
        assert_eq!(labels.label("one-too-many"), OTHER_METHOD);
    }
}
