//! Hostile: grows linear memory 1 MiB at a time, touching every page, until
//! the host refuses to grow it further.

use nimbus_guest::{Event, Guest, HandlerError, Response};

struct MemoryBomb;

impl Guest for MemoryBomb {
    fn handle(_event: Event) -> Result<Response, HandlerError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let chunk = vec![0xA5u8; 1 << 20];
            hoard.push(std::hint::black_box(chunk));
        }
    }
}

nimbus_guest::export!(MemoryBomb);
