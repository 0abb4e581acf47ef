//! A standard `wasi:http/proxy` component written with the `wasi` crate: it
//! runs unmodified on `wasmtime serve`, Spin and Nimbus's gateway.
//!
//! Any request gets `200 Hello from Nimbus!`, except paths ending in:
//!
//! - `/echo`: the request body back, with the request's `content-type`;
//! - `/headers`: the method, path-with-query and headers, one per line;
//! - `/status/<code>`: that status and an empty body;
//! - `/trap`: a panic (a trap, since guests are built with `panic = "abort"`);
//! - `/spin`: an endless loop;
//! - `/sleep/<ms>`: a sleep on the monotonic clock, then `200 slept`;
//! - `/big/<n>`: `n` bytes of `x`, written in chunks of at most 4096 bytes;
//! - `/fetch`: a `GET` of the absolute `http://host[:port]/path` URL in the
//!   request header `x-fetch-url`, sent through `wasi:http/outgoing-handler`.
//!   `200 status=<code>\n<body>` with the upstream's status and whole body;
//!   `502 denied: <error>` when the host refuses the request
//!   (`HTTP-request-denied`), `502 error: <error>` on any other failure, and
//!   `400` when the header is missing or not such a URL.

use std::time::Duration;

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};
use wasi::io::streams::StreamError;

/// The most `blocking-write-and-flush` accepts in one call.
const CHUNK: usize = 4096;

struct HelloHttp;

impl Guest for HelloHttp {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let path = path_with_query
            .split_once('?')
            .map_or(path_with_query.as_str(), |(path, _)| path);
        let segments: Vec<&str> = path.split('/').collect();
        let last = segments.last().copied().unwrap_or("");
        let before_last = segments.len().checked_sub(2).map_or("", |i| segments[i]);

        match (before_last, last) {
            (_, "echo") => {
                let content_type = header(&request, "content-type");
                let body = read_body(&request);
                let headers = match content_type {
                    Some(ct) => vec![("content-type".to_string(), ct)],
                    None => Vec::new(),
                };
                respond(response_out, 200, &headers, Payload::Bytes(&body));
            }
            (_, "headers") => {
                let mut text = format!(
                    "method: {}\npath-with-query: {path_with_query}\n",
                    method_name(&request.method())
                );
                for (name, value) in request.headers().entries() {
                    text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(&value)));
                }
                respond(
                    response_out,
                    200,
                    &text_plain(),
                    Payload::Bytes(text.as_bytes()),
                );
            }
            ("status", code) => match code.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => {
                    respond(response_out, code, &[], Payload::Bytes(b""));
                }
                _ => bad_request(response_out, "status code must be 100..=599\n"),
            },
            (_, "trap") => panic!("hello-http: /trap requested"),
            (_, "spin") => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            ("sleep", ms) => match ms.parse::<u64>() {
                Ok(ms) => {
                    std::thread::sleep(Duration::from_millis(ms));
                    respond(response_out, 200, &text_plain(), Payload::Bytes(b"slept"));
                }
                Err(_) => bad_request(response_out, "sleep takes milliseconds\n"),
            },
            ("big", n) => match n.parse::<u64>() {
                Ok(n) => respond(response_out, 200, &text_plain(), Payload::Xs(n)),
                Err(_) => bad_request(response_out, "big takes a byte count\n"),
            },
            (_, "fetch") => {
                let url = header(&request, "x-fetch-url")
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|url| Url::parse(&url));
                let Some(url) = url else {
                    return bad_request(
                        response_out,
                        "x-fetch-url must hold an absolute http://host[:port]/path URL\n",
                    );
                };
                match fetch(&url) {
                    Ok((status, body)) => {
                        let mut text = format!("status={status}\n").into_bytes();
                        text.extend_from_slice(&body);
                        respond(response_out, 200, &text_plain(), Payload::Bytes(&text));
                    }
                    Err(e) => {
                        let text = match e {
                            ErrorCode::HttpRequestDenied => format!("denied: {e:?}\n"),
                            _ => format!("error: {e:?}\n"),
                        };
                        respond(
                            response_out,
                            502,
                            &text_plain(),
                            Payload::Bytes(text.as_bytes()),
                        );
                    }
                }
            }
            _ => respond(
                response_out,
                200,
                &text_plain(),
                Payload::Bytes(b"Hello from Nimbus!\n"),
            ),
        }
    }
}

wasi::http::proxy::export!(HelloHttp);

