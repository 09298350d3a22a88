//! A fault-injecting TCP proxy between our clients and the test broker: delay, stall (a
//! half-open peer: the connection stays open and goes silent), blackhole new connections,
//! reset (RST) or drop (FIN) connections, all per Kafka client id.
//!
//! Written here rather than taken from `noxious` (1.0.4, the Rust toxiproxy), checked on
//! 2026-11-30: its library is the server's internals (proxies driven through `bmrng` event
//! channels and shared state, built for its HTTP API), it pins `tokio-util` 0.6, and its toxics
//! cannot express what these tests need: it has no connection reset (no `reset_peer`), its
//! `timeout` toxic drops the bytes it holds back (which corrupts a Kafka stream instead of
//! silencing it), and it cannot single out one client's connections. Running it as a process
//! would add an HTTP client and a binary to install for the same gaps.
//!
//! Every connection is tagged with the `client_id` of the first Kafka request it carries (the
//! request header's nullable string right after api key, version and correlation id), so a
//! test can hit "the server's connections" or "the client's connections" while both reach the
//! broker through the one address it advertises.
//!
//! For the proxy to sit in the path, the broker must advertise the proxy's address in Metadata
//! (see [`crate::Broker::start_advertising`]): clients bootstrap anywhere, then dial what the
//! broker advertises.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the bytes of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Forward at once.
    Pass,
    /// Forward each chunk after this delay.
    Delay(Duration),
    /// Forward nothing and read nothing: the connection stays open and silent (half-open).
    Stall,
}

/// Where a connection's client id is written once its first request is seen.
type ClientIdSlot = Arc<Mutex<Option<String>>>;

/// One proxied connection.
struct Conn {
    id: u64,
    /// The Kafka client id of its first request, once seen.
    client_id: ClientIdSlot,
    flow: watch::Sender<Flow>,
    /// Set to end the connection: `true` resets (RST), `false` closes (FIN).
    end: watch::Sender<Option<bool>>,
}

/// Which connections a fault applies to.
#[derive(Debug, Clone)]
pub enum Target {
    /// Every connection.
    All,
    /// Connections whose first Kafka request carried this client id.
    ClientId(String),
}

impl Target {
    fn matches(&self, client_id: Option<&str>) -> bool {
        match self {
            Target::All => true,
            Target::ClientId(want) => client_id == Some(want.as_str()),
        }
    }
}

struct State {
    upstream: String,
    conns: Mutex<Vec<Conn>>,
    next_id: AtomicU64,
    /// Client ids whose NEW connections are blackholed (accepted, then left silent), with the
    /// flow every new connection starts with.
    blackholed: Mutex<Vec<Target>>,
    accepted: AtomicU64,
}

/// A running proxy; stops (and closes every connection) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        for c in self.state.conns.lock().unwrap().iter() {
            let _ = c.end.send(Some(false));
        }
    }
}

impl FaultProxy {
    /// Listens on `listener` (bound by the caller, so the broker can be told its address
    /// before it starts) and forwards every connection to `upstream`.
    pub fn start(listener: std::net::TcpListener, upstream: &str) -> FaultProxy {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            conns: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            blackholed: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        FaultProxy { addr, state, task }
    }

