//! TLS for the tests (feature `tls`): certificates made here with rcgen (a CA, brokers' and
//! clients' certificates signed by it, an expired one, another CA), and [`MutualTlsProxy`], an
//! in-process TLS terminator that demands client certificates, in front of nisshi.
//!
//! nisshi 0.8.1 speaks TLS (`--cert`, `--key`) but never asks for a client certificate (its
//! rustls server config is built `with_no_client_auth`), so mutual TLS can only be shown through
//! something that does: the proxy verifies the client's certificate against the test CA, then
//! passes the Kafka bytes to a plaintext nisshi that advertises the proxy's port, so every
//! connection the client makes (bootstrap, leader, coordinator) goes through it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

use crate::{Broker, Storage};

/// A certificate authority of the tests, writing its files into a temporary directory.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
    /// The CA certificate (PEM), to trust.
    pub cert_file: PathBuf,
    dir: PathBuf,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate chain (leaf only here).
    pub cert: PathBuf,
    /// The PKCS#8 private key.
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its files in `dir`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("krpc tests {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        let cert_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert_file, cert.pem()).expect("write CA certificate");
        TestCa {
            cert,
            key,
            cert_file,
            dir: dir.to_path_buf(),
        }
    }

    /// A server certificate for `names` (IP addresses become IP SANs), valid now.
    pub fn server(&self, file: &str, names: &[&str]) -> CertFiles {
        self.issue(file, names, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A server certificate for `names` whose validity ended in 2021.
    pub fn expired_server(&self, file: &str, names: &[&str]) -> CertFiles {
        self.issue(file, names, ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    /// A client certificate (for mutual TLS) with common name `name`.
    pub fn client(&self, file: &str, name: &str) -> CertFiles {
        self.issue(file, &[name], ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    fn issue(
        &self,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> CertFiles {
        let key = KeyPair::generate().expect("leaf key");
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(file));
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign the leaf certificate");
        let files = CertFiles {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }
}

/// A TLS terminator that requires a client certificate signed by a given CA, in front of a
/// plaintext nisshi of its own that advertises the proxy's address. Stops when dropped.
pub struct MutualTlsProxy {
    addr: String,
    broker: Broker,
    task: tokio::task::JoinHandle<()>,
    refused: Arc<std::sync::atomic::AtomicU64>,
}

impl MutualTlsProxy {
    /// Starts nisshi and the proxy: TLS with `server` as the proxy's certificate, client
    /// certificates verified against `client_ca`. `None` with an external broker (it cannot be
    /// told to advertise the proxy). Must run inside a tokio runtime.
    pub async fn start(server: &CertFiles, client_ca: &Path) -> Option<MutualTlsProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let broker = Broker::start_advertising(Storage::Memory, port)?;
        let (_, provider) = krpc_kafka::tls::provider().expect("a TLS provider");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(client_ca).expect("client CA file") {
            roots.add(cert.expect("client CA PEM")).expect("client CA");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&server.cert)
            .expect("proxy certificate")
            .collect::<Result<_, _>>()
            .expect("proxy certificate PEM");
        let key = PrivateKeyDer::from_pem_file(&server.key).expect("proxy key");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .expect("proxy server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let upstream = broker.addr().to_string();
        let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = refused.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, upstream, counter) =
                    (acceptor.clone(), upstream.clone(), counter.clone());
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => tls,
                        _ => {
                            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            return;
                        }
                    };
                    let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let mut tls = tls;
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Some(MutualTlsProxy {
            addr: format!("127.0.0.1:{port}"),
            broker,
            task,
            refused,
        })
    }

    /// `host:port` to bootstrap from (the proxy).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The broker behind the proxy.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Handshakes the proxy refused or that did not finish (a client without a valid
    /// certificate).
    pub fn refused_handshakes(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until the proxy has counted at least `n` refused handshakes, at most `timeout`,
    /// and returns the count then. The client reads the proxy's alert before the proxy's task
    /// counts the refusal, so a test that has just seen the refusal must wait for the count.
    pub async fn wait_refused_handshakes(&self, n: u64, timeout: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let refused = self.refused_handshakes();
            if refused >= n || tokio::time::Instant::now() >= deadline {
                return refused;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for MutualTlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
