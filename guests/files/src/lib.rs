//! Uses the tenant directory a function may be granted, preopened at `/data`.
//! Commands (event data): `write <path> <text…>`, `read <path>`, `list`.
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
            _ => {
                return Err(HandlerError::InvalidInput(format!(
                    "unknown command {text:?}: write <path> <text>, read <path>, list"
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
