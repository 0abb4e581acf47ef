//! Hostile: never returns and never calls the host. Only fuel or the
//! wall-clock deadline can stop it.

use nimbus_guest::{Event, Guest, HandlerError, Response};

struct SpinLoop;

impl Guest for SpinLoop {
    fn handle(event: Event) -> Result<Response, HandlerError> {
        let mut x = event.data.len() as u64;
        loop {
            // black_box keeps the optimizer from proving the loop useless.
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

nimbus_guest::export!(SpinLoop);
