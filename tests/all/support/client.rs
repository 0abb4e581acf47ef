//! An HTTP client over real sockets (hyper's legacy client), every request
//! bounded in time.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nimbus_http::INVOCATION_ID_HEADER;

/// Bound on any one request: a hung server fails the test, not CI.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What an invocation's error body must never show: guest panics, trap
/// details, the guest's own names.
const GUEST_INTERNALS: &[&str] = &[
    "panicked",
    "unreachable",
    "requested",
    "hello-http",
    "wasm",
    "backtrace",
    "decimal",
];

type ReqBody = BoxBody<Bytes, Infallible>;

/// A body of several chunks and no known length: hyper sends it with
/// `Transfer-Encoding: chunked`.
struct Chunked(VecDeque<Bytes>);

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// A finished response, body collected.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", self.status, self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `x-nimbus-invocation-id` header (which must be there).
    pub fn invocation_id(&self) -> &str {
        self.header(INVOCATION_ID_HEADER)
            .unwrap_or_else(|| panic!("no {INVOCATION_ID_HEADER} on {self:?}"))
    }

    /// Asserts the status, showing the body when it is not the one expected.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        self
    }

    /// One of `statuses`, showing the body when it is none of them.
    #[track_caller]
    pub fn expect_status_in(self, statuses: &[u16]) -> Self {
        assert!(
            statuses.contains(&self.status.as_u16()),
            "status {}: {}",
            self.status,
            self.text()
        );
        self
    }

    /// An error reply: the status, and a JSON error containing `needle`.
    #[track_caller]
    pub fn expect_error(self, status: u16, needle: &str) -> Self {
        let r = self.expect(status);
        let error = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(needle), "{needle:?} not in {error:?}");
        r
    }

    /// An error reply of an invocation: JSON naming the invocation, the id
    /// also in the header, and nothing of the guest's internals.
    #[track_caller]
    pub fn expect_invocation_error(self, status: u16, message: &str) -> Self {
        let r = self.expect(status);
        let body = r.json();
        assert_eq!(body["error"], message, "{body}");
        assert_eq!(body["invocation_id"], r.invocation_id(), "{body}");
        let text = r.text();
        for internal in GUEST_INTERNALS {
            assert!(!text.contains(internal), "{internal:?} leaked: {text}");
        }
        r
    }
}

/// An HTTP client for one server, sending a key with every request if it
/// was given one.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpConnector, ReqBody>,
    base: String,
    key: Option<String>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
            key: None,
        }
    }

    /// The same client, sending `Authorization: Bearer <key>`.
    pub fn with_key(&self, key: &str) -> Self {
        Self {
            key: Some(key.to_string()),
            ..self.clone()
        }
    }

    pub fn request(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            client: self,
            builder: Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.base)),
            key: self.key.clone(),
            timeout: REQUEST_TIMEOUT,
        }
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.request(Method::GET, path)
    }

    pub fn head(&self, path: &str) -> Call<'_> {
        self.request(Method::HEAD, path)
    }

    pub fn post(&self, path: &str) -> Call<'_> {
        self.request(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> Call<'_> {
        self.request(Method::PUT, path)
    }

    pub fn patch(&self, path: &str) -> Call<'_> {
        self.request(Method::PATCH, path)
    }

    pub fn delete(&self, path: &str) -> Call<'_> {
        self.request(Method::DELETE, path)
    }

    /// POSTs the command line `command` to the event function at `path`
    /// and returns its answer, which must be a 200.
    pub async fn run(&self, path: &str, command: &str) -> String {
        self.post(path)
            .body(command.to_string())
            .await
            .expect(200)
            .text()
    }
}

/// One request being built; awaiting it sends it without a body.
pub struct Call<'a> {
    client: &'a Client,
    builder: http::request::Builder,
    key: Option<String>,
    timeout: Duration,
}

impl<'a> Call<'a> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// `Authorization: Bearer <key>`, instead of the client's key.
    pub fn key(self, key: &str) -> Self {
        self.maybe_key(Some(key))
    }

    /// `key` instead of the client's key; `None` sends none at all.
    pub fn maybe_key(mut self, key: Option<&str>) -> Self {
        self.key = key.map(String::from);
        self
    }

    async fn try_send_body(self, body: ReqBody) -> Result<Reply, String> {
        let mut builder = self.builder;
        if let Some(key) = &self.key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        let request = builder.body(body).map_err(|e| e.to_string())?;
        let what = format!("{} {}", request.method(), request.uri());
        let exchange = async {
            let response = self
                .client
                .http
                .request(request)
                .await
                .map_err(|e| format!("{what}: {e:?}"))?;
            let (head, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("{what}: reading the body: {e}"))?
                .to_bytes();
            Ok(Reply {
                status: head.status,
                headers: head.headers,
                body,
            })
        };
        let limit = self.timeout;
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| format!("{what}: no answer within {limit:?}"))?
    }

    /// Waits up to `limit` for the answer instead of the default 30 s (a
    /// deploy that compiles a large component in a debug build).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Sends without a body; an error (no connection, no answer in time)
    /// is returned, not a panic.
    pub async fn try_send(self) -> Result<Reply, String> {
        self.try_send_body(Full::new(Bytes::new()).boxed()).await
    }

    pub async fn body(self, body: impl Into<Bytes>) -> Reply {
        self.try_send_body(Full::new(body.into()).boxed())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends `chunks` as a chunked body (no `Content-Length`).
    pub async fn chunked<B: Into<Bytes>>(self, chunks: impl IntoIterator<Item = B>) -> Reply {
        let chunks = chunks.into_iter().map(Into::into).collect();
        self.try_send_body(Chunked(chunks).boxed())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl<'a> IntoFuture for Call<'a> {
    type Output = Reply;
    type IntoFuture = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.body(Bytes::new()))
    }
}

/// Sends `request` as is on a fresh connection and reads until the server
/// closes it: for what an HTTP client library would not send.
pub async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .expect("read response");
        String::from_utf8_lossy(&response).into_owned()
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .expect("raw exchange timed out")
}
