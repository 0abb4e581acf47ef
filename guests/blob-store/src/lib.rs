//! Drives `wasi:blobstore` from a small text command in the event data;
//! words are separated by single spaces, so names are taken exactly as
//! written. Every answer is `text/plain` except `cat` and `range`, which
//! answer the object's bytes (`application/octet-stream`):
//!
//! - `put <container> <key> <n> <chunk>`: stream `n` bytes of the pattern
//!   (byte `i` is `(i * 31 + 7) % 251`) through the value's output stream,
//!   in writes of at most `<chunk>` bytes within `check-write`'s budget.
//!   `write-data` is called before the body for odd `n` and after it for
//!   even `n` (both orders must work), then `finish`; answer `ok <n>`;
//! - `get <container> <key>`: read the object through `consume-async`'s
//!   input stream until it closes; answer `ok <size> <fnv1a-64 hex>`, or
//!   `mismatch <size> <fnv1a-64 hex>` if the bytes are not the pattern;
//! - `cat <container> <key>`: the object's bytes, through `consume-sync`;
//! - `write <container> <key> <text...>`: store the text; answer `ok`;
//! - `range <container> <key> <start> <end>`: `get-data` with those
//!   (inclusive) offsets; answer the bytes;
//! - `list <container>`: every object name (read in pages of 2), one per
//!   line, in the order the host returned them;
//! - `info <container> <key>`: the object's size from `object-info`;
//! - `has <container> <key>`: `true` or `false`;
//! - `del <container> <key>`: answer `ok`;
//! - `copy <c1> <k1> <c2> <k2>`, `move <c1> <k1> <c2> <k2>`: answer `ok`;
//! - `create <container>`, `drop-container <container>`: answer `ok`;
//! - `exists <container>`: `true` or `false`;
//! - `abandon <container> <key> <n>`: write `n` pattern bytes and call
//!   `write-data`, then drop the value without `finish` (the object must not
//!   appear); answer `ok`.
//!
//! Any `wasi:blobstore` error is `failed("<error>")` with the host's string
//! as is (e.g. `permission denied: container ... is not granted`); a stream
//! error is `failed("stream: ...")`.

use nimbus_guest::blobstore::blobstore;
use nimbus_guest::blobstore::container::Container;
use nimbus_guest::blobstore::types::{IncomingValue, ObjectId, OutgoingValue};
use nimbus_guest::streams::{InputStream, OutputStream, StreamError};
use nimbus_guest::{Event, Guest, HandlerError, Response};

struct BlobStore;

/// Byte `i` of the test pattern.
fn pattern(i: u64) -> u8 {
    ((i * 31 + 7) % 251) as u8
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn failed(e: String) -> HandlerError {
    HandlerError::Failed(e)
}

fn stream(e: StreamError) -> HandlerError {
    match e {
        StreamError::Closed => HandlerError::Failed("stream: closed".into()),
        StreamError::LastOperationFailed(e) => {
            HandlerError::Failed(format!("stream: {}", e.to_debug_string()))
        }
    }
}

fn usage(what: &str) -> HandlerError {
    HandlerError::InvalidInput(format!("usage: {what}"))
}

fn text(s: impl Into<String>) -> Response {
    Response {
        content_type: Some("text/plain".into()),
        data: s.into().into_bytes(),
    }
}

fn bytes(data: Vec<u8>) -> Response {
    Response {
        content_type: Some("application/octet-stream".into()),
        data,
    }
}

/// Exactly `N` words of `rest`, or the usage error.
fn args<'a, const N: usize>(rest: &'a str, what: &str) -> Result<[&'a str; N], HandlerError> {
    let words: Vec<&str> = rest.split(' ').collect();
    words
        .try_into()
        .ok()
        .filter(|w: &[&str; N]| w.iter().all(|s| !s.is_empty()))
        .ok_or_else(|| usage(what))
}

fn number(s: &str, what: &str) -> Result<u64, HandlerError> {
    s.parse().map_err(|_| usage(what))
}

