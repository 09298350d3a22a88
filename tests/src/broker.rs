//! A real broker for the tests: nisshi started by the project's own `scripts/broker install`
//! binary on a free loopback port, killed when the handle drops (a panicking test included) and,
//! through `PR_SET_PDEATHSIG`, when the test process dies.
//!
//! `KAFKA_BOOTSTRAP` set means: use that broker; tests that kill or restart the broker then skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the broker keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In memory: fast, lost on kill.
    Memory,
    /// A SQLite file in the broker's directory: survives kill -9 and restart.
    Sqlite,
}

/// Authentication and TLS of a broker started by [`Broker::start_with`].
#[derive(Debug, Clone, Default)]
pub struct BrokerSecurity {
    /// SASL users to create: (mechanism, name, password). SCRAM-SHA-256 and SCRAM-SHA-512 only
    /// (what `nisshi user create --mechanism` knows). Non-empty means the broker requires
    /// authentication (`--authentication`); users need [`Storage::Sqlite`].
    pub users: Vec<(krpc_kafka::SaslMechanism, String, String)>,
    /// TLS: (certificate chain PEM, PKCS#8 private key PEM); the listener then only speaks TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A running broker (or the external one named by `KAFKA_BOOTSTRAP`).
pub struct Broker {
    addr: String,
    port: u16,
    storage: Storage,
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    security: Option<BrokerSecurity>,
    /// The port advertised in Metadata when it is not the broker's own (a proxy in front).
    advertised_port: Option<u16>,
}

impl Broker {
    /// One memory-storage broker shared by all tests of this test binary.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(|| Broker::start(Storage::Memory))
    }

    /// Starts a broker of its own (for tests that kill or restart it).
    pub fn start(storage: Storage) -> Broker {
        if let Ok(addr) = std::env::var("KAFKA_BOOTSTRAP") {
            return Broker {
                addr,
                port: 0,
                storage,
                dir: None,
                child: None,
                security: None,
                advertised_port: None,
            };
        }
        #[cfg(feature = "testcontainers")]
        if std::env::var("KRPC_TEST_BACKEND").as_deref() == Ok("testcontainers") {
            let addr = crate::containers::kafka_bootstrap();
            return Broker {
                addr,
                port: 0,
                storage,
                dir: None,
                child: None,
                security: None,
                advertised_port: None,
            };
        }
        let port = free_port();
        let dir = tempfile::Builder::new()
            .prefix("krpc-broker-")
            .tempdir()
            .expect("temp dir");
        let mut broker = Broker {
            addr: format!("127.0.0.1:{port}"),
            port,
            storage,
            dir: Some(dir),
            child: None,
            security: None,
            advertised_port: None,
        };
        broker.launch();
        broker
    }

    /// Starts a broker of its own that advertises `127.0.0.1:advertised_port` in Metadata
    /// instead of its own address, so that clients reach it through whatever listens there (a
    /// [`crate::proxy::FaultProxy`]): nisshi tells clients where to connect, so a proxy is in
    /// the path only if the broker advertises it. `None` with `KAFKA_BOOTSTRAP` set (an
    /// external broker cannot be told what to advertise).
    pub fn start_advertising(storage: Storage, advertised_port: u16) -> Option<Broker> {
        if std::env::var("KAFKA_BOOTSTRAP").is_ok()
            || std::env::var("KRPC_TEST_BACKEND").as_deref() == Ok("testcontainers")
        {
            return None;
        }
        let port = free_port();
        let dir = tempfile::Builder::new()
            .prefix("krpc-broker-")
            .tempdir()
            .expect("temp dir");
        let mut broker = Broker {
            addr: format!("127.0.0.1:{port}"),
            port,
            storage,
            dir: Some(dir),
            child: None,
            security: None,
            advertised_port: Some(advertised_port),
        };
        broker.launch();
        Some(broker)
    }

    /// Starts a broker of its own with SASL users and/or TLS (see [`BrokerSecurity`]).
    ///
    /// Users are created with `nisshi user create` while the broker runs without
    /// `--authentication` (that command neither authenticates nor speaks TLS), then the broker
    /// is restarted on the same storage with `--authentication` (and `--cert`/`--key`).
    /// With `KAFKA_BOOTSTRAP` (or the testcontainers backend) this returns the external broker
    /// like [`Broker::start`], with no security set up: tests check [`Broker::is_owned`].
    pub fn start_with(storage: Storage, security: BrokerSecurity) -> Broker {
        let mut broker = Broker::start(storage);
        if !broker.is_owned() {
            return broker;
        }
        if !security.users.is_empty() {
            assert_eq!(
                storage,
                Storage::Sqlite,
                "SASL users must survive the restart that enables authentication: use Storage::Sqlite"
            );
            for (mechanism, name, password) in &security.users {
                broker.create_user(*mechanism, name, password);
            }
        }
        broker.security = Some(security);
        broker.restart();
        broker
    }

