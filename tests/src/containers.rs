//! The opt-in backend for machines with Docker: `apache/kafka` through testcontainers
//! (`--features testcontainers` and `KRPC_TEST_BACKEND=testcontainers`). The project's machines
//! have no Docker daemon, so CI only compiles this.

use std::sync::OnceLock;

use testcontainers_modules::kafka::apache;
use testcontainers_modules::testcontainers::runners::SyncRunner;
use testcontainers_modules::testcontainers::{Container, ImageExt};

/// Starts one `apache/kafka` container per test process and returns its bootstrap address.
pub fn kafka_bootstrap() -> String {
    static KAFKA: OnceLock<(Container<apache::Kafka>, String)> = OnceLock::new();
    KAFKA
        .get_or_init(|| {
            let container = apache::Kafka::default()
                .with_jvm_image()
                .with_startup_timeout(std::time::Duration::from_secs(120))
                .start()
                .expect("cannot start apache/kafka (is a Docker daemon running?)");
            let port = container
                .get_host_port_ipv4(apache::KAFKA_PORT)
                .expect("mapped Kafka port");
            (container, format!("127.0.0.1:{port}"))
        })
        .1
        .clone()
}