fn container(name: &str) -> Result<Container, HandlerError> {
    blobstore::get_container(name).map_err(failed)
}

/// Writes all of `data` to `out` in writes of at most `chunk` bytes, each
/// within the budget `check-write` grants (waiting for room when it is 0).
fn write_all(out: &OutputStream, data: &[u8], chunk: usize) -> Result<(), HandlerError> {
    for piece in data.chunks(chunk.max(1)) {
        let mut rest = piece;
        while !rest.is_empty() {
            let budget = out.check_write().map_err(stream)?;
            if budget == 0 {
                out.subscribe().block();
                continue;
            }
            let n = rest
                .len()
                .min(usize::try_from(budget).unwrap_or(usize::MAX));
            out.write(&rest[..n]).map_err(stream)?;
            rest = &rest[n..];
        }
    }
    out.blocking_flush().map_err(stream)
}

/// Reads `stream` until it closes, `chunk` bytes at a time.
fn read_all(input: &InputStream, chunk: u64) -> Result<Vec<u8>, HandlerError> {
    let mut data = Vec::new();
    loop {
        match input.blocking_read(chunk) {
            Ok(piece) => data.extend(piece),
            Err(StreamError::Closed) => return Ok(data),
            Err(e) => return Err(stream(e)),
        }
    }
}

/// The whole object as an incoming value (`get-data` offsets are inclusive,
/// so an empty object is answered without one).
fn whole(c: &Container, key: &str) -> Result<Option<IncomingValue>, HandlerError> {
    let size = c.object_info(key).map_err(failed)?.size;
    if size == 0 {
        return Ok(None);
    }
    c.get_data(key, 0, size - 1).map(Some).map_err(failed)
}

fn put(c: &Container, key: &str, n: u64, chunk: usize) -> Result<(), HandlerError> {
    let data: Vec<u8> = (0..n).map(pattern).collect();
    let value = OutgoingValue::new_outgoing_value();
    let body = value
        .outgoing_value_write_body()
        .map_err(|()| failed("outgoing-value-write-body failed".into()))?;
    let early = n % 2 == 1;
    if early {
        c.write_data(key, &value).map_err(failed)?;
    }
    write_all(&body, &data, chunk)?;
    // The stream is a child of the value: it goes before `finish`.
    drop(body);
    if !early {
        c.write_data(key, &value).map_err(failed)?;
    }
    OutgoingValue::finish(value).map_err(failed)
}

