//! Reads its configuration through `wasi:config/store` and logs through
//! `wasi:logging`. The event data names the key to read; the answer is its
//! value. A key the function was not granted reads as absent: a guest error.

use nimbus_guest::logging::{Level, log};
use nimbus_guest::{Event, Guest, HandlerError, Response, config};

struct ConfigReader;

impl Guest for ConfigReader {
    fn handle(event: Event) -> Result<Response, HandlerError> {
        let key = String::from_utf8(event.data)
            .map_err(|_| HandlerError::InvalidInput("the key must be UTF-8".into()))?;
        let key = key.trim();
        let granted = config::get_all()
            .map_err(|e| HandlerError::Failed(format!("config store: {e:?}")))?
            .len();
        log(
            Level::Info,
            "config-reader",
            &format!("looking up {key:?} among {granted} granted keys"),
        );
        match config::get(key) {
            Ok(Some(value)) => {
                // The value itself is never logged: it may be a secret.
                log(Level::Debug, "config-reader", &format!("found {key:?}"));
                Ok(Response {
                    content_type: Some("text/plain".into()),
                    data: value.into_bytes(),
                })
            }
            Ok(None) => {
                log(
                    Level::Warn,
                    "config-reader",
                    &format!("{key:?} is not granted"),
                );
                Err(HandlerError::InvalidInput(format!("no config key {key:?}")))
            }
            Err(e) => Err(HandlerError::Failed(format!("config store: {e:?}"))),
        }
    }
}

nimbus_guest::export!(ConfigReader);
