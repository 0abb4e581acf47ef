//! Hostile: writes to stdout without end. The host must cap what it keeps
//! and stop the guest by fuel or deadline.

use nimbus_guest::{Event, Guest, HandlerError, Response};
use std::io::Write;

struct LogFlood;

impl Guest for LogFlood {
    fn handle(_event: Event) -> Result<Response, HandlerError> {
        let line = [b'x'; 1023];
        let mut out = std::io::stdout();
        let mut n: u64 = 0;
        loop {
            n += 1;
            // Ignore errors: a host that refuses writes must still stop us.
            let _ = out.write_all(&line);
            let _ = writeln!(out, " {n}");
        }
    }
}

nimbus_guest::export!(LogFlood);
