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
//! - `/big/<n>`: `n` bytes of `x`, written in chunks of at most 4096 bytes.

use std::time::Duration;

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
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

/// Reads the whole request body.
fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut data = Vec::new();
    let Ok(body) = request.consume() else {
        return data;
    };
    {
        let stream = body.stream().expect("the body's stream is taken once");
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    panic!("reading the request body: {}", e.to_debug_string())
                }
            }
        }
        // The stream is a child of the body: it must go before `finish`.
    }
    drop(wasi::http::types::IncomingBody::finish(body));
    data
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
