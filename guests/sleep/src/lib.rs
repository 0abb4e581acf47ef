//! Hostile: blocks in a host call (wasi clocks) far past any deadline. Fuel
//! cannot stop it because no wasm runs while it sleeps.

use nimbus_guest::{Event, Guest, HandlerError, Response};
use std::time::Duration;

struct Sleep;

impl Guest for Sleep {
    fn handle(_event: Event) -> Result<Response, HandlerError> {
        eprintln!("going to sleep for an hour");
        std::thread::sleep(Duration::from_secs(3600));
        Ok(Response {
            content_type: None,
            data: b"woke up".to_vec(),
        })
    }
}

nimbus_guest::export!(Sleep);