/// What a response's body holds.
enum Payload<'a> {
    Bytes(&'a [u8]),
    /// That many bytes of `x`.
    Xs(u64),
}

fn text_plain() -> Vec<(String, Vec<u8>)> {
    vec![("content-type".to_string(), b"text/plain".to_vec())]
}

fn bad_request(response_out: ResponseOutparam, message: &str) {
    respond(
        response_out,
        400,
        &text_plain(),
        Payload::Bytes(message.as_bytes()),
    );
}

/// The first value of the request header `name`.
fn header(request: &IncomingRequest, name: &str) -> Option<Vec<u8>> {
    request.headers().get(name).into_iter().next()
}

fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
}

/// An absolute `http://` or `https://` URL, split as `wasi:http` wants it.
struct Url {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

impl Url {
    /// `scheme://authority[/path][?query]`; `None` for anything else.
    fn parse(url: &str) -> Option<Self> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return None;
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        // The fragment stays with the client.
        let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
        let path_with_query = match tail.strip_prefix('?') {
            Some(_) => format!("/{tail}"),
            None if tail.is_empty() => "/".to_string(),
            None => tail.to_string(),
        };
        Some(Self {
            scheme,
            authority: authority.to_string(),
            path_with_query,
        })
    }
}

/// Sends `GET url` through `wasi:http/outgoing-handler` and returns the
/// response's status and whole body.
fn fetch(url: &Url) -> Result<(u16, Vec<u8>), ErrorCode> {
    let invalid = |what: &str| ErrorCode::InternalError(Some(format!("invalid {what}")));
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_method(&Method::Get)
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&url.scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(&url.authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(&url.path_with_query))
        .map_err(|()| invalid("path"))?;

    let future = outgoing_handler::handle(request, None)?;
    let response = loop {
        match future.get() {
            Some(Ok(result)) => break result?,
            Some(Err(())) => {
                return Err(ErrorCode::InternalError(Some(
                    "the response was already taken".to_string(),
                )));
            }
            None => future.subscribe().block(),
        }
    };
    let status = response.status();
    let body = response
        .consume()
        .map_err(|()| ErrorCode::InternalError(Some("the body was already taken".into())))?;
    let data = read_all(&body).map_err(|e| {
        wasi::http::types::http_error_code(&e)
            .unwrap_or_else(|| ErrorCode::InternalError(Some(e.to_debug_string())))
    })?;
    drop(IncomingBody::finish(body));
    Ok((status, data))
}

/// Reads the whole request body.
fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let Ok(body) = request.consume() else {
        return Vec::new();
    };
    let data = read_all(&body)
        .unwrap_or_else(|e| panic!("reading the request body: {}", e.to_debug_string()));
    drop(IncomingBody::finish(body));
    data
}

/// Reads an incoming body's stream to its end.
fn read_all(body: &IncomingBody) -> Result<Vec<u8>, wasi::io::error::Error> {
    let mut data = Vec::new();
    // The stream is a child of the body: it is dropped here, before the
    // caller can `finish` the body.
    let stream = body.stream().expect("the body's stream is taken once");
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(data),
            Err(StreamError::LastOperationFailed(e)) => return Err(e),
        }
    }
}

/// Sends the response head, then streams the body in chunks of at most
/// [`CHUNK`] bytes.
fn respond(
    response_out: ResponseOutparam,
    status: u16,
    headers: &[(String, Vec<u8>)],
    payload: Payload<'_>,
) {
    let fields = Fields::from_list(headers).expect("valid response headers");
    let response = OutgoingResponse::new(fields);
    response
        .set_status_code(status)
        .expect("a status code in 100..=599");
    let body = response.body().expect("the response body is taken once");
    // Hand the head over before writing: the host reads the body only once
    // it has the response, so a large body written first could block forever.
    ResponseOutparam::set(response_out, Ok(response));
    {
        let out = body.write().expect("the body's stream is taken once");
        let write = |chunk: &[u8]| {
            out.blocking_write_and_flush(chunk)
                .expect("writing the response body");
        };
        match payload {
            Payload::Bytes(bytes) => bytes.chunks(CHUNK).for_each(write),
            Payload::Xs(mut n) => {
                let xs = [b'x'; CHUNK];
                while n > 0 {
                    let len = n.min(CHUNK as u64) as usize;
                    write(&xs[..len]);
                    n -= len as u64;
                }
            }
        }
        // The stream is a child of the body: it must go before `finish`.
    }
    OutgoingBody::finish(body, None).expect("finishing the response body");
}
