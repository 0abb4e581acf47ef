//! The real `nimbus` binary: `nimbus serve` on a config of its own, on a
//! loopback port, stopped gracefully (SIGTERM) or killed (SIGKILL).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nimbus_core::UsageRecord;

use super::client::Client;
use super::deploy::guests;
use super::host::shared_compile_cache;
use super::metrics::ledger;

/// The `nimbus` binary this test run built.
pub fn nimbus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nimbus"))
}

/// A config file (`nimbus.toml`) in a fresh directory, which its relative
/// paths (`usage.jsonl`, `data`) resolve against, and another directory to
/// run `nimbus serve` from: nothing may land in the working directory.
pub struct ServeDir {
    dir: tempfile::TempDir,
    cwd: tempfile::TempDir,
    config: PathBuf,
}

impl ServeDir {
    /// `config`, with the [`shared_compile_cache`] unless it names a
    /// `compile_cache` of its own.
    pub fn new(config: &str) -> Self {
        if config.contains("compile_cache") {
            return Self::as_written(config);
        }
        // First in the file: a top-level key, whatever tables follow.
        let cache = shared_compile_cache();
        Self::as_written(&format!("compile_cache = {cache:?}\n{config}"))
    }

    /// `config` exactly as given (so `nimbus serve`'s defaults apply).
    pub fn as_written(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cwd = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nimbus.toml");
        std::fs::write(&path, config).expect("write config");
        Self {
            dir,
            cwd,
            config: path,
        }
    }

    /// Copies the built guest `guest` next to the config as `file`, for a
    /// config naming it by a relative path.
    pub fn copy_guest(self, guest: &str, file: &str) -> Self {
        std::fs::copy(guests().path(guest), self.dir.path().join(file)).expect("copy guest");
        self
    }

    /// The config's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Where `nimbus serve` runs.
    pub fn cwd(&self) -> &Path {
        self.cwd.path()
    }

    pub fn start(&self) -> NimbusServe {
        NimbusServe::start(&self.config, self.cwd())
    }

    /// The ledger a config's `ledger = "usage.jsonl"` writes.
    pub fn ledger_path(&self) -> PathBuf {
        self.path().join("usage.jsonl")
    }

    pub fn records(&self) -> Vec<UsageRecord> {
        ledger(&self.ledger_path())
    }
}

/// A running `nimbus serve`, killed on drop.
pub struct NimbusServe {
    pub child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl NimbusServe {
    /// Starts `nimbus serve --config CONFIG --listen 127.0.0.1:0` in `cwd`
    /// and waits for its `nimbus ready` line: listening, every function of
    /// the file deployed and every recorded version loaded.
    pub fn start(config: &Path, cwd: &Path) -> Self {
        let server = Self::start_listening(config, cwd);
        let deadline = Instant::now() + Duration::from_secs(400);
        while !server.log().lines().any(|l| l == "nimbus ready") {
            assert!(
                Instant::now() < deadline,
                "nimbus serve did not get ready:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    /// Starts `nimbus serve` and waits only for its `nimbus listening on`
    /// line (functions may still be loading).
    pub fn start_listening(config: &Path, cwd: &Path) -> Self {
        let mut child = nimbus()
            .current_dir(cwd)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nimbus serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("nimbus listening on http://") {
                    let _ = tx.send(addr.to_string());
                }
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut server = NimbusServe {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => server.addr = addr.parse().expect("listening address"),
            Err(_) => panic!("nimbus serve did not start:\n{}", server.log()),
        }
        server
    }

    /// A client of this server, sending no key.
    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The log once it holds `needle`, or as it is after 10 s. A line the
    /// server wrote before answering can reach the test after the answer:
    /// a thread of the harness copies stderr from a pipe.
    pub async fn log_once_it_has(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() >= deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM: the server drains, then exits.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "nimbus serve did not exit within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server with SIGTERM, asserts that it exited cleanly within
    /// 10 s and returns its log.
    pub fn stop(mut self) -> String {
        self.terminate();
        let status = self.wait_exit(Duration::from_secs(10));
        let log = self.log();
        assert!(status.success(), "{status}:\n{log}");
        log
    }

    /// SIGKILL: no drain, no clean close of anything.
    pub fn kill_9(mut self) {
        self.child.kill().expect("kill -9 nimbus serve");
        let status = self.child.wait().expect("wait");
        assert_eq!(status.signal(), Some(9), "{status}:\n{}", self.log());
    }
}

impl Drop for NimbusServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
