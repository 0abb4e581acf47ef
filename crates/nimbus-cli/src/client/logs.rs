//! `nimbus logs T/F`: the logs the server keeps of a function's recent
//! invocations, oldest first, or (`--follow`) its server-sent event stream
//! of each new one as it is kept, until interrupted.

use std::io::Write;

use http_body_util::{BodyExt, Full};
use hyper::{Method, header};

use super::api::{Api, Reply, refusal};
use super::parse::{self, FunctionRef};
use super::{Failure, Result, Server, table};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The function, as TENANT/FUNCTION.
    #[arg(value_name = "T/F", value_parser = parse::function_ref)]
    function: FunctionRef,
    /// Keep printing each new invocation's logs until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// Only this invocation's logs.
    #[arg(long, value_name = "ID")]
    invocation: Option<String>,
    /// At most this many invocations, the latest [server default: 100].
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    #[command(flatten)]
    server: Server,
}

impl LogsArgs {
    fn path(&self) -> String {
        let mut params = Vec::new();
        if let Some(id) = &self.invocation {
            params.push(format!("invocation_id={}", super::api::segment(id)));
        }
        if let Some(limit) = self.limit {
            params.push(format!("limit={limit}"));
        }
        if self.follow {
            params.push("follow=true".into());
        }
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        format!("{}/logs{query}", self.function.admin_path())
    }
}

pub(crate) async fn logs(args: LogsArgs) -> Result<()> {
    let api = Api::admin(&args.server)?;
    if !args.follow {
        let reply = api.get(&args.path()).await?;
        if api.json {
            reply.print_body();
            return Ok(());
        }
        let body = reply.json()?;
        let mut out = std::io::stdout().lock();
        for invocation in body["invocations"].as_array().into_iter().flatten() {
            let _ = out.write_all(render(invocation).as_bytes());
        }
        let _ = out.flush();
        return Ok(());
    }
    let request = api
        .request(Method::GET, &args.path())
        .header(header::ACCEPT, "text/event-stream")
        .body(Full::default().boxed())
        .map_err(Failure::other)?;
    let response = api.send(request).await?;
    let (head, mut body) = response.into_parts();
    if !head.status.is_success() {
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(refusal(&Reply {
            status: head.status,
            headers: head.headers,
            body,
        }));
    }
    let mut events = Sse::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::other(format_args!("the log stream broke: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let mut out = std::io::stdout().lock();
        for event in events.push(&data) {
            if api.json {
                let _ = writeln!(out, "{event}");
            } else {
                match serde_json::from_str::<serde_json::Value>(&event) {
                    Ok(invocation) => {
                        let _ = out.write_all(render(&invocation).as_bytes());
                    }
                    Err(_) => {
                        let _ = writeln!(out, "{event}");
                    }
                }
            }
        }
        let _ = out.flush();
    }
    Ok(())
}

/// One InvocationLogsJson as text: a header line (time, id, outcome,
/// version), the guest's stdout, stderr and log entries, its REPORT line.
fn render(inv: &serde_json::Value) -> String {
    let mut text = format!(
        "=== {} {} {} (version {})\n",
        table::time(&table::cell(&inv["started_at"])),
        table::cell(&inv["invocation_id"]),
        table::cell(&inv["outcome"]),
        table::cell(&inv["version"]),
    );
    let logs = &inv["logs"];
    for stream in ["stdout", "stderr"] {
        if let Some(s) = logs[stream].as_str() {
            for line in s.lines() {
                text.push_str(&format!("[{stream}] {line}\n"));
            }
        }
    }
    for entry in logs["entries"].as_array().into_iter().flatten() {
        let context = entry["context"].as_str().unwrap_or_default();
        let context = if context.is_empty() {
            String::new()
        } else {
            format!("{context}: ")
        };
        text.push_str(&format!(
            "[{}] {context}{}\n",
            table::cell(&entry["level"]),
            table::cell(&entry["message"])
        ));
    }
    if let Some(dropped) = logs["dropped_bytes"].as_u64().filter(|d| *d > 0) {
        text.push_str(&format!(
            "[nimbus] {dropped} bytes of output dropped (per-invocation log cap)\n"
        ));
    }
    if let Some(report) = inv["report"].as_str() {
        text.push_str(report);
        text.push('\n');
    }
    text.push('\n');
    text
}

/// A server-sent event stream read as it comes: each event's `data`
/// (lines joined with `\n`); comments (`: keep-alive`) and other fields
/// skipped.
#[derive(Debug, Default)]
struct Sse {
    pending: Vec<u8>,
    data: Option<String>,
}

impl Sse {
    /// The events that `chunk` completes.
    fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches('\n').trim_end_matches('\r');
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    events.push(data);
                }
            } else if line.starts_with(':') {
                // A comment: keep-alive.
            } else {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                if field == "data" {
                    match &mut self.data {
                        Some(data) => {
                            data.push('\n');
                            data.push_str(value);
                        }
                        None => self.data = Some(value.to_string()),
                    }
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_are_read_across_chunks() {
        let mut sse = Sse::default();
        assert!(sse.push(b": keep-alive\n\ndata: {\"a\"").is_empty());
        assert_eq!(sse.push(b": 1}\n\ndata: x\r\n"), ["{\"a\": 1}"]);
        assert!(sse.push(b"data: y\nevent: log\nid: 7\n").is_empty());
        assert_eq!(sse.push(b"\n\n: keep-alive\n\n"), ["x\ny"]);
    }

    #[test]
    fn an_invocation_reads_as_header_output_entries_and_report() {
        let inv = serde_json::json!({
            "invocation_id": "0190-ab", "tenant": "acme", "function": "f", "version": 3,
            "outcome": "guest_error", "started_at": "2026-12-01T21:37:54.5Z",
            "logs": {
                "stdout": "one\ntwo\n", "stderr": "bad\n",
                "entries": [{"level": "warn", "context": "db", "message": "slow", "time": "…"}],
                "dropped_bytes": 12,
            },
            "report": "REPORT RequestId: 0190-ab Version: 3 Outcome: guest_error",
        });
        assert_eq!(
            render(&inv),
            "=== 2026-12-01 21:37:54Z 0190-ab guest_error (version 3)\n\
             [stdout] one\n[stdout] two\n[stderr] bad\n[warn] db: slow\n\
             [nimbus] 12 bytes of output dropped (per-invocation log cap)\n\
             REPORT RequestId: 0190-ab Version: 3 Outcome: guest_error\n\n"
        );
    }
}
