//! Running a toolchain: its output streamed line by line to the progress
//! display while it runs, and kept for the error if it fails.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;

use crate::{Error, Progress};

/// How many of a failed tool's last lines its error carries: a Python
/// traceback or a rustc diagnostic fits, a runaway log does not flood.
const KEPT_LINES: usize = 400;

/// What a finished tool printed.
#[derive(Debug)]
pub(crate) struct Ran {
    /// stdout, line by line, when it is machine-readable (cargo's JSON);
    /// empty otherwise.
    pub stdout: Vec<String>,
}

/// What to do with the tool's stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stdout {
    /// Shown like stderr.
    Show,
    /// Collected for the caller, not shown (cargo's `--message-format=json`).
    Collect,
}

/// A tool that is missing, and how to install it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tool {
    pub name: &'static str,
    pub install: &'static str,
}

impl Tool {
    pub(crate) fn missing(&self) -> Error {
        Error::MissingTool {
            tool: self.name.into(),
            install: self.install.into(),
        }
    }
}

/// `command --version`'s first line, or the tool's missing error: not on
/// `PATH`, or a shim (pyenv, `/usr/bin/env node`) that cannot find what it
/// runs (exit status 127, as a shell's "command not found").
pub(crate) fn version(tool: Tool, mut command: Command) -> Result<String, Error> {
    let out = match command.arg("--version").stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(tool.missing()),
        Err(e) => {
            return Err(Error::Spawn {
                tool: tool.name.into(),
                source: e,
            });
        }
    };
    if out.status.code() == Some(127) {
        return Err(tool.missing());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// Runs `command`, handing each line of its output to `progress` as it
/// comes; a non-zero exit is [`Error::ToolFailed`] with the output.
pub(crate) fn run(
    tool: Tool,
    mut command: Command,
    stdout_mode: Stdout,
    progress: &mut dyn Progress,
) -> Result<Ran, Error> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(tool.missing()),
        Err(e) => {
            return Err(Error::Spawn {
                tool: tool.name.into(),
                source: e,
            });
        }
    };
    let (tx, rx) = mpsc::channel();
    let readers = [
        child
            .stdout
            .take()
            .map(|s| lines(s, Stream::Stdout, tx.clone())),
        child
            .stderr
            .take()
            .map(|s| lines(s, Stream::Stderr, tx.clone())),
    ];
    drop(tx);
    let mut stdout = Vec::new();
    let mut output = std::collections::VecDeque::new();
    let mut dropped = 0usize;
    // Ends when both pipes are closed: the tool exited (or closed them).
    for (stream, line) in rx {
        if stream == Stream::Stdout && stdout_mode == Stdout::Collect {
            stdout.push(line);
            continue;
        }
        progress.output(&line);
        output.push_back(line);
        if output.len() > KEPT_LINES {
            output.pop_front();
            dropped += 1;
        }
    }
    for reader in readers.into_iter().flatten() {
        let _ = reader.join();
    }
    let status = child.wait().map_err(|e| Error::Spawn {
        tool: tool.name.into(),
        source: e,
    })?;
    if status.success() {
        return Ok(Ran { stdout });
    }
    if status.code() == Some(127) && output.is_empty() {
        return Err(tool.missing());
    }
    let mut output: Vec<String> = output.into();
    if dropped > 0 {
        output.insert(0, format!("({dropped} earlier lines not shown)"));
    }
    Err(Error::ToolFailed {
        tool: tool.name.into(),
        status: describe(status),
        output,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Reads `pipe` on a thread of its own, sending each line (split at `\n`
/// or `\r`: progress bars redraw with `\r`) without its ending.
fn lines(
    mut pipe: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::Sender<(Stream, String)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut pending = Vec::new();
        let mut buf = [0u8; 8192];
        let send = |line: &mut Vec<u8>| {
            let text = String::from_utf8_lossy(line).trim_end().to_string();
            line.clear();
            // The receiver is gone only if the build was abandoned.
            if text.is_empty() {
                Ok(())
            } else {
                tx.send((stream, text))
            }
        };
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                if b == b'\n' || b == b'\r' {
                    if send(&mut pending).is_err() {
                        return;
                    }
                } else {
                    pending.push(b);
                }
            }
        }
        let _ = send(&mut pending);
    })
}

/// `exit status 1`, or the signal that ended the tool.
fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => format!("{status}"),
    }
}
