//! `krpc serve --metrics-addr`: kafka-rpc's metrics (see `kafka_rpc::metrics`) served for
//! Prometheus at `http://HOST:PORT/metrics`, by `metrics-exporter-prometheus` (its HTTP
//! listener only: no TLS, no push gateway, no C; the crate's `prometheus` feature, on by
//! default).

use std::net::{SocketAddr, ToSocketAddrs};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Parses `HOST:PORT` (a name is resolved; the first address wins).
pub fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("{text:?} is not HOST:PORT: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// Installs the Prometheus recorder as the process's `metrics` recorder and serves it on
/// `addr` (on the current Tokio runtime). Duration histograms get kafka-rpc's buckets, so they
/// are exported as Prometheus histograms (`_bucket`, `_sum`, `_count`). Fails if the address
/// cannot be bound or a recorder is already installed.
pub fn serve(addr: SocketAddr) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot serve metrics on {addr}: {e}");
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            kafka_rpc::metrics::DURATION_BUCKETS,
        )
        .map_err(|e| fail(&e))?
        .install()
        .map_err(|e| fail(&e))?;
    kafka_rpc::metrics::describe();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_address_is_host_and_port() {
        assert_eq!(
            listen_addr("127.0.0.1:9464").unwrap(),
            "127.0.0.1:9464".parse::<SocketAddr>().unwrap()
        );
        assert!(listen_addr("localhost:9464").unwrap().ip().is_loopback());
        assert!(listen_addr("9464").is_err());
        assert!(listen_addr("127.0.0.1").is_err());
    }
}
