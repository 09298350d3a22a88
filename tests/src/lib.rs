//! The integration-test harness: a real broker per test binary (or per test, when a test kills
//! it), the Python peers, and bounded waiting helpers.

pub mod bin_path;
pub mod broker;
#[cfg(feature = "testcontainers")]
pub mod containers;
pub mod fake_broker;
pub mod frame_proxy;
pub mod kafka;
pub mod process;
pub mod proxy;
pub mod python;
pub mod rpc;
pub mod sample;
#[cfg(feature = "tls")]
pub mod tls;
pub mod tuning;
pub mod wait;

pub use broker::{Broker, Storage};

/// The repository's root directory.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A topic name unique within this process, so tests sharing a broker never collide.
pub fn unique_topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
