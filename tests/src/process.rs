//! A child process whose stdout lines are collected as they come, for tests that run members in
//! processes of their own (so they can be killed with -9).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running child with its stdout captured line by line.
pub struct LineProcess {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    /// The threads reading stdout (and stderr): a line the child printed before it exited is in
    /// `lines` only once its reader has seen the end of the pipe.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl LineProcess {
    /// Spawns `cmd` with piped stdin and stdout (stderr inherited, so failures show in test output).
    pub fn spawn(name: &str, cmd: Command) -> Self {
        Self::spawn_with(name, cmd, false)
    }

    /// Spawns `cmd` collecting its stderr lines too, among the stdout lines.
    pub fn spawn_merged(name: &str, cmd: Command) -> Self {
        Self::spawn_with(name, cmd, true)
    }

    fn spawn_with(name: &str, mut cmd: Command, merge_stderr: bool) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if merge_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut readers = vec![collect(BufReader::new(stdout), lines.clone())];
        if let Some(stderr) = child.stderr.take() {
            readers.push(collect(BufReader::new(stderr), lines.clone()));
        }
        Self {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            readers,
        }
    }

    /// Sends `signal` (a libc signal number) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Writes one line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .expect("write to child");
    }

    /// Closes stdin (the members here take that as "shut down cleanly") and waits for exit.
    pub fn close_and_wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.stdin.take();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.await_output(deadline.max(Instant::now() + Duration::from_secs(10)));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.await_output(Instant::now() + Duration::from_secs(10));
    }

    /// After the child exited: waits (until `deadline`) for the readers to reach the end of its
    /// pipes, so that `lines()` holds everything it printed. The process's exit and its last lines
    /// reaching us are two events; a test reading the final `stats` line right after the exit
    /// raced with the reader thread.
    fn await_output(&mut self, deadline: Instant) {
        while self.readers.iter().any(|r| !r.is_finished()) {
            assert!(
                Instant::now() < deadline,
                "{}: its output did not end after it exited (a child of it holds the pipe?)",
                self.name
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        for reader in self.readers.drain(..) {
            reader.join().expect("the output reader panicked");
        }
    }
}

fn collect(
    reader: impl BufRead + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    })
}

impl Drop for LineProcess {
    fn drop(&mut self) {
        // Not `kill9`: no waiting on the output (and no assertion) while a test may be unwinding.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CI failure of stop 9 (`a_graceful_shutdown_mid_load...` read a server's final `stats`
    /// line right after its exit and could find it missing): everything a child printed is in
    /// `lines()` once `close_and_wait` returns, however far the reader lagged behind the exit.
    #[test]
    fn every_line_printed_before_the_exit_is_there_when_the_wait_returns() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "seq 1 200000; echo last >&2"]);
        let mut child = LineProcess::spawn_merged("seq", cmd);
        assert!(child.close_and_wait(Duration::from_secs(30)).success());
        let lines = child.lines();
        assert_eq!(lines.len(), 200_001, "lines seen when the wait returned");
        assert!(lines.contains(&"last".to_string()));
        assert!(lines.contains(&"200000".to_string()));
    }
}