fn run(command: &str) -> Result<Response, HandlerError> {
    let (verb, rest) = command.split_once(' ').unwrap_or((command, ""));
    match verb {
        "put" => {
            let what = "put <container> <key> <n> <chunk>";
            let [name, key, n, chunk] = args(rest, what)?;
            let n = number(n, what)?;
            let chunk = usize::try_from(number(chunk, what)?).map_err(|_| usage(what))?;
            put(&container(name)?, key, n, chunk)?;
            Ok(text(format!("ok {n}")))
        }
        "get" => {
            let [name, key] = args(rest, "get <container> <key>")?;
            let data = match whole(&container(name)?, key)? {
                Some(value) => {
                    let input =
                        IncomingValue::incoming_value_consume_async(value).map_err(failed)?;
                    read_all(&input, 16 * 1024)?
                }
                None => Vec::new(),
            };
            let matches = data.iter().zip(0..).all(|(&b, i)| b == pattern(i));
            let verdict = if matches { "ok" } else { "mismatch" };
            Ok(text(format!(
                "{verdict} {} {:016x}",
                data.len(),
                fnv1a(&data)
            )))
        }
        "cat" => {
            let [name, key] = args(rest, "cat <container> <key>")?;
            match whole(&container(name)?, key)? {
                Some(value) => Ok(bytes(
                    IncomingValue::incoming_value_consume_sync(value).map_err(failed)?,
                )),
                None => Ok(bytes(Vec::new())),
            }
        }
        "write" => {
            let mut parts = rest.splitn(3, ' ');
            let (Some(name), Some(key), Some(body)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(usage("write <container> <key> <text...>"));
            };
            let c = container(name)?;
            let value = OutgoingValue::new_outgoing_value();
            let out = value
                .outgoing_value_write_body()
                .map_err(|()| failed("outgoing-value-write-body failed".into()))?;
            out.blocking_write_and_flush(body.as_bytes())
                .map_err(stream)?;
            drop(out);
            c.write_data(key, &value).map_err(failed)?;
            OutgoingValue::finish(value).map_err(failed)?;
            Ok(text("ok"))
        }
        "range" => {
            let what = "range <container> <key> <start> <end>";
            let [name, key, start, end] = args(rest, what)?;
            let (start, end) = (number(start, what)?, number(end, what)?);
            let value = container(name)?.get_data(key, start, end).map_err(failed)?;
            Ok(bytes(
                IncomingValue::incoming_value_consume_sync(value).map_err(failed)?,
            ))
        }
        "list" => {
            let [name] = args(rest, "list <container>")?;
            let names = container(name)?.list_objects().map_err(failed)?;
            let mut all = Vec::new();
            loop {
                let (page, end) = names.read_stream_object_names(2).map_err(failed)?;
                all.extend(page);
                if end {
                    break;
                }
            }
            Ok(text(all.join("\n")))
        }
        "info" => {
            let [name, key] = args(rest, "info <container> <key>")?;
            let info = container(name)?.object_info(key).map_err(failed)?;
            Ok(text(info.size.to_string()))
        }
        "has" => {
            let [name, key] = args(rest, "has <container> <key>")?;
            let has = container(name)?.has_object(key).map_err(failed)?;
            Ok(text(has.to_string()))
        }
        "del" => {
            let [name, key] = args(rest, "del <container> <key>")?;
            container(name)?.delete_object(key).map_err(failed)?;
            Ok(text("ok"))
        }
        "copy" | "move" => {
            let [c1, k1, c2, k2] = args(rest, "copy|move <c1> <k1> <c2> <k2>")?;
            let src = ObjectId {
                container: c1.into(),
                object: k1.into(),
            };
            let dest = ObjectId {
                container: c2.into(),
                object: k2.into(),
            };
            if verb == "copy" {
                blobstore::copy_object(&src, &dest).map_err(failed)?;
            } else {
                blobstore::move_object(&src, &dest).map_err(failed)?;
            }
            Ok(text("ok"))
        }
        "create" => {
            let [name] = args(rest, "create <container>")?;
            blobstore::create_container(name).map_err(failed)?;
            Ok(text("ok"))
        }
        "exists" => {
            let [name] = args(rest, "exists <container>")?;
            let exists = blobstore::container_exists(name).map_err(failed)?;
            Ok(text(exists.to_string()))
        }
        "drop-container" => {
            let [name] = args(rest, "drop-container <container>")?;
            blobstore::delete_container(name).map_err(failed)?;
            Ok(text("ok"))
        }
        "abandon" => {
            let what = "abandon <container> <key> <n>";
            let [name, key, n] = args(rest, what)?;
            let n = number(n, what)?;
            let c = container(name)?;
            let value = OutgoingValue::new_outgoing_value();
            let out = value
                .outgoing_value_write_body()
                .map_err(|()| failed("outgoing-value-write-body failed".into()))?;
            let data: Vec<u8> = (0..n).map(pattern).collect();
            write_all(&out, &data, 4096)?;
            drop(out);
            c.write_data(key, &value).map_err(failed)?;
            // No `finish`: the value is abandoned, the object must not appear.
            drop(value);
            Ok(text("ok"))
        }
        _ => Err(HandlerError::InvalidInput(format!(
            "unknown command {verb:?}"
        ))),
    }
}

impl Guest for BlobStore {
    fn handle(event: Event) -> Result<Response, HandlerError> {
        let command = String::from_utf8(event.data)
            .map_err(|_| HandlerError::InvalidInput("the command must be UTF-8".into()))?;
        run(&command)
    }
}

nimbus_guest::export!(BlobStore);
