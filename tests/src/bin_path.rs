//! Paths of the workspace's binaries, built on demand.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The `krpc` binary of this build (`target/<profile>/krpc`), brought up to date by
/// `cargo build -p krpc-cli` once per test process: `cargo test` builds a package's binary only
/// for that package's own integration tests, so without this a test would run whatever `krpc`
/// an earlier build left there (a stale one, after a change to the CLI or the libraries).
pub fn krpc() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // The test executable lives in target/<profile>/deps/.
        let exe = std::env::current_exe().expect("current exe");
        let dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target/<profile>");
        let bin = dir.join("krpc");
        {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "-p", "krpc-cli"])
                .current_dir(crate::repo_root())
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build -p krpc-cli failed");
        }
        assert!(bin.exists(), "{} not found after building", bin.display());
        bin
    })
    .clone()
}
