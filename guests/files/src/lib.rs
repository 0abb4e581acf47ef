//! Reaches for the operating system the way ordinary code does (std::fs,
//! std::net, std::process): the tenant directory a function may be granted,
//! preopened at `/data`; sockets, which Nimbus always denies; and exit.
//! Commands (event data): `write <path> <text…>`, `read <path>`, `list`,
//! `connect <addr:port>`, `exit <status>`.
//! Paths are taken as given under `/data/`, so tests can try to escape with
//! `..`, absolute paths and symlinks; every failure is a guest error naming
//! the I/O error.

use nimbus_guest::{Event, Guest, HandlerError, Response};

struct Files;

fn io(path: &str, e: std::io::Error) -> HandlerError {
    HandlerError::Failed(format!("{path}: {e}"))
}

impl Guest for Files {
    fn handle(event: Event) -> Result<Response, HandlerError> {
        let text = String::from_utf8(event.data)
            .map_err(|_| HandlerError::InvalidInput("the command must be UTF-8".into()))?;
        let mut parts = text.splitn(3, ' ');
        let command = parts.next().unwrap_or_default();
        let path = parts.next().map(|p| format!("/data/{p}"));
        let data = match (command, path) {
            ("write", Some(path)) => {
                let content = parts.next().unwrap_or_default();
                std::fs::write(&path, content).map_err(|e| io(&path, e))?;
                b"ok".to_vec()
            }
            ("read", Some(path)) => std::fs::read(&path).map_err(|e| io(&path, e))?,
            ("list", None) => {
                let mut names: Vec<String> = std::fs::read_dir("/data")
                    .map_err(|e| io("/data", e))?
                    .filter_map(|entry| entry.ok())
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names.join("\n").into_bytes()
            }
            ("connect", _) => {
                let addr = text.trim_start_matches("connect ").trim();
                std::net::TcpStream::connect(addr).map_err(|e| io(addr, e))?;
                b"connected".to_vec()
            }
            ("exit", _) => {
                let status = text.trim_start_matches("exit ").trim().parse().unwrap_or(1);
                std::process::exit(status)
            }
            _ => {
                return Err(HandlerError::InvalidInput(format!(
                    "unknown command {text:?}: write <path> <text>, read <path>, list, \
                     connect <addr:port>, exit <status>"
                )));
            }
        };
        Ok(Response {
            content_type: Some("text/plain".into()),
            data,
        })
    }
}

nimbus_guest::export!(Files);
