//! HTTP to the server: hyper's client over plain TCP, the admin key as a
//! bearer token, refusals turned into one-line [`Failure`]s.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{Failure, Result, Server};

/// A request body.
pub(crate) type ReqBody = BoxBody<Bytes, Infallible>;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One server: its base URL, the key to send and whether to print JSON.
#[derive(Debug)]
pub(crate) struct Api {
    http: Client<HttpConnector, ReqBody>,
    /// `http://host:port` and any path prefix, without a trailing slash.
    base: String,
    key: Option<String>,
    /// `--json`: print the server's body as it came.
    pub(crate) json: bool,
}

/// A whole answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::other(format_args!(
                "the server's answer is not JSON ({e}): {}",
                excerpt(&self.body)
            ))
        })
    }

    /// `--json`: the body exactly as the server sent it, ending in a newline.
    pub(crate) fn print_body(&self) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&self.body);
        if !self.body.ends_with(b"\n") {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Api {
    /// A client of `server` that sends its admin key if it has one (an
    /// invocation of a public function needs none).
    pub(crate) fn new(server: &Server) -> Result<Self> {
        let base = server.url.trim_end_matches('/').to_string();
        let uri: Uri = base
            .parse()
            .map_err(|e| Failure::usage(format_args!("--server {}: {e}", server.url)))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(Failure::usage(format_args!(
                    "--server {}: https is not supported; reach nimbus serve over http (e.g. through a TLS-terminating proxy's plain side)",
                    server.url
                )));
            }
            _ => {
                return Err(Failure::usage(format_args!(
                    "--server {}: expected a URL like http://127.0.0.1:8080",
                    server.url
                )));
            }
        }
        if uri.authority().is_none() || uri.query().is_some() {
            return Err(Failure::usage(format_args!(
                "--server {}: expected a URL like http://127.0.0.1:8080",
                server.url
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            base,
            key: server.admin_key.clone().filter(|k| !k.is_empty()),
            json: server.json,
        })
    }

    /// A client of the admin API: the admin key is required.
    pub(crate) fn admin(server: &Server) -> Result<Self> {
        let api = Self::new(server)?;
        if api.key.is_none() {
            return Err(Failure::usage(
                "no admin key: pass --admin-key KEY or set NIMBUS_ADMIN_KEY",
            ));
        }
        Ok(api)
    }

    /// A request to `path` (and query) on this server, with the key.
    pub(crate) fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        builder
    }

    /// Sends `request`; the answer's head, its body still to read.
    pub(crate) async fn send(&self, request: Request<ReqBody>) -> Result<Response<Incoming>> {
        let what = format!("{} {}", request.method(), request.uri());
        self.http.request(request).await.map_err(|e| {
            if e.is_connect() {
                Failure::other(format_args!(
                    "cannot reach {}: {} (is nimbus serve running there?)",
                    self.base,
                    root_cause(&e)
                ))
            } else {
                Failure::other(format_args!("{what}: {}", causes(&e)))
            }
        })
    }

    /// Sends `request` and reads the whole answer, whatever its status.
    pub(crate) async fn exchange(&self, request: Request<ReqBody>) -> Result<Reply> {
        let what = format!("{} {}", request.method(), request.uri());
        let (head, body) = self.send(request).await?.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| {
                Failure::other(format_args!("{what}: reading the answer: {}", causes(&e)))
            })?
            .to_bytes();
        Ok(Reply {
            status: head.status,
            headers: head.headers,
            body,
        })
    }

    /// An admin call with an optional JSON body: the answer if it is a
    /// success, otherwise the server's error as a [`Failure`].
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<Reply> {
        let mut builder = self.request(method, path);
        let body = match json {
            Some(value) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(body).boxed())
            .map_err(Failure::other)?;
        let reply = self.exchange(request).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(refusal(&reply))
        }
    }

    /// GET `path`: the JSON answer.
    pub(crate) async fn get(&self, path: &str) -> Result<Reply> {
        self.call(Method::GET, path, None).await
    }
}

/// The server's refusal: its `{"error": …}` message (or the start of its
/// body) and the status, as one line.
pub(crate) fn refusal(reply: &Reply) -> Failure {
    Failure::other(refusal_message(reply.status, &reply.body))
}

pub(crate) fn refusal_message(status: StatusCode, body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| excerpt(body));
    let message = if message.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string()
    } else {
        message
    };
    format!("{message} (HTTP {})", status.as_u16())
}

/// The first line of a body, shortened: for messages, never a dump.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let line = line.trim();
    if line.len() > 200 {
        format!("{}…", &line[..line.floor_char_boundary(200)])
    } else {
        line.to_string()
    }
}

/// An error and its sources, `: `-separated, each said once.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// The innermost source: `Connection refused (os error 111)`.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// A path segment as it goes into a URL (names are URL-safe already;
/// anything else is percent-encoded).
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// JSON with every non-ASCII character escaped (`\u00e9`), as a header
/// value must be visible ASCII.
pub(crate) fn ascii_json(value: &serde_json::Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    // Writing to a Vec cannot fail, and a Value always serializes.
    let _ = value.serialize(&mut ser);
    String::from_utf8(out).unwrap_or_default()
}

struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() && c != '\x7f' {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_one_line_with_the_status() {
        assert_eq!(
            refusal_message(
                StatusCode::CONFLICT,
                br#"{"error": "tenant `acme` exists"}"#
            ),
            "tenant `acme` exists (HTTP 409)"
        );
        assert_eq!(
            refusal_message(StatusCode::BAD_GATEWAY, b"\n upstream down\nmore\n"),
            "upstream down (HTTP 502)"
        );
        assert_eq!(
            refusal_message(StatusCode::NOT_FOUND, b""),
            "Not Found (HTTP 404)"
        );
    }

    #[test]
    fn header_json_is_ascii_and_still_the_same_json() {
        let value = serde_json::json!({"config": {"greeting": "héllo 👋\u{7f}"}});
        let text = ascii_json(&value);
        assert!(text.is_ascii(), "{text}");
        assert!(
            hyper::header::HeaderValue::from_str(&text).is_ok(),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).expect("JSON"),
            value
        );
    }

    #[test]
    fn segments_keep_names_and_encode_the_rest() {
        assert_eq!(segment("acme_1-x"), "acme_1-x");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
