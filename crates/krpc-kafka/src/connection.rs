//! One broker connection: pipelined requests matched to responses by correlation id.
//!
//! Frames go out whole, so a caller that is cancelled (timeout, `select!`) never leaves half a
//! frame on the wire: a caller that finds the socket's write half free hands its frame to it
//! itself, in one synchronous step (the frame is written, or buffered whole, for the writer
//! task to finish: no task hop in the common case), and otherwise queues it for the writer
//! task, which owns the flushing and its timeout. A reader
//! task owns the read half and hands each response frame to the waiter with its correlation id:
//! a caller awaiting it, or a callback the reader runs at once (`Connection::send_then`, for
//! the producer, whose answers then wake no task of their own).
//! Any read or write failure breaks the connection for good: every pending and later request
//! fails with [`Error::ConnectionBroken`], and the owner dials a new connection.
//!
//! Connection health (as the Java client and librdkafka): a request that gets no answer within
//! its timeout leaves the connection in an unknown state (a half-open peer, a broker that stopped
//! reading, responses that may still arrive out of turn), so the timeout **retires** the
//! connection: every other waiter fails with [`Error::ConnectionBroken`] and the next request
//! dials afresh. Timeouts are enforced as the Java client's `NetworkClient` does, by a sweep
//! rather than a timer per request: each pending request carries its deadline and the reader
//! task checks them every tenth of the request timeout (and at least once a second), so a
//! request fails within a tenth of its timeout after it (a shorter timeout than the
//! connection's own, or a caller on another runtime than the reader's, gets a timer of its
//! own). A request's deadline runs from when it is queued, before its frame is written. A timer per request cost each request a wake of a parked worker
//! thread (registering the only timer of an idle runtime) and a contended timer-wheel lock. A
//! frame the writer cannot hand to the socket within the request timeout (a peer that stopped
//! reading) breaks it the same way. A connection unused for
//! [`ClientConfig::connections_max_idle`] is not reused ([`Connection::idle_for`]): the broker
//! may have closed it (`connections.max.idle.ms`) without our reader having seen the close yet.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::fast_map::FastMap;
use crate::frame;
use crate::messages::{api_key, decode_response, encode_request, peek_correlation_id};
use crate::sasl::{Exchange, SaslConfig, Step};
use crate::versions::VersionTable;

/// The read half of a broker stream (plain TCP or TLS).
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a broker stream (plain TCP or TLS).
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// How long a connection whose first request broke waits for its reader to decrypt a TLS alert
/// that explains the break (a refused client certificate), so the error names the refusal and
/// not the broken pipe. Bounded by what is left of the connect timeout.
const TLS_REFUSAL_GRACE: Duration = Duration::from_secs(1);

/// Splits `stream` into boxed halves, through TLS when `config.tls` is set.
async fn secure(
    stream: TcpStream,
    broker: &str,
    config: &ClientConfig,
    deadline: tokio::time::Instant,
) -> Result<(BoxRead, BoxWrite)> {
    let Some(tls) = &config.tls else {
        let (r, w) = stream.into_split();
        return Ok((Box::new(r), Box::new(w)));
    };
    #[cfg(any(feature = "tls", feature = "tls-ring"))]
    {
        let tls = crate::tls::handshake(stream, broker, tls, deadline).await?;
        let (r, w) = tokio::io::split(tls);
        Ok((Box::new(r), Box::new(w)))
    }
    #[cfg(not(any(feature = "tls", feature = "tls-ring")))]
    {
        let _ = (tls, deadline);
        Err(Error::Tls {
            broker: broker.to_string(),
            reason: "TLS is configured but krpc-kafka was built without its `tls` feature".into(),
        })
    }
}

/// The write half of a connection, framing each request with its size.
type FrameSink = FramedWrite<BoxWrite, tokio_util::codec::LengthDelimitedCodec>;

/// Why a waiter gets no response.
enum Failure {
    /// The connection broke (why).
    Broken(String),
    /// The request's deadline passed (the sweep retired the connection).
    TimedOut,
}

/// What a waiter receives: the response frame, or why there is none.
type Reply = std::result::Result<Bytes, Failure>;

/// Where a request's answer goes.
enum Answer {
    /// To the caller awaiting it ([`Connection::send`]).
    Channel(oneshot::Sender<Reply>),
    /// To a function the reader task calls ([`Connection::send_then`]).
    Call(Box<dyn FnOnce(Reply) + Send>),
}

impl Answer {
    fn give(self, reply: Reply) {
        match self {
            // A caller that went away has no use for it.
            Answer::Channel(tx) => {
                let _ = tx.send(reply);
            }
            // A callback that panics is reported, not raised: it runs on whichever task tells
            // the waiters (see `Connection::send_then`), which must go on to tell the others.
            Answer::Call(f) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(reply))).is_err() {
                    tracing::error!("a request's answer callback panicked");
                }
            }
        }
    }
}

/// A request sent and not yet answered.
struct Waiter {
    answer: Answer,
    /// When the reader's sweep fails it with [`Failure::TimedOut`] (tokio's clock, as the
    /// sweep's timer: a paused test clock governs both).
    deadline: tokio::time::Instant,
    api: ApiKey,
    timeout: Duration,
}

/// Waiters taken out of the state to be told why they get no answer, once its lock is
/// released ([`Failed::give`]): a waiter's callback may take locks of its own.
#[must_use = "the waiters must be told (Failed::give), after the state's lock is released"]
struct Failed(Vec<(Answer, Failure)>);

impl Failed {
    fn give(self) {
        for (answer, failure) in self.0 {
            answer.give(Err(failure));
        }
    }
}

struct State {
    pending: FastMap<i32, Waiter>,
    broken: Option<String>,
    /// The broker ended the TLS session with an alert after the handshake (TLS 1.3 sends a
    /// refused client certificate that way): what it means, for [`Error::Tls`].
    tls_refusal: Option<String>,
    /// When a request was last sent or a response last received.
    last_used: std::time::Instant,
}

impl Default for State {
    fn default() -> Self {
        Self {
            pending: FastMap::default(),
            broken: None,
            tls_refusal: None,
            last_used: std::time::Instant::now(),
        }
    }
}

