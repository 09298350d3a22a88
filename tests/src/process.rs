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
        collect(BufReader::new(stdout), lines.clone());
        if let Some(stderr) = child.stderr.take() {
            collect(BufReader::new(stderr), lines.clone());
        }
        Self {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// Sends `signal` (a libc signal number) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
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
    }
}

fn collect(reader: impl BufRead + Send + 'static, sink: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
}

impl Drop for LineProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
