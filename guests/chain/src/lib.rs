//! Hostile to the object trigger: on every object-created event it copies
//! the object to `<key>+` in the same container — a write that raises the
//! next event, forever unless the host's loop guard stops the chain. It
//! answers the name it wrote.

use nimbus_guest::blobstore::blobstore::{self, ObjectId};
use nimbus_guest::{Event, Guest, HandlerError, Response};

struct Chain;

impl Guest for Chain {
    fn handle(event: Event) -> Result<Response, HandlerError> {
        let container = event
            .attribute("container")
            .ok_or_else(|| HandlerError::InvalidInput("no `container` attribute".into()))?
            .to_string();
        let key = event
            .attribute("key")
            .ok_or_else(|| HandlerError::InvalidInput("no `key` attribute".into()))?
            .to_string();
        let next = format!("{key}+");
        blobstore::copy_object(
            &ObjectId {
                container: container.clone(),
                object: key,
            },
            &ObjectId {
                container,
                object: next.clone(),
            },
        )
        .map_err(HandlerError::Failed)?;
        Ok(Response {
            content_type: Some("text/plain".into()),
            data: next.into_bytes(),
        })
    }
}

nimbus_guest::export!(Chain);
