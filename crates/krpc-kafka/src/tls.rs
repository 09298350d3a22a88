//! TLS to the brokers with rustls (feature `tls`, or `tls-ring`). Certificates are verified
//! against [`TlsConfig::ca_file`] or the system's roots; [`TlsConfig::client_cert`] adds a client
//! certificate (mutual TLS); [`TlsConfig::server_name`] overrides the name checked.
//!
//! The crypto provider ([`crate::tls_provider`] names it): with `tls`, graviola (`rustls-graviola`: pure Rust and
//! inline assembly, no C compiler), on x86_64 and aarch64 CPUs with the features it needs, checked
//! here before it runs (graviola itself would panic); with `tls-ring`, rustls's ring provider
//! (compiles C). With both, graviola where the CPU allows and ring otherwise.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::TlsConfig;
use crate::error::{Error, Result};

/// The CPU features graviola 0.4 needs on this architecture (its README and its own check,
/// `graviola::low::*::cpu::is_cpu_supported`, which panics when one is missing).
#[cfg(target_arch = "x86_64")]
pub const GRAVIOLA_CPU_FEATURES: &[&str] = &[
    "aes",
    "pclmulqdq",
    "ssse3",
    "avx",
    "avx2",
    "adx",
    "bmi1",
    "bmi2",
];
/// The CPU features graviola 0.4 needs on this architecture (its README and its own check,
/// `graviola::low::*::cpu::is_cpu_supported`, which panics when one is missing).
#[cfg(target_arch = "aarch64")]
pub const GRAVIOLA_CPU_FEATURES: &[&str] = &["neon", "aes", "pmull", "sha2"];
/// graviola supports x86_64 and aarch64 only.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const GRAVIOLA_CPU_FEATURES: &[&str] = &[];

/// Whether this CPU has the feature `name` (one of [`GRAVIOLA_CPU_FEATURES`]), detected at run
/// time (`std::arch`'s macros take literals, hence the match).
fn cpu_has(name: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match name {
            "aes" => std::arch::is_x86_feature_detected!("aes"),
            "pclmulqdq" => std::arch::is_x86_feature_detected!("pclmulqdq"),
            "ssse3" => std::arch::is_x86_feature_detected!("ssse3"),
            "avx" => std::arch::is_x86_feature_detected!("avx"),
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "adx" => std::arch::is_x86_feature_detected!("adx"),
            "bmi1" => std::arch::is_x86_feature_detected!("bmi1"),
            "bmi2" => std::arch::is_x86_feature_detected!("bmi2"),
            _ => false,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        match name {
            "neon" => std::arch::is_aarch64_feature_detected!("neon"),
            "aes" => std::arch::is_aarch64_feature_detected!("aes"),
            "pmull" => std::arch::is_aarch64_feature_detected!("pmull"),
            "sha2" => std::arch::is_aarch64_feature_detected!("sha2"),
            _ => false,
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = name;
        false
    }
}

/// `Ok` if a CPU with the features `has` says it has can run graviola; otherwise why not, in
/// words that say what to do.
fn graviola_usable(has: impl Fn(&str) -> bool) -> std::result::Result<(), String> {
    if GRAVIOLA_CPU_FEATURES.is_empty() {
        return Err(format!(
            "the graviola TLS provider (krpc-kafka's `tls` feature) supports x86_64 and aarch64 \
             only, not {}; build with the `tls-ring` feature instead",
            std::env::consts::ARCH
        ));
    }
    let missing: Vec<&str> = GRAVIOLA_CPU_FEATURES
        .iter()
        .copied()
        .filter(|f| !has(f))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "this CPU lacks {} (the graviola TLS provider of krpc-kafka's `tls` feature needs {} on \
         {}); build with the `tls-ring` feature instead",
        missing.join(", "),
        GRAVIOLA_CPU_FEATURES.join(", "),
        std::env::consts::ARCH
    ))
}

