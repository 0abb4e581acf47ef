//! Hostile: recurses without bound until the wasm stack limit is hit.

use nimbus_guest::{Event, Guest, HandlerError, Response};

struct DeepRecursion;

#[inline(never)]
fn descend(depth: u64, pad: [u64; 8]) -> u64 {
    // The padding array and black_box keep each frame real: no tail call,
    // no folding of the recursion into a loop.
    let pad = std::hint::black_box(pad);
    if depth == std::hint::black_box(u64::MAX) {
        return pad[0];
    }
    descend(depth + 1, [depth; 8]) + pad[(depth % 8) as usize]
}

impl Guest for DeepRecursion {
    fn handle(_event: Event) -> Result<Response, HandlerError> {
        let total = descend(0, [0; 8]);
        Ok(Response {
            content_type: None,
            data: total.to_le_bytes().to_vec(),
        })
    }
}

nimbus_guest::export!(DeepRecursion);
