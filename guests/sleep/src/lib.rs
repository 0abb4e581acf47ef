//! Hostile: blocks in a host call (wasi clocks) far past any deadline. Fuel
//! cannot stop it because no wasm runs while it sleeps. With a number of
//! milliseconds as its data it sleeps that long and returns (the
//! in-flight benchmark: many invocations each waiting in a host call).

use nimbus_guest::{Event, Guest, HandlerError, Response};
use std::time::Duration;

struct Sleep;

impl Guest for Sleep {
    fn handle(event: Event) -> Result<Response, HandlerError> {
        let ms = std::str::from_utf8(&event.data)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        match ms {
            Some(ms) => std::thread::sleep(Duration::from_millis(ms)),
            None => {
                eprintln!("going to sleep for an hour");
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Ok(Response {
            content_type: None,
            data: b"woke up".to_vec(),
        })
    }
}

nimbus_guest::export!(Sleep);