    /// `nisshi user create` against this (running, unauthenticated, plaintext) broker.
    fn create_user(&self, mechanism: krpc_kafka::SaslMechanism, name: &str, password: &str) {
        let mechanism = match mechanism {
            krpc_kafka::SaslMechanism::ScramSha256 => "scram256",
            krpc_kafka::SaslMechanism::ScramSha512 => "scram512",
            other => panic!("nisshi user create knows SCRAM-SHA-256/512 only, not {other}"),
        };
        let broker_url = format!("tcp://127.0.0.1:{}", self.port);
        let mut child = Command::new(nisshi_binary())
            .args(["user", "create", "--broker", &broker_url])
            .args(["--mechanism", mechanism, name, password])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nisshi user create");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for nisshi user create") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nisshi user create {name} did not finish within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = child.wait_with_output().expect("nisshi user create output");
        assert!(
            status.success(),
            "nisshi user create --mechanism {mechanism} {name} failed ({status}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `host:port` to bootstrap from.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether this handle owns the broker process (so it can kill and restart it).
    pub fn is_owned(&self) -> bool {
        self.dir.is_some()
    }

    /// The broker's log so far (empty for an external broker).
    pub fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.path().join("broker.log")).ok())
            .unwrap_or_default()
    }

    /// Grows `topic` to `total` partitions by writing the broker's SQLite storage while it runs
    /// (needs [`Storage::Sqlite`] and an owned broker). A stand-in for CreatePartitions, which
    /// nisshi 0.8.1 does not implement (its request router has no CreatePartitions route): the
    /// rows are the ones its CreateTopics writes (`topic.partitions`, one `topition` and one
    /// `watermark` per partition), and it reads them afresh on every Metadata, Produce and
    /// Fetch. Runs the system `python3` (its `sqlite3` module) to avoid a C SQLite in this crate.
    pub fn grow_partitions_in_storage(&self, topic: &str, total: i32) {
        assert_eq!(self.storage, Storage::Sqlite, "needs SQLite storage");
        let dir = self.dir.as_ref().expect("an owned broker").path();
        let script = r#"
import sqlite3, sys
db, topic, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(db, timeout=30)
(tid, now), = c.execute("select id, partitions from topic where name = ?", (topic,)).fetchall()
assert total > now, f"{topic} has {now} partitions already"
with c:
    c.execute("update topic set partitions = ? where id = ?", (total, tid))
    for p in range(now, total):
        c.execute("insert into topition (topic, partition) values (?, ?)", (tid, p))
        c.execute("insert into watermark (topition) select id from topition where topic = ? and partition = ?", (tid, p))
print(now)
"#;
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(dir.join("broker.db"))
            .arg(topic)
            .arg(total.to_string())
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "growing {topic} to {total} in the broker's storage failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// kill -9 the broker and wait until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and storage directory.
    pub fn restart(&mut self) {
        assert!(self.is_owned(), "cannot restart an external broker");
        self.kill();
        self.launch();
    }

    fn launch(&mut self) {
        let dir = self
            .dir
            .as_ref()
            .expect("owned broker")
            .path()
            .to_path_buf();
        let engine = match self.storage {
            Storage::Memory => "memory://nisshi/",
            // nisshi resolves the file against its working directory (an absolute URL fails).
            Storage::Sqlite => "sqlite://broker.db",
        };
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!(
            "tcp://127.0.0.1:{}",
            self.advertised_port.unwrap_or(self.port)
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("broker.log"))
            .expect("broker log");
        let mut cmd = Command::new(nisshi_binary());
        cmd.args([
            "broker",
            "--listener-url",
            &listener,
            "--advertised-listener-url",
            &advertised,
        ])
        .args(["--storage-engine", engine]);
        if let Some(security) = &self.security {
            if !security.users.is_empty() {
                cmd.arg("--authentication");
            }
            if let Some((cert, key)) = &security.tls {
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
        }
        cmd.current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        self.child = Some(spawn_tied_to_process(cmd));
        wait_for_port(self.port, Duration::from_secs(30), &dir);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The nisshi binary, built and cached by `scripts/broker install` on first use.
fn nisshi_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(crate::repo_root().join("scripts/broker"))
            .arg("install")
            .stderr(Stdio::inherit())
            .output()
            .expect("cannot run scripts/broker");
        assert!(out.status.success(), "scripts/broker install failed");
        PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim())
    })
    .clone()
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn wait_for_port(port: u16, timeout: Duration, dir: &std::path::Path) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("broker.log")).unwrap_or_default();
    panic!("broker did not answer on 127.0.0.1:{port} within {timeout:?}; log:\n{log}");
}

/// Spawns `cmd` from one long-lived thread with `PR_SET_PDEATHSIG = SIGKILL`, so the child dies
/// with this process. (The signal fires when the spawning *thread* exits, hence the one thread
/// that lives as long as the process.)
fn spawn_tied_to_process(cmd: Command) -> Child {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<std::sync::Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("broker-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    use std::os::unix::process::CommandExt;
                    // SAFETY: prctl is async-signal-safe and touches only the child's state.
                    unsafe {
                        cmd.pre_exec(|| {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawner thread");
        std::sync::Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, tx))
        .expect("spawner alive");
    rx.recv()
        .expect("spawner reply")
        .expect("cannot start nisshi")
}
