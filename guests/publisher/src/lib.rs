//! Publishes to durable queue topics through `wasmcloud:messaging/producer`,
//! from a small text command in the event data (words separated by single
//! spaces); each answers `ok` (`text/plain`):
//!
//! - `publish <topic> <text...>`: one message carrying the text, content
//!   type `text/plain` and metadata `source=publisher`;
//! - `publish-many <topic> <n>`: `n` such messages, `msg-0` .. `msg-{n-1}`,
//!   in order.
//!
//! The client is `connect("default")`. Any messaging error is
//! `failed("<error:?>")`, e.g. `PermissionDenied("...")` for a topic the
//! function was not granted.

use nimbus_guest::messaging::producer;
use nimbus_guest::messaging::types::{Client, Error, Message};
use nimbus_guest::{Event, Guest, HandlerError, Response};

struct Publisher;

fn failed(e: Error) -> HandlerError {
    HandlerError::Failed(format!("{e:?}"))
}

fn usage(what: &str) -> HandlerError {
    HandlerError::InvalidInput(format!("usage: {what}"))
}

fn send(client: &Client, topic: &str, text: &str) -> Result<(), HandlerError> {
    let message = Message::new(text.as_bytes());
    message.set_content_type("text/plain");
    message.add_metadata("source", "publisher");
    producer::send(client, topic, message).map_err(failed)
}

fn run(command: &str) -> Result<Response, HandlerError> {
    let (verb, rest) = command.split_once(' ').unwrap_or((command, ""));
    match verb {
        "publish" => {
            let (topic, text) = rest
                .split_once(' ')
                .filter(|(t, _)| !t.is_empty())
                .ok_or_else(|| usage("publish <topic> <text...>"))?;
            let client = Client::connect("default").map_err(failed)?;
            send(&client, topic, text)?;
        }
        "publish-many" => {
            let what = "publish-many <topic> <n>";
            let (topic, n) = rest
                .split_once(' ')
                .filter(|(t, _)| !t.is_empty())
                .ok_or_else(|| usage(what))?;
            let n: u32 = n.parse().map_err(|_| usage(what))?;
            let client = Client::connect("default").map_err(failed)?;
            for i in 0..n {
                send(&client, topic, &format!("msg-{i}"))?;
            }
        }
        _ => {
            return Err(HandlerError::InvalidInput(format!(
                "unknown command {verb:?}"
            )));
        }
    }
    Ok(Response {
        content_type: Some("text/plain".into()),
        data: b"ok".to_vec(),
    })
}

impl Guest for Publisher {
    fn handle(event: Event) -> Result<Response, HandlerError> {
        let command = String::from_utf8(event.data)
            .map_err(|_| HandlerError::InvalidInput("the command must be UTF-8".into()))?;
        run(&command)
    }
}

nimbus_guest::export!(Publisher);
