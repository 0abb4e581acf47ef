//! Returns the event's data unchanged: the smallest useful function, and the
//! one the invocation benchmark measures.

use nimbus_guest::{Event, Guest, HandlerError, Response};

struct Echo;

impl Guest for Echo {
    fn handle(event: Event) -> Result<Response, HandlerError> {
        Ok(Response {
            content_type: event.content_type,
            data: event.data,
        })
    }
}

nimbus_guest::export!(Echo);