    /// `host:port` of the proxy.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::Relaxed)
    }

    /// Open connections of `target` (those whose client id is known).
    pub fn open(&self, target: &Target) -> usize {
        self.each(target, |_| {})
    }

    fn each(&self, target: &Target, f: impl Fn(&Conn)) -> usize {
        let conns = self.state.conns.lock().unwrap();
        let mut n = 0;
        for c in conns.iter() {
            let id = c.client_id.lock().unwrap().clone();
            if id.is_some() && target.matches(id.as_deref()) {
                f(c);
                n += 1;
            }
        }
        n
    }

    /// Stalls the open connections of `target` for good: they stay open and silent, as when
    /// the peer vanished without a FIN (half-open). Returns how many.
    pub fn stall(&self, target: &Target) -> usize {
        self.each(target, |c| {
            let _ = c.flow.send(Flow::Stall);
        })
    }

    /// Delays every chunk of the open connections of `target` by `by`. Returns how many.
    pub fn delay(&self, target: &Target, by: Duration) -> usize {
        self.each(target, |c| {
            let _ = c.flow.send(Flow::Delay(by));
        })
    }

    /// Resets (RST) the open connections of `target`. Returns how many.
    pub fn reset(&self, target: &Target) -> usize {
        self.each(target, |c| {
            let _ = c.end.send(Some(true));
        })
    }

    /// Closes (FIN) the open connections of `target`. Returns how many.
    pub fn drop_connections(&self, target: &Target) -> usize {
        self.each(target, |c| {
            let _ = c.end.send(Some(false));
        })
    }

    /// New connections of `target` are accepted, then stalled once their first request names
    /// them (a blackholed broker address), until [`heal`](Self::heal).
    pub fn blackhole(&self, target: Target) {
        self.state.blackholed.lock().unwrap().push(target);
    }

    /// Ends every blackhole (connections already stalled stay stalled: they are half-open).
    pub fn heal(&self) {
        self.state.blackholed.lock().unwrap().clear();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        state.accepted.fetch_add(1, Ordering::Relaxed);
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(&state.upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let id = state.next_id.fetch_add(1, Ordering::Relaxed);
            let (flow, flow_rx) = watch::channel(Flow::Pass);
            let (end, mut end_rx) = watch::channel(None);
            let client_id = Arc::new(Mutex::new(None));
            state.conns.lock().unwrap().push(Conn {
                id,
                client_id: client_id.clone(),
                flow,
                end,
            });
            // Linger 0 before the socket is closed makes the close a reset (RST).
            let client_fd = std::os::fd::AsRawFd::as_raw_fd(&client);
            let (c_read, c_write) = client.into_split();
            let (u_read, u_write) = upstream.into_split();
            let up = pump(
                c_read,
                u_write,
                flow_rx.clone(),
                Some((client_id, state.clone())),
            );
            let down = pump(u_read, c_write, flow_rx, None);
            let ended = async {
                loop {
                    if let Some(reset) = *end_rx.borrow_and_update() {
                        if reset {
                            // The pumps (which own the socket) are still alive here.
                            set_zero_linger(client_fd);
                        }
                        return reset;
                    }
                    if end_rx.changed().await.is_err() {
                        return false;
                    }
                }
            };
            tokio::select! {
                (r1, r2) = async { tokio::join!(up, down) } => {
                    drop((r1, r2));
                }
                // Dropping the pumps closes both sockets (a reset one with RST).
                _ = ended => {}
            }
            state.conns.lock().unwrap().retain(|c| c.id != id);
        });
    }
}

/// Sets SO_LINGER to zero on `fd` (still open: its halves are dropped after this), so closing
/// it sends RST. (tokio's `set_zero_linger` needs the stream, which the pumps own by then.)
fn set_zero_linger(fd: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is an open socket owned by this connection's halves, which outlive this
    // call; the option value is a properly sized `linger`.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Copies `from` to `to` as `flow` says. On the client-to-broker side (`tag` set) it reads the
/// client id of the first request and stalls the connection if that client is blackholed.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut flow: watch::Receiver<Flow>,
    mut tag: Option<(ClientIdSlot, Arc<State>)>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut stalled_by_blackhole = false;
    loop {
        let now = if stalled_by_blackhole {
            Flow::Stall
        } else {
            *flow.borrow_and_update()
        };
        if now == Flow::Stall {
            // Read nothing, write nothing, until the flow changes (it never does for a
            // blackholed or half-open connection; the peer gives up and closes).
            if stalled_by_blackhole {
                std::future::pending::<()>().await;
            }
            if flow.changed().await.is_err() {
                return Ok(());
            }
            continue;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => r?,
            _ = flow.changed() => continue,
        };
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        if let Some((slot, state)) = tag.take() {
            let id = first_client_id(&buf[..n]);
            let blackholed = state
                .blackholed
                .lock()
                .unwrap()
                .iter()
                .any(|t| t.matches(id.as_deref()));
            *slot.lock().unwrap() = id;
            if blackholed {
                stalled_by_blackhole = true;
                continue;
            }
        }
        if let Flow::Delay(d) = now {
            tokio::time::sleep(d).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// The client id in the header of the Kafka request starting `frame` (size, api key, api
/// version, correlation id, then client id as an int16-length string), if present.
fn first_client_id(frame: &[u8]) -> Option<String> {
    let len = i16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    if len < 0 {
        return None;
    }
    let bytes = frame.get(14..14 + len as usize)?;
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_client_id_of_a_request_header() {
        let mut frame = vec![0, 0, 0, 20, 0, 18, 0, 3, 0, 0, 0, 1, 0, 3];
        frame.extend_from_slice(b"abc");
        assert_eq!(super::first_client_id(&frame).as_deref(), Some("abc"));
        assert_eq!(super::first_client_id(&frame[..13]), None);
    }
}
