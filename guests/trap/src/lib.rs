//! Hostile: panics, which in a wasm guest is a trap (`unreachable`).

use nimbus_guest::{Event, Guest, HandlerError, Response};

struct Trap;

impl Guest for Trap {
    fn handle(event: Event) -> Result<Response, HandlerError> {
        panic!("trap guest panicked on purpose (event {})", event.id);
    }
}

nimbus_guest::export!(Trap);
