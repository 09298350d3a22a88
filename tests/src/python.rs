//! The independent Kafka clients (librdkafka via `confluent-kafka`, and `kafka-python`), run
//! from the venv that `scripts/pyenv` creates, with scripts in `tests/interop/`.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The python of the venv `scripts/<script>` creates (and prints), made on first use.
fn venv_python(script: &str) -> String {
    let out = Command::new(crate::repo_root().join("scripts").join(script))
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 path")
        .trim()
        .to_string()
}

/// The python of the interop venv (`scripts/pyenv`: confluent-kafka, kafka-python).
pub fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| venv_python("pyenv"))
}

/// The python of the seed venv (`scripts/pyenv-seed`: the Python kafka-rpc 1.0.8).
pub fn seed_python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| venv_python("pyenv-seed"))
}

/// The command that runs `tests/interop/SCRIPT` with `python`.
pub fn script(python: &str, script: &str) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(crate::repo_root().join("tests/interop").join(script));
    cmd
}

/// Runs `tests/interop/SCRIPT` with `args` (at most `timeout`) in the interop venv and returns
/// its stdout; panics with its stderr if it fails.
pub fn run(script: &str, args: &[&str], timeout: Duration) -> String {
    run_with(python(), script, args, timeout)
}

/// [`run`] with another venv's `python`.
pub fn run_with(python: &str, script: &str, args: &[&str], timeout: Duration) -> String {
    let child = Command::new(python)
        .arg(crate::repo_root().join("tests/interop").join(script))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start python");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("python output"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{script} {args:?} did not finish within {timeout:?}");
        }
    };
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}); stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}
