//! TLS to the brokers with rustls (feature `tls`; its `ring` provider compiles C, so it is off by
//! default). Certificates are verified against [`TlsConfig::ca_file`] or the system's roots.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::TlsConfig;
use crate::error::{Error, Result};

/// The system's root certificates, loaded once per process.
fn system_roots() -> &'static std::result::Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<std::result::Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
            return Err(format!(
                "no system root certificate found ({}); set TlsConfig::ca_file",
                errors.join("; ")
            ));
        }
        Ok(Arc::new(roots))
    })
}

fn read_certs(path: &Path) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no PEM certificate in {}", path.display()));
    }
    Ok(certs)
}

/// The rustls client settings for `cfg`.
pub fn client_config(cfg: &TlsConfig) -> std::result::Result<rustls::ClientConfig, String> {
    let roots = match &cfg.ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
            }
            Arc::new(roots)
        }
        None => system_roots().clone()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match &cfg.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let certs = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("bad client certificate or key: {e}"))
        }
    }
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(broker: &str) -> &str {
    let host = broker.rsplit_once(':').map_or(broker, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Why a handshake failed, in words that say what to fix.
fn describe(e: &std::io::Error, name: &str) -> Option<String> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match tls {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "the broker's certificate is not trusted ({tls}): set TlsConfig::ca_file to the CA \
             that signed it"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the broker's certificate is not valid for {name:?} ({tls}); set \
             TlsConfig::server_name to a name it carries"
        ),
        rustls::Error::InvalidCertificate(_) => {
            format!("the broker's certificate is not trusted: {tls}")
        }
        other => format!("TLS handshake failed: {other}"),
    })
}

/// Runs the TLS handshake on `stream` before `deadline`.
pub(crate) async fn handshake(
    stream: TcpStream,
    broker: &str,
    cfg: &TlsConfig,
    deadline: tokio::time::Instant,
) -> Result<TlsStream<TcpStream>> {
    let tls_err = |reason: String| Error::Tls {
        broker: broker.to_string(),
        reason,
    };
    let config = client_config(cfg).map_err(tls_err)?;
    let name = cfg
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(broker).to_string());
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| tls_err(format!("invalid server name {name:?}: {e}")))?;
    let connector = TlsConnector::from(Arc::new(config));
    match tokio::time::timeout_at(deadline, connector.connect(server_name, stream)).await {
        Err(_) => Err(Error::Connect {
            broker: broker.to_string(),
            reason: "TLS handshake not finished within the connect timeout".into(),
        }),
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => match describe(&e, &name) {
            Some(reason) => Err(tls_err(reason)),
            // Not a TLS verdict (reset, EOF): maybe transient, so a retriable connect error.
            None => Err(Error::Connect {
                broker: broker.to_string(),
                reason: format!("TLS handshake: {e}"),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_addresses() {
        assert_eq!(host_of("127.0.0.1:9092"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9092"), "::1");
        assert_eq!(host_of("kafka.example.com:9093"), "kafka.example.com");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let cfg = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let err = client_config(&cfg).unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