impl State {
    /// Marks the connection broken; returns every waiter, to be failed with `reason`.
    fn break_with(&mut self, reason: String) -> Failed {
        if self.broken.is_none() {
            self.broken = Some(reason.clone());
        }
        Failed(
            self.pending
                .drain()
                .map(|(_, w)| (w.answer, Failure::Broken(reason.clone())))
                .collect(),
        )
    }

    /// Takes every request past its deadline (to fail with [`Failure::TimedOut`]) and, if
    /// there was one, retires the connection (every other waiter is to fail as broken);
    /// returns the reason, if retired, and the waiters to tell.
    fn sweep(&mut self, broker: &str, now: tokio::time::Instant) -> (Option<String>, Failed) {
        let expired: Vec<i32> = self
            .pending
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut reason = None;
        let mut failed = Vec::new();
        for id in expired {
            if let Some(w) = self.pending.remove(&id) {
                reason.get_or_insert_with(|| {
                    tracing::debug!(%broker, api = ?w.api, timeout = ?w.timeout, "request timed out; connection retired");
                    timed_out(w.api, w.timeout)
                });
                failed.push((w.answer, Failure::TimedOut));
            }
        }
        if let Some(reason) = &reason {
            failed.extend(self.break_with(reason.clone()).0);
        }
        (reason, Failed(failed))
    }
}

/// Breaks the connection whose state is `state` and fails every waiter with `reason`, after
/// the lock is released.
fn break_connection(state: &Mutex<State>, reason: String) {
    let failed = lock(state).break_with(reason);
    failed.give();
}

/// [`State::sweep`] of `state`, the waiters told after the lock is released.
fn sweep_connection(
    state: &Mutex<State>,
    broker: &str,
    now: tokio::time::Instant,
) -> Option<String> {
    let (reason, failed) = lock(state).sweep(broker, now);
    failed.give();
    reason
}

/// Why a connection is retired when a request to it got no answer within `timeout`.
fn timed_out(api: ApiKey, timeout: Duration) -> String {
    format!("retired: a {api:?} request got no answer within {timeout:?}")
}

/// What a request's `reply` from `broker` means for its sender: the decoded response (`R`'s
/// response at `version`), [`Error::Timeout`] after `timeout`, or [`Error::ConnectionBroken`].
fn answer_of<R: Request>(
    reply: Reply,
    version: i16,
    broker: &str,
    timeout: Duration,
) -> Result<R::Response> {
    match reply {
        Ok(frame) => decode_response::<R>(frame, version, broker),
        // The broker may answer later, or never: the connection's state is unknown, so it
        // was retired (other waiters failed at once) and the next request dials afresh.
        Err(Failure::TimedOut) => Err(Error::Timeout {
            broker: broker.to_string(),
            api: crate::ApiKey::of(api_key::<R>()),
            after: timeout,
        }),
        Err(Failure::Broken(reason)) => Err(Error::ConnectionBroken {
            broker: broker.to_string(),
            api: Some(crate::ApiKey::of(api_key::<R>())),
            reason,
        }),
    }
}

/// How often the reader sweeps for requests past their deadline: a tenth of the request
/// timeout, at least every second and at most every millisecond.
fn sweep_period(request_timeout: Duration) -> Duration {
    (request_timeout / 10).clamp(Duration::from_millis(1), Duration::from_secs(1))
}

