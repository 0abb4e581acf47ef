//! Drives `wasi:keyvalue` (store, atomics, batch) from a small text command
//! in the event data; words are separated by single spaces, so names are
//! taken exactly as written:
//!
//! - `incr <store> <key>`: atomically add 1, answer the new value;
//! - `get <store> <key>`: the value, or `invalid-input("missing")`;
//! - `set <store> <key> <value...>`: answer `ok`;
//! - `del <store> <key>`: answer `ok`;
//! - `list <store>`: every key (all pages), one per line;
//! - `batch <store> <k1=v1> <k2=v2> ...`: `set-many`, then `get-many` of the
//!   same keys, answered as `k=v` lines;
//! - `big <store> <key> <n>`: set a value of `n` bytes, answer `ok`;
//! - `bench-get <store> <key> <n>`: `n` gets of one key, which must exist;
//!   answer `n` (for benches/kv.rs);
//! - `bench-set <store> <key> <n>`: `n` sets, of keys `<key>0` .. `<key>{n-1}`
//!   to their index as 8 decimal digits; answer `n` (for benches/kv.rs).
//!
//! Any `wasi:keyvalue` error is `failed("<error:?>")`, e.g. one naming
//! `AccessDenied` for a store the function was not granted.

use nimbus_guest::keyvalue::store::{self, Bucket};
use nimbus_guest::keyvalue::{atomics, batch};
use nimbus_guest::{Event, Guest, HandlerError, Response};

struct KvCounter;

fn kv(e: store::Error) -> HandlerError {
    HandlerError::Failed(format!("{e:?}"))
}

fn usage(what: &str) -> HandlerError {
    HandlerError::InvalidInput(format!("usage: {what}"))
}

fn open(name: &str) -> Result<Bucket, HandlerError> {
    store::open(name).map_err(kv)
}

fn text(s: impl Into<String>) -> Response {
    Response {
        content_type: Some("text/plain".into()),
        data: s.into().into_bytes(),
    }
}

fn run(command: &str) -> Result<Response, HandlerError> {
    let (verb, rest) = command.split_once(' ').unwrap_or((command, ""));
    match verb {
        "incr" => {
            let (name, key) = rest
                .split_once(' ')
                .ok_or_else(|| usage("incr <store> <key>"))?;
            let bucket = open(name)?;
            let value = atomics::increment(&bucket, key, 1).map_err(kv)?;
            Ok(text(value.to_string()))
        }
        "get" => {
            let (name, key) = rest
                .split_once(' ')
                .ok_or_else(|| usage("get <store> <key>"))?;
            let bucket = open(name)?;
            match bucket.get(key).map_err(kv)? {
                Some(data) => Ok(Response {
                    content_type: Some("application/octet-stream".into()),
                    data,
                }),
                None => Err(HandlerError::InvalidInput("missing".into())),
            }
        }
        "set" => {
            let mut parts = rest.splitn(3, ' ');
            let (Some(name), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(usage("set <store> <key> <value...>"));
            };
            open(name)?.set(key, value.as_bytes()).map_err(kv)?;
            Ok(text("ok"))
        }
        "del" => {
            let (name, key) = rest
                .split_once(' ')
                .ok_or_else(|| usage("del <store> <key>"))?;
            open(name)?.delete(key).map_err(kv)?;
            Ok(text("ok"))
        }
        "list" => {
            if rest.is_empty() {
                return Err(usage("list <store>"));
            }
            let bucket = open(rest)?;
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = bucket.list_keys(cursor).map_err(kv)?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            Ok(text(keys.join("\n")))
        }
        "batch" => {
            let mut parts = rest.split(' ');
            let name = parts
                .next()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| usage("batch <store> <k=v>..."))?;
            let pairs = parts
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                        .ok_or_else(|| usage("batch <store> <k=v>..."))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
            let bucket = open(name)?;
            batch::set_many(&bucket, &pairs).map_err(kv)?;
            let got = batch::get_many(&bucket, &keys).map_err(kv)?;
            let lines: Vec<String> = got
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(&v)))
                .collect();
            Ok(text(lines.join("\n")))
        }
        "big" => {
            let mut parts = rest.splitn(3, ' ');
            let (Some(name), Some(key), Some(n)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(usage("big <store> <key> <n>"));
            };
            let n: usize = n.parse().map_err(|_| usage("big <store> <key> <n>"))?;
            open(name)?.set(key, &vec![b'x'; n]).map_err(kv)?;
            Ok(text("ok"))
        }
        "bench-get" | "bench-set" => {
            let what = "bench-get|bench-set <store> <key> <n>";
            let mut parts = rest.splitn(3, ' ');
            let (Some(name), Some(key), Some(n)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(usage(what));
            };
            let n: u32 = n.parse().map_err(|_| usage(what))?;
            let bucket = open(name)?;
            if verb == "bench-get" {
                for _ in 0..n {
                    if bucket.get(key).map_err(kv)?.is_none() {
                        return Err(HandlerError::InvalidInput("missing".into()));
                    }
                }
            } else {
                for i in 0..n {
                    let value = format!("{i:08}");
                    bucket
                        .set(&format!("{key}{i}"), value.as_bytes())
                        .map_err(kv)?;
                }
            }
            Ok(text(n.to_string()))
        }
        _ => Err(HandlerError::InvalidInput(format!(
            "unknown command {verb:?}"
        ))),
    }
}

impl Guest for KvCounter {
    fn handle(event: Event) -> Result<Response, HandlerError> {
        let command = String::from_utf8(event.data)
            .map_err(|_| HandlerError::InvalidInput("the command must be UTF-8".into()))?;
        run(&command)
    }
}

nimbus_guest::export!(KvCounter);