/// The crypto provider of this build on this CPU: `("graviola", ..)` or `("ring", ..)`, or why
/// there is none (a CPU graviola cannot run on, without `tls-ring` to fall back to). Decided
/// once per process.
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) fn provider() -> std::result::Result<(&'static str, Arc<CryptoProvider>), String> {
    static PROVIDER: OnceLock<std::result::Result<(&'static str, Arc<CryptoProvider>), String>> =
        OnceLock::new();
    PROVIDER.get_or_init(choose_provider).clone()
}

fn choose_provider() -> std::result::Result<(&'static str, Arc<CryptoProvider>), String> {
    let graviola = graviola_usable(cpu_has);
    #[cfg(all(feature = "tls", any(target_arch = "x86_64", target_arch = "aarch64")))]
    if graviola.is_ok() {
        return Ok(("graviola", Arc::new(rustls_graviola::default_provider())));
    }
    #[cfg(feature = "tls-ring")]
    {
        #[cfg(feature = "tls")]
        if let Err(why) = &graviola {
            tracing::warn!("TLS uses ring, not graviola: {why}");
        }
        let _ = graviola;
        Ok(("ring", Arc::new(rustls::crypto::ring::default_provider())))
    }
    #[cfg(not(feature = "tls-ring"))]
    {
        // Only `tls` is on (this module needs one of the two): graviola was usable and returned
        // above, or `graviola` says why not.
        graviola.and_then(|()| Err("no TLS crypto provider in this build".to_string()))
    }
}

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
#[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
pub(crate) fn client_config(cfg: &TlsConfig) -> std::result::Result<rustls::ClientConfig, String> {
    // First: a CPU graviola cannot run on is the error to report, whatever else is wrong.
    let (_, provider) = provider()?;
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
    if let Some(refused) = refusal(e) {
        return Some(refused);
    }
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
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => format!(
            "the broker's certificate is outside its validity period ({tls}): the broker needs \
             a current certificate (or this machine's clock is wrong)"
        ),
        rustls::Error::InvalidCertificate(_) => {
            format!("the broker's certificate is not trusted: {tls}")
        }
        other => format!("TLS handshake failed: {other}"),
    })
}

/// What a TLS alert from the broker on an established session means, if `e` is one (`None`
/// for any other read error). TLS 1.3 brokers refuse a client certificate (or its absence)
/// this way, after the client thinks the handshake is done.
pub(crate) fn refusal(e: &std::io::Error) -> Option<String> {
    let rustls::Error::AlertReceived(alert) = e.get_ref()?.downcast_ref::<rustls::Error>()? else {
        return None;
    };
    use rustls::AlertDescription as A;
    Some(match alert {
        A::CertificateRequired
        | A::BadCertificate
        | A::UnsupportedCertificate
        | A::CertificateRevoked
        | A::CertificateExpired
        | A::CertificateUnknown
        | A::UnknownCA
        | A::AccessDenied => format!(
            "the broker refused our client certificate (TLS alert {alert:?}): set \
             TlsConfig::client_cert to a certificate and key the broker trusts"
        ),
        other => format!("the broker ended the TLS session (TLS alert {other:?})"),
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
    fn a_cpu_without_a_feature_graviola_needs_is_refused_naming_it() {
        assert_eq!(
            graviola_usable(|_| true).is_ok(),
            !GRAVIOLA_CPU_FEATURES.is_empty()
        );
        let Some(&lacking) = GRAVIOLA_CPU_FEATURES.last() else {
            return;
        };
        let err = graviola_usable(|f| f != lacking).unwrap_err();
        assert!(err.contains(&format!("this CPU lacks {lacking} ")), "{err}");
        assert!(
            err.contains("tls-ring"),
            "says what to build instead: {err}"
        );
    }

    #[test]
    fn this_machine_gets_a_provider() {
        // The machines the tests run on have graviola's features (x86_64 since about 2014).
        let (name, _) = provider().expect("a TLS provider");
        eprintln!("TLS provider: {name}");
        #[cfg(all(feature = "tls", not(feature = "tls-ring")))]
        assert_eq!(name, "graviola");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let cfg = TlsConfig::default().with_ca_file("/nonexistent/ca.pem");
        let err = client_config(&cfg).unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