/// A live connection to one broker, with its negotiated API versions.
pub struct Connection {
    broker: String,
    /// Sent in every request header; a `StrBytes` so that each request shares its bytes.
    client_id: StrBytes,
    request_timeout: Duration,
    next_id: AtomicI32,
    /// To the writer task: a frame to write, or an empty one meaning "flush what a caller
    /// left buffered".
    outgoing: mpsc::UnboundedSender<Bytes>,
    /// The write half, shared by the writer task and callers that find it free.
    sink: Arc<tokio::sync::Mutex<FrameSink>>,
    state: Arc<Mutex<State>>,
    versions: VersionTable,
    reader: JoinHandle<()>,
    /// The runtime the reader task (and with it the deadline sweep) runs on.
    reader_runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("broker", &self.broker)
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A deadline for a timeout too long to add to an `Instant` (`Duration::MAX`): about 30 years.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// Removes a pending entry when its caller goes away before the answer came.
struct PendingGuard<'a> {
    state: &'a Mutex<State>,
    id: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        // Dropped after the lock is released (a callback's state drops with it).
        let waiter = lock(self.state).pending.remove(&self.id);
        drop(waiter);
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connection {
    /// Dials `broker`, starts the reader and writer tasks and negotiates API versions.
    pub async fn connect(broker: &str, config: &ClientConfig) -> Result<Self> {
        let connect_err = |reason: String| Error::Connect {
            broker: broker.to_string(),
            reason,
        };
        let deadline = tokio::time::Instant::now() + config.connect_timeout;
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(broker))
            .await
            .map_err(|_| connect_err(format!("no answer within {:?}", config.connect_timeout)))?
            .map_err(|e| connect_err(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| connect_err(e.to_string()))?;
        let (read_half, write_half) = secure(stream, broker, config, deadline).await?;
        let state = Arc::new(Mutex::new(State::default()));
        let (outgoing, mut queue) = mpsc::unbounded_channel::<Bytes>();

        let codec = frame::codec(config.max_frame_bytes);
        let sink = Arc::new(tokio::sync::Mutex::new(FramedWrite::new(
            write_half,
            codec.clone(),
        )));
        let writer = sink.clone();
        let writer_state = state.clone();
        let write_timeout = config.request_timeout;
        tokio::spawn(async move {
            while let Some(frame) = queue.recv().await {
                let write = async {
                    let mut sink = writer.lock().await;
                    if frame.is_empty() {
                        SinkExt::<Bytes>::flush(&mut *sink).await
                    } else {
                        sink.send(frame).await
                    }
                };
                let reason = match tokio::time::timeout(write_timeout, write).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => format!("write failed: {e}"),
                    Err(_) => format!(
                        "the broker took no bytes for {write_timeout:?} (it stopped reading)"
                    ),
                };
                break_connection(&writer_state, reason);
                return;
            }
        });

        let mut frames = FramedRead::new(read_half, codec);
        let reader_state = state.clone();
        let period = sweep_period(config.request_timeout);
        let reader_broker = broker.to_string();
        let reader = tokio::spawn(async move {
            // However the task ends (its runtime shut down, a panic): every waiter, which has
            // no timer of its own, fails at once rather than waiting forever.
            struct Ended(Arc<Mutex<State>>);
            impl Drop for Ended {
                fn drop(&mut self) {
                    break_connection(&self.0, "the connection's reader task ended".into());
                }
            }
            let _ended = Ended(reader_state.clone());
            let mut sweep = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Also swept between frames: a connection whose answers never stop coming would
            // otherwise never see its timer's turn.
            let mut next_sweep = tokio::time::Instant::now() + period;
            let reason = loop {
                // `None`: the timer's turn (an idle connection's only chance to sweep).
                let next = tokio::select! {
                    biased;
                    next = frames.next() => Some(next),
                    _ = sweep.tick() => None,
                };
                let ticked = next.is_none();
                // A frame read is handed to its waiter before deadlines are swept (as Java's
                // `NetworkClient.poll` handles completed receives before timed-out requests):
                // an answer that came is delivered even if the sweep then retires the
                // connection.
                if let Some(next) = next {
                    match next {
                        Some(Ok(frame)) => {
                            let frame = frame.freeze();
                            let Some(id) = peek_correlation_id(&frame) else {
                                break format!(
                                    "response frame of {} bytes has no correlation id",
                                    frame.len()
                                );
                            };
                            // An unknown id belongs to a caller that went away
                            // (cancelled): drop it.
                            let waiter = {
                                let mut state = lock(&reader_state);
                                state.last_used = std::time::Instant::now();
                                state.pending.remove(&id)
                            };
                            // Woken after the lock is released: the caller's first step (its
                            // pending entry's guard) takes the same lock.
                            if let Some(waiter) = waiter {
                                waiter.answer.give(Ok(frame));
                            }
                        }
                        Some(Err(e)) => {
                            #[cfg(any(feature = "tls", feature = "tls-ring"))]
                            if let Some(refusal) = crate::tls::refusal(&e) {
                                lock(&reader_state).tls_refusal = Some(refusal);
                            }
                            break format!("read failed: {e}");
                        }
                        None => break "closed by the broker".to_string(),
                    }
                }
                let now = tokio::time::Instant::now();
                if ticked || now >= next_sweep {
                    next_sweep = now + period;
                    if let Some(reason) = sweep_connection(&reader_state, &reader_broker, now) {
                        break reason;
                    }
                }
            };
            break_connection(&reader_state, reason);
        });

        let mut conn = Self {
            broker: broker.to_string(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout: config.request_timeout,
            next_id: AtomicI32::new(0),
            outgoing,
            sink,
            state,
            versions: VersionTable::default(),
            reader,
            reader_runtime: tokio::runtime::Handle::current(),
        };
        conn.versions = match conn.negotiate_versions().await {
            Ok(versions) => versions,
            Err(e) => {
                // The writer can meet the closed socket before the reader has decrypted the
                // alert that says why: the reader ends at the socket's end, so give it a
                // bounded moment to record the refusal before deciding what the error is.
                if config.tls.is_some() && matches!(e, Error::ConnectionBroken { .. }) {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let grace = TLS_REFUSAL_GRACE.min(left);
                    let _ = tokio::time::timeout(grace, &mut conn.reader).await;
                }
                conn.refused_or(e)?
            }
        };
        if let Some(sasl) = &config.sasl {
            conn.authenticate(sasl).await?;
        }
        Ok(conn)
    }

    /// `Error::Tls` with the broker's refusal of the TLS session if the reader saw one, else
    /// `e`.
    fn refused_or(&self, e: Error) -> Result<VersionTable> {
        // Not a transient break: the broker refused the TLS session (a TLS 1.3 broker refuses
        // a client certificate only after the client's side of the handshake).
        match lock(&self.state).tls_refusal.take() {
            Some(reason) => Err(Error::Tls {
                broker: self.broker.clone(),
                reason,
            }),
            None => Err(e),
        }
    }

    /// SaslHandshake v1 then SaslAuthenticate until the mechanism is done (server signature
    /// verified for SCRAM). Every failure is an [`Error::Authentication`].
    async fn authenticate(&self, sasl: &SaslConfig) -> Result<()> {
        let mech = sasl.mechanism;
        let auth_err = |reason: String| Error::Authentication {
            broker: self.broker.clone(),
            mechanism: mech,
            reason,
        };
        let on_send = |e: Error| match e {
            Error::ConnectionBroken { .. } => auth_err(format!(
                "the broker closed the connection during SASL {mech} authentication \
                 (wrong credentials or mechanism not enabled)"
            )),
            Error::Timeout { api, after, .. } => {
                auth_err(format!("no answer to {api:?} within {after:?}"))
            }
            other => other,
        };
        let no_sasl = |e: Error| auth_err(format!("the broker does not offer SASL: {e}"));
        let describe = |code: i16| match ResponseError::try_from_code(code) {
            Some(e) => format!("{e:?} ({code})"),
            None => format!("error code {code}"),
        };
        let mut exchange = Exchange::start(sasl).map_err(auth_err)?;

        let hs_version = self.version::<SaslHandshakeRequest>().map_err(no_sasl)?;
        if hs_version < 1 {
            return Err(auth_err(
                "the broker only knows SaslHandshake v0 (raw SASL tokens), which this client \
                 does not speak"
                    .into(),
            ));
        }
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mech.name()));
        let hs = self
            .send_version(&handshake, hs_version, self.request_timeout)
            .await
            .map_err(on_send)?;
        if hs.error_code != 0 {
            let offered: Vec<&str> = hs.mechanisms.iter().map(|m| m.as_str()).collect();
            let offered = if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            };
            return Err(auth_err(
                if ResponseError::try_from_code(hs.error_code)
                    == Some(ResponseError::UnsupportedSaslMechanism)
                {
                    format!("mechanism {mech} is not enabled on the broker (it offers: {offered})")
                } else {
                    format!(
                        "SaslHandshake refused: {} (the broker offers: {offered})",
                        describe(hs.error_code)
                    )
                },
            ));
        }

        let auth_version = self.version::<SaslAuthenticateRequest>().map_err(no_sasl)?;
        let mut out = exchange.first();
        loop {
            let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(out));
            let resp = self
                .send_version(&req, auth_version, self.request_timeout)
                .await
                .map_err(on_send)?;
            if resp.error_code != 0 {
                let what = if ResponseError::try_from_code(resp.error_code)
                    == Some(ResponseError::SaslAuthenticationFailed)
                {
                    "the broker refused the credentials (wrong password or unknown user)"
                } else {
                    "the broker refused the authentication"
                };
                let message = resp
                    .error_message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                return Err(auth_err(format!(
                    "{what}{message} [{}]",
                    describe(resp.error_code)
                )));
            }
            match exchange.next(&resp.auth_bytes).map_err(auth_err)? {
                Step::Send(next) => out = next,
                Step::Done => break,
            }
        }
        tracing::debug!(broker = %self.broker, mechanism = %mech, user = %sasl.username, "authenticated");
        Ok(())
    }

    /// ApiVersions v3; a broker that does not know v3 answers in v0, which we then speak.
    async fn negotiate_versions(&self) -> Result<VersionTable> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("krpc-kafka"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp = match self.send_version(&req, 3, self.request_timeout).await {
            Ok(resp) if resp.error_code == 0 => resp,
            Ok(_) | Err(Error::Malformed { .. }) => {
                self.send_version(&req, 0, self.request_timeout).await?
            }
            Err(e) => return Err(e),
        };
        crate::error::check_code(
            resp.error_code,
            &self.broker,
            ApiKey::ApiVersions,
            String::new,
        )?;
        Ok(VersionTable::from_response(&resp))
    }

    /// The broker's address.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// Whether the connection broke (a new one must be dialled).
    pub fn is_broken(&self) -> bool {
        lock(&self.state).broken.is_some()
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        lock(&self.state).pending.len()
    }

    /// How long the connection has had nothing in flight and nothing sent or received
    /// (zero while a request is in flight).
    pub fn idle_for(&self) -> Duration {
        let state = lock(&self.state);
        if state.pending.is_empty() {
            state.last_used.elapsed()
        } else {
            Duration::ZERO
        }
    }

    /// [`Connection::idle_for`], or `None` if the connection broke: both under one lock, for
    /// the client's check before each request.
    pub(crate) fn idle_unless_broken(&self) -> Option<Duration> {
        let state = lock(&self.state);
        if state.broken.is_some() {
            None
        } else if state.pending.is_empty() {
            Some(state.last_used.elapsed())
        } else {
            Some(Duration::ZERO)
        }
    }

    /// Breaks the connection for good, failing every waiter with `reason`.
    pub fn retire(&self, reason: String) {
        break_connection(&self.state, reason);
    }

    /// The version this connection uses for request type `R`.
    pub fn version<R: Request>(&self) -> Result<i16> {
        self.versions.pick::<R>(&self.broker)
    }

    /// Sends `req` at the negotiated version and waits for its response (request timeout).
    pub async fn send<R: Request>(&self, req: &R) -> Result<R::Response> {
        self.send_timeout(req, self.request_timeout).await
    }

    /// Sends `req` at the negotiated version and waits at most `timeout` for its response.
    /// On [`Error::Timeout`] the connection is retired: every other request waiting on it fails
    /// with [`Error::ConnectionBroken`] and the client dials a new one for the next request.
    pub async fn send_timeout<R: Request>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let version = self.version::<R>()?;
        self.send_version(req, version, timeout).await
    }

    /// Sends `req` for which the broker sends no response (Produce with acks=0).
    pub fn send_no_response<R: Request>(&self, req: &R) -> Result<()> {
        let version = self.version::<R>()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(req, version, id, &self.client_id)?;
        {
            let mut state = lock(&self.state);
            if let Some(reason) = state.broken.clone() {
                return Err(self.broken_error(api_key::<R>(), reason));
            }
            state.last_used = std::time::Instant::now();
        }
        // Through the writer task (this function does not wait; acks=0 is rare).
        self.outgoing
            .send(frame)
            .map_err(|_| self.broken_error(api_key::<R>(), "writer stopped".into()))
    }

    /// Hands `frame` to the socket: at once if its write half is free (written, or buffered
    /// whole with the writer task told to flush it), else through the writer task's queue.
    /// Either way in one step that a cancellation cannot cut. Err: the writer task is gone.
    async fn write(&self, frame: Bytes) -> std::result::Result<(), ()> {
        let mut frame = Some(frame);
        let queued =
            std::future::poll_fn(|cx| std::task::Poll::Ready(self.try_write_now(cx, &mut frame)))
                .await;
        match frame {
            // Not taken by the fast path: queue it.
            Some(frame) => self.outgoing.send(frame).map_err(|_| ()),
            // Buffered: the writer task flushes it (with its timeout).
            None if queued => self.outgoing.send(Bytes::new()).map_err(|_| ()),
            None => Ok(()),
        }
    }

    /// The fast path of [`Connection::write`]: takes `frame` when the write half is free and
    /// has room; returns whether part of it is left buffered. A write error breaks the
    /// connection (the waiters learn it as from the writer task).
    fn try_write_now(&self, cx: &mut std::task::Context<'_>, frame: &mut Option<Bytes>) -> bool {
        use std::task::Poll;
        let Ok(mut sink) = self.sink.try_lock() else {
            return false;
        };
        match SinkExt::<Bytes>::poll_ready_unpin(&mut *sink, cx) {
            Poll::Ready(Ok(())) => {}
            // Still flushing an earlier frame: the writer task has it.
            Poll::Pending => return false,
            Poll::Ready(Err(e)) => {
                frame.take();
                break_connection(&self.state, format!("write failed: {e}"));
                return false;
            }
        }
        let Some(f) = frame.take() else {
            return false;
        };
        if let Err(e) = sink.start_send_unpin(f) {
            break_connection(&self.state, format!("write failed: {e}"));
            return false;
        }
        match SinkExt::<Bytes>::poll_flush_unpin(&mut *sink, cx) {
            Poll::Ready(Ok(())) => false,
            Poll::Pending => true,
            Poll::Ready(Err(e)) => {
                break_connection(&self.state, format!("write failed: {e}"));
                false
            }
        }
    }

    /// Whether the calling task runs on the reader task's runtime.
    fn on_reader_runtime(&self) -> bool {
        tokio::runtime::Handle::try_current().is_ok_and(|h| h.id() == self.reader_runtime.id())
    }

    /// The runtime this connection's reader task runs on: a task spawned there can send on
    /// the connection with only the reader's sweep to bound its wait (no timer of its own),
    /// from whichever thread spawns it. If that runtime has shut down, the task never runs.
    pub(crate) fn reader_runtime(&self) -> &tokio::runtime::Handle {
        &self.reader_runtime
    }

    async fn send_version<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        let api = api_key::<R>();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(req, version, id, &self.client_id)?;
        let (tx, rx) = oneshot::channel();
        self.register(id, api, timeout, Answer::Channel(tx))?;
        let _guard = PendingGuard {
            state: &self.state,
            id,
        };
        if self.write(frame).await.is_err() {
            return Err(self.broken_error(api, "writer stopped".into()));
        }
        // The reader's sweep enforces the deadline (see the module documentation). A timer
        // does too for a timeout shorter than the connection's own (the sweep may overshoot it
        // by more than a tenth), and for a caller on another runtime than the reader's: that
        // runtime may not be running (a current-thread runtime between two `block_on`s), and
        // then nothing would sweep.
        let reply = if timeout < self.request_timeout || !self.on_reader_runtime() {
            match tokio::time::timeout(timeout, rx).await {
                Ok(reply) => reply,
                Err(_) => {
                    let reason =
                        sweep_connection(&self.state, &self.broker, tokio::time::Instant::now());
                    if reason.is_none() {
                        // Due by the timer's clock, not yet by the deadline's (they are read
                        // apart): retire the connection as the sweep would.
                        self.retire(timed_out(api, timeout));
                    }
                    Ok(Err(Failure::TimedOut))
                }
            }
        } else {
            rx.await
        };
        match reply {
            Ok(reply) => answer_of::<R>(reply, version, &self.broker, timeout),
            Err(_) => Err(self.broken_error(api, "connection dropped".into())),
        }
    }

    /// Sends `req` at the negotiated version (request timeout) and has `on_reply` called with
    /// its response, or with why there is none (as [`Connection::send`] would return it),
    /// without the sending task waiting for it: the reader task calls it as soon as the frame
    /// is read, so the answer is handled without waking the task that sent it (as the Java
    /// client's `NetworkClient` completes a request's callback on its I/O thread). This
    /// resolves once the frame is handed over (written to the socket, buffered whole, or
    /// queued for the writer task).
    ///
    /// The request's deadline is the reader's sweep's, so the reader's runtime must run: from
    /// a task on another runtime this future instead waits for the answer itself (with its
    /// own timer) and calls `on_reply` before it resolves.
    ///
    /// Where `on_reply` runs: on the reader task for an answer, a timeout or a broken read;
    /// on whichever task broke the connection otherwise (the writer task, a caller whose write
    /// failed or whose correlation id collided, this very call, a caller's timer,
    /// [`Connection::retire`] (the client's pool retires idle connections while holding a
    /// slot's lock), the reader task's end when its runtime shuts down or it panics). Always
    /// outside the connection's state lock, but maybe inside its write half's: it must not
    /// block, nor send on this connection. A panic in it is caught and logged (the other
    /// waiters are still told); a panic while decoding the answer reaches it as
    /// [`Error::Malformed`].
    ///
    /// # Errors
    ///
    /// The request could not be sent (encoding, a connection already broken, the writer task
    /// gone): `on_reply` is then never called. On `Ok` it has been or will be called exactly
    /// once, unless this future is dropped before it resolves. (From another runtime a
    /// failure comes through `on_reply`, and this returns `Ok`.)
    pub(crate) async fn send_then<R, F>(&self, req: &R, on_reply: F) -> Result<()>
    where
        R: Request,
        F: FnOnce(Result<R::Response>) + Send + 'static,
    {
        let api = api_key::<R>();
        let version = self.version::<R>()?;
        let timeout = self.request_timeout;
        if !self.on_reader_runtime() {
            // Boxed: the awaiting path (with its timer) would otherwise size the common
            // path's future too.
            on_reply(Box::pin(self.send_version(req, version, timeout)).await);
            return Ok(());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(req, version, id, &self.client_id)?;
        let broker = self.broker.clone();
        let call = move |reply: Reply| {
            // A decoder that panics on a hostile frame must not drop `on_reply` uncalled.
            let answer =
                std::panic::catch_unwind(|| answer_of::<R>(reply, version, &broker, timeout))
                    .unwrap_or_else(|_| {
                        Err(Error::Malformed {
                            broker: broker.clone(),
                            what: format!("{api:?} v{version} response"),
                            reason: "decoding it panicked".into(),
                        })
                    });
            on_reply(answer)
        };
        self.register(id, api, timeout, Answer::Call(Box::new(call)))?;
        // Dropped before the frame is handed over: the waiter goes (`on_reply` uncalled).
        let guard = PendingGuard {
            state: &self.state,
            id,
        };
        let written = self.write(frame).await;
        std::mem::forget(guard);
        if written.is_err() {
            // Still pending: never sent, so `on_reply` is dropped uncalled and the caller
            // learns it here. Gone: the connection's break already called it.
            let waiter = lock(&self.state).pending.remove(&id);
            if waiter.is_some() {
                return Err(self.broken_error(api, "writer stopped".into()));
            }
        }
        Ok(())
    }

    /// Records request `id` as waiting for its answer (due `timeout` from now), unless the
    /// connection is broken.
    fn register(&self, id: i32, api: ApiKey, timeout: Duration, answer: Answer) -> Result<()> {
        let mut state = lock(&self.state);
        if let Some(reason) = state.broken.clone() {
            return Err(self.broken_error(api, reason));
        }
        let now = tokio::time::Instant::now();
        let waiter = Waiter {
            answer,
            deadline: now.checked_add(timeout).unwrap_or(now + FAR_FUTURE),
            api,
            timeout,
        };
        if state.pending.contains_key(&id) {
            // The correlation id wrapped around (2^32 requests) onto a request still
            // unanswered: an answer could no longer be told apart, so the connection breaks
            // (every waiter fails, the next request dials afresh).
            let reason = format!("correlation id {id} reused while its request was unanswered");
            let failed = state.break_with(reason.clone());
            drop(state);
            failed.give();
            drop(waiter);
            return Err(self.broken_error(api, reason));
        }
        state.pending.insert(id, waiter);
        state.last_used = std::time::Instant::now();
        Ok(())
    }

    fn broken_error(&self, api: ApiKey, reason: String) -> Error {
        Error::ConnectionBroken {
            broker: self.broker.clone(),
            api: Some(crate::ApiKey::of(api)),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::SaslMechanism;
    use bytes::{BufMut, BytesMut};
    use futures::FutureExt;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{ApiVersionsResponse, ResponseHeader, SaslHandshakeResponse};
    use kafka_protocol::protocol::{Encodable, HeaderVersion};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// What the fake broker does when the SaslHandshake arrives.
    #[derive(Clone, Copy)]
    enum OnHandshake {
        Close,
        Unsupported,
    }

    async fn read_frame(s: &mut TcpStream) -> Option<BytesMut> {
        let len = s.read_u32().await.ok()? as usize;
        let mut buf = BytesMut::zeroed(len);
        s.read_exact(&mut buf).await.ok()?;
        Some(buf)
    }

    async fn reply<M: Encodable + HeaderVersion>(
        s: &mut TcpStream,
        id: i32,
        hv: i16,
        m: &M,
        v: i16,
    ) {
        let mut body = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(id)
            .encode(&mut body, hv)
            .unwrap();
        m.encode(&mut body, v).unwrap();
        let mut frame = BytesMut::new();
        frame.put_u32(body.len() as u32);
        frame.extend_from_slice(&body);
        s.write_all(&frame).await.unwrap();
    }

    /// A one-connection fake broker: answers ApiVersions (v3), then handles the handshake.
    async fn fake_broker(on_handshake: OnHandshake) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                while let Some(frame) = read_frame(&mut s).await {
                    let key = i16::from_be_bytes([frame[0], frame[1]]);
                    let version = i16::from_be_bytes([frame[2], frame[3]]);
                    let id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
                    if key == ApiKey::ApiVersions as i16 {
                        let api = |k: ApiKey, max: i16| {
                            ApiVersion::default()
                                .with_api_key(k as i16)
                                .with_min_version(0)
                                .with_max_version(max)
                        };
                        let resp = ApiVersionsResponse::default().with_api_keys(vec![
                            api(ApiKey::ApiVersions, 3),
                            api(ApiKey::SaslHandshake, 1),
                            api(ApiKey::SaslAuthenticate, 2),
                        ]);
                        reply(&mut s, id, 0, &resp, version).await;
                    } else if key == ApiKey::SaslHandshake as i16 {
                        match on_handshake {
                            OnHandshake::Close => break,
                            OnHandshake::Unsupported => {
                                let resp = SaslHandshakeResponse::default()
                                    .with_error_code(ResponseError::UnsupportedSaslMechanism.code())
                                    .with_mechanisms(vec![StrBytes::from_static_str(
                                        "SCRAM-SHA-512",
                                    )]);
                                let hv = SaslHandshakeResponse::header_version(version);
                                reply(&mut s, id, hv, &resp, version).await;
                            }
                        }
                    } else {
                        break;
                    }
                }
            }
        });
        addr
    }

    /// A fake broker that answers ApiVersions, then reads nothing for `stall` (so the socket's
    /// buffers fill and callers' frames are left half-written in the client), then decodes
    /// every SaslAuthenticate frame it gets (a frame cut short would misalign every later one,
    /// which then fails to decode) and answers it with the length and first byte of its
    /// payload. Reports each decoded payload's (length, first byte).
    async fn frame_checking_broker(
        stall: Duration,
    ) -> (String, mpsc::UnboundedReceiver<(usize, u8)>) {
        use kafka_protocol::messages::{RequestHeader, SaslAuthenticateResponse};
        use kafka_protocol::protocol::Decodable;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (seen, seen_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut first = true;
            while let Some(frame) = read_frame(&mut s).await {
                let mut frame = frame.freeze();
                let key = i16::from_be_bytes([frame[0], frame[1]]);
                let version = i16::from_be_bytes([frame[2], frame[3]]);
                if key == ApiKey::ApiVersions as i16 {
                    let id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
                    let resp = ApiVersionsResponse::default().with_api_keys(vec![
                        ApiVersion::default()
                            .with_api_key(ApiKey::ApiVersions as i16)
                            .with_max_version(3),
                        ApiVersion::default()
                            .with_api_key(ApiKey::SaslAuthenticate as i16)
                            .with_max_version(2),
                    ]);
                    reply(&mut s, id, 0, &resp, version).await;
                    continue;
                }
                if first {
                    first = false;
                    tokio::time::sleep(stall).await;
                }
                assert_eq!(key, ApiKey::SaslAuthenticate as i16, "a misaligned frame");
                let hv = SaslAuthenticateRequest::header_version(version);
                let header = RequestHeader::decode(&mut frame, hv).expect("a whole header");
                let req =
                    SaslAuthenticateRequest::decode(&mut frame, version).expect("a whole body");
                assert!(frame.is_empty(), "nothing after the body");
                let payload = &req.auth_bytes;
                assert!(
                    payload.iter().all(|b| *b == payload[0]),
                    "one payload per frame"
                );
                let _ = seen.send((payload.len(), payload[0]));
                let resp = SaslAuthenticateResponse::default()
                    .with_auth_bytes(Bytes::from(vec![payload[0]; 1]))
                    .with_session_lifetime_ms(payload.len() as i64);
                let rhv = SaslAuthenticateResponse::header_version(version);
                reply(&mut s, header.correlation_id, rhv, &resp, version).await;
            }
        });
        (addr, seen_rx)
    }

    /// Callers write their frames to the socket themselves when its write half is free, and
    /// hand them to the writer task otherwise. Either way a frame goes out whole: callers
    /// cancelled just after their first poll (their 1 MiB frames half in the socket, which the
    /// fake broker does not read at first) leave no partial frame behind, every frame reaches
    /// the broker intact and in one piece, and the callers that wait get their own answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_go_out_whole_whether_callers_write_them_or_the_writer_task_does() {
        let (addr, mut seen) = frame_checking_broker(Duration::from_millis(200)).await;
        let config = ClientConfig::new(addr.clone())
            .with_connect_timeout(Duration::from_secs(5))
            .with_request_timeout(Duration::from_secs(10));
        let conn = Arc::new(Connection::connect(&addr, &config).await.expect("connect"));
        let request =
            |i: u8| {
                SaslAuthenticateRequest::default()
                    .with_auth_bytes(Bytes::from(vec![i; (1 << 20) + i as usize]))
            };
        let mut cancelled = 0;
        for i in 0..8u8 {
            // Polled once, then dropped: the frame is written, buffered whole, or queued.
            if conn.send(&request(i)).now_or_never().is_none() {
                cancelled += 1;
            }
        }
        assert!(cancelled > 0, "some callers left before their answer");
        let waiting: Vec<_> = (8..16u8)
            .map(|i| {
                let conn = conn.clone();
                tokio::spawn(async move { (i, conn.send(&request(i)).await) })
            })
            .collect();
        for w in waiting {
            let (i, resp) = w.await.expect("caller task");
            let resp = resp.expect("answered");
            assert_eq!(
                (resp.auth_bytes.to_vec(), resp.session_lifetime_ms),
                (vec![i], (1 << 20) + i as i64),
                "caller {i} got its own answer"
            );
        }
        let mut got = Vec::new();
        while let Ok((len, first)) = seen.try_recv() {
            assert_eq!(len, (1 << 20) + first as usize);
            got.push(first);
        }
        got.sort();
        let waited: Vec<u8> = (8..16).collect();
        assert!(waited.iter().all(|i| got.contains(i)), "{got:?}");
        assert!(!conn.is_broken());
    }

    fn config(mechanism: SaslMechanism) -> ClientConfig {
        ClientConfig::new("unused")
            .with_connect_timeout(Duration::from_secs(5))
            .with_request_timeout(Duration::from_secs(5))
            .with_sasl(SaslConfig::new(mechanism, "u", "p"))
    }

    /// The sweep fails exactly the requests past their deadline with `TimedOut`, retires the
    /// connection (every other waiter fails as broken, naming the request that timed out), and
    /// leaves a connection with nothing due alone.
    #[test]
    fn the_sweep_times_out_requests_past_their_deadline_and_retires_the_connection() {
        let now = tokio::time::Instant::now();
        let mut state = State::default();
        let waiter = |deadline, api| {
            let (tx, rx) = oneshot::channel();
            let w = Waiter {
                answer: Answer::Channel(tx),
                deadline,
                api,
                timeout: Duration::from_secs(1),
            };
            (w, rx)
        };
        let (due, mut due_rx) = waiter(now - Duration::from_millis(1), ApiKey::Metadata);
        let (later, mut later_rx) = waiter(now + Duration::from_secs(60), ApiKey::Fetch);
        state.pending.insert(1, later);
        let (reason, failed) = state.sweep("b:9092", now);
        assert!(reason.is_none() && failed.0.is_empty(), "nothing due yet");
        assert!(state.broken.is_none());
        state.pending.insert(2, due);
        let (reason, failed) = state.sweep("b:9092", now);
        failed.give();
        let reason = reason.expect("one request was due");
        assert!(
            reason.contains("Metadata") && reason.contains("1s"),
            "{reason}"
        );
        assert!(matches!(due_rx.try_recv(), Ok(Err(Failure::TimedOut))));
        match later_rx.try_recv() {
            Ok(Err(Failure::Broken(r))) => assert_eq!(r, reason),
            _ => panic!("the other waiter fails as broken"),
        }
        assert!(state.pending.is_empty());
        assert_eq!(state.broken.as_deref(), Some(reason.as_str()));
    }

    /// A connection with `request_timeout` to a broker that answers ApiVersions and then reads
    /// nothing for a minute; returns the broker's runtime (keep it alive), the current-thread
    /// runtime the connection was dialled on (its reader task runs there, and only while that
    /// runtime runs), and the connection.
    fn silent_broker_connection(
        request_timeout: Duration,
    ) -> (tokio::runtime::Runtime, tokio::runtime::Runtime, Connection) {
        let broker_rt = tokio::runtime::Runtime::new().unwrap();
        let (addr, _seen) = broker_rt.block_on(frame_checking_broker(Duration::from_secs(60)));
        let config = ClientConfig::new(addr.clone())
            .with_connect_timeout(Duration::from_secs(5))
            .with_request_timeout(request_timeout);
        let reader_rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = reader_rt
            .block_on(Connection::connect(&addr, &config))
            .expect("connect");
        (broker_rt, reader_rt, conn)
    }

    /// A request has no timer of its own: if the connection's reader task ends without a
    /// word (here: the runtime it ran on shut down while the request waited on another), the
    /// waiter fails at once with `ConnectionBroken`, not never (nor after its whole timeout).
    #[test]
    fn a_waiter_fails_at_once_when_the_reader_task_is_gone() {
        let (_broker_rt, reader_rt, conn) = silent_broker_connection(Duration::from_secs(60));
        let conn = Arc::new(conn);
        let caller_rt = tokio::runtime::Runtime::new().unwrap();
        let waiter = {
            let conn = conn.clone();
            caller_rt.spawn(async move {
                let req =
                    SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"x"));
                conn.send(&req).await
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while conn.in_flight() != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the request was not sent"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(reader_rt);
        let outcome = caller_rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), waiter).await })
            .expect("the waiter fails at once, not after its 60 s timeout")
            .unwrap();
        assert!(
            matches!(&outcome, Err(Error::ConnectionBroken { reason, .. }) if reason.contains("reader task ended")),
            "{outcome:?}"
        );
    }

    /// The sweep runs on the reader's runtime. A caller on another runtime, while the
    /// reader's is alive but not running (a current-thread runtime between two `block_on`s),
    /// still gets its `Timeout`: it keeps a timer of its own. Before, it waited for as long as
    /// the reader's runtime stayed idle.
    #[test]
    fn a_caller_on_another_runtime_times_out_while_the_readers_runtime_is_idle() {
        let (_broker_rt, reader_rt, conn) = silent_broker_connection(Duration::from_millis(300));
        // `reader_rt` stays alive and is not run again until the end of the test.
        let caller_rt = tokio::runtime::Runtime::new().unwrap();
        let outcome = caller_rt
            .block_on(async {
                let req =
                    SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"x"));
                tokio::time::timeout(Duration::from_secs(10), conn.send(&req)).await
            })
            .expect("the caller times out after 300 ms, not never");
        assert!(
            matches!(&outcome, Err(Error::Timeout { after, .. }) if *after == Duration::from_millis(300)),
            "{outcome:?}"
        );
        drop(reader_rt);
    }

    /// `send_then` resolves once the frame is written, and the reader task calls the callback
    /// with the decoded answer, each with its own, whichever order they are answered in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_then_has_the_reader_call_back_with_each_answer() {
        let (addr, _seen) = frame_checking_broker(Duration::ZERO).await;
        let config = ClientConfig::new(addr.clone())
            .with_connect_timeout(Duration::from_secs(5))
            .with_request_timeout(Duration::from_secs(10));
        let conn = Connection::connect(&addr, &config).await.expect("connect");
        let (answers, mut answered) = mpsc::unbounded_channel();
        for i in 1..=4u8 {
            let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(vec![i; 10]));
            let answers = answers.clone();
            conn.send_then(&req, move |reply: Result<_>| {
                let _ = answers.send((i, reply));
            })
            .await
            .expect("written");
        }
        for _ in 0..4 {
            let (i, reply) = tokio::time::timeout(Duration::from_secs(10), answered.recv())
                .await
                .expect("answered in time")
                .expect("a callback");
            let resp: kafka_protocol::messages::SaslAuthenticateResponse = reply.expect("decoded");
            assert_eq!(
                resp.auth_bytes.to_vec(),
                vec![i],
                "callback {i} got its own answer"
            );
        }
        assert_eq!(conn.in_flight(), 0);
    }

    /// A request sent with `send_then` that gets no answer: the reader's sweep calls its
    /// callback with `Timeout` (and retires the connection); on a connection already broken,
    /// `send_then` fails and never calls the callback.
    #[test]
    fn send_then_calls_back_with_the_timeout_and_refuses_a_broken_connection() {
        let (_broker_rt, reader_rt, conn) = silent_broker_connection(Duration::from_millis(300));
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"x"));
        let reply = reader_rt.block_on(async {
            let (tx, rx) = oneshot::channel();
            conn.send_then(&req, move |reply| {
                let _ = tx.send(reply);
            })
            .await
            .expect("written");
            tokio::time::timeout(Duration::from_secs(10), rx)
                .await
                .expect("called back within the sweep's reach, not never")
                .expect("called")
        });
        assert!(
            matches!(&reply, Err(Error::Timeout { after, .. }) if *after == Duration::from_millis(300)),
            "{reply:?}"
        );
        assert!(conn.is_broken(), "the timeout retired the connection");
        let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refused = reader_rt.block_on({
            let called = called.clone();
            conn.send_then(&req, move |_: Result<_>| {
                called.store(true, Ordering::SeqCst)
            })
        });
        assert!(
            matches!(refused, Err(Error::ConnectionBroken { .. })),
            "{refused:?}"
        );
        assert!(
            !called.load(Ordering::SeqCst),
            "the callback of a refused request is not called"
        );
    }

    /// A callback that panics while the waiters of a broken connection are told does not
    /// stop the others from being told (they may belong to other producers and callers).
    #[test]
    fn a_panicking_callback_does_not_keep_the_other_waiters_from_their_answer() {
        let mut state = State::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let waiter = |answer| Waiter {
            answer,
            deadline,
            api: ApiKey::Produce,
            timeout: Duration::from_secs(60),
        };
        let (tx, mut rx) = oneshot::channel();
        state.pending.insert(
            1,
            waiter(Answer::Call(Box::new(|_| panic!("a callback's bug")))),
        );
        state.pending.insert(2, waiter(Answer::Channel(tx)));
        state.pending.insert(
            3,
            waiter(Answer::Call(Box::new(|_| panic!("another callback's bug")))),
        );
        state.break_with("gone".into()).give();
        assert!(
            matches!(rx.try_recv(), Ok(Err(Failure::Broken(r))) if r == "gone"),
            "the channel waiter was told"
        );
    }

    #[test]
    fn the_sweep_runs_every_tenth_of_the_request_timeout_between_1_ms_and_1_s() {
        assert_eq!(
            sweep_period(Duration::from_secs(30)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_period(Duration::from_millis(500)),
            Duration::from_millis(50)
        );
        assert_eq!(
            sweep_period(Duration::from_micros(100)),
            Duration::from_millis(1)
        );
    }

    #[tokio::test]
    async fn a_broker_closing_during_sasl_is_an_authentication_error() {
        let addr = fake_broker(OnHandshake::Close).await;
        let err = Connection::connect(&addr, &config(SaslMechanism::ScramSha512))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Authentication {
                    mechanism: SaslMechanism::ScramSha512,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(
                "the broker closed the connection during SASL SCRAM-SHA-512 authentication \
                 (wrong credentials or mechanism not enabled)"
            ),
            "{err}"
        );
        assert!(!err.is_retriable() && err.ends_connect_attempts());
    }

    #[tokio::test]
    async fn a_mechanism_not_enabled_is_named_with_the_offered_ones() {
        let addr = fake_broker(OnHandshake::Unsupported).await;
        let err = Connection::connect(&addr, &config(SaslMechanism::Plain))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("mechanism PLAIN is not enabled") && text.contains("SCRAM-SHA-512"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_client_stops_at_an_authentication_error_instead_of_retrying() {
        let addr = fake_broker(OnHandshake::Close).await;
        let started = std::time::Instant::now();
        let err = crate::KafkaClient::connect(
            config(SaslMechanism::ScramSha256).with_bootstrap(vec![addr]),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Authentication { .. }), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
