//! Calling the guest in a prepared store: instantiate, then call the
//! event handler, or hand an HTTP function its request and collect its
//! response (buffered, bounded) while it runs.

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::event::{Event, GuestError, Response};
use crate::function::Kind;
use crate::state::InvocationState;

/// What an invocation is given.
pub(crate) enum Input {
    Event(Event),
    Http(http::Request<Bytes>),
}

/// What a guest produced when it returned normally.
pub(crate) enum Output {
    Event(Result<Response, GuestError>),
    Http(http::Response<Bytes>),
}

/// Why the guest stopped, before it is turned into an outcome.
pub(crate) enum Ended {
    Returned(Output),
    Failed(wasmtime::Error),
    /// The guest returned but its HTTP response cannot be delivered.
    BadResponse(String),
    TimedOut,
    /// The guest called `wasi:cli/exit`; with 0, what it had produced.
    Exited(i32, Option<Output>),
}

/// Instantiates and calls the guest. Runs inside the invocation's deadline.
pub(crate) async fn call_guest(
    kind: &Kind,
    store: &mut Store<InvocationState>,
    input: Input,
    max_response_bytes: usize,
) -> Ended {
    match (kind, input) {
        (Kind::Event(pre) | Kind::Both { event: pre, .. }, Input::Event(event)) => {
            let call = async {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .nimbus_function_handler()
                    .call_handle(&mut *store, &event.into_wit())
                    .await
            };
            match call.await {
                Ok(r) => Ended::Returned(Output::Event(
                    r.map(Response::from).map_err(GuestError::from),
                )),
                // `exit(0)` from an event handler: done, nothing to return.
                Err(e) => match exit_status(&e) {
                    Some(0) => Ended::Exited(0, Some(Output::Event(Ok(Response::default())))),
                    Some(code) => Ended::Exited(code, None),
                    None => Ended::Failed(e),
                },
            }
        }
        (Kind::Http(pre) | Kind::Both { http: pre, .. }, Input::Http(request)) => {
            call_http(pre, store, request, max_response_bytes).await
        }
        _ => Ended::BadResponse("input does not match the function's kind".into()),
    }
}

async fn call_http(
    pre: &ProxyPre<InvocationState>,
    store: &mut Store<InvocationState>,
    request: http::Request<Bytes>,
    max_response_bytes: usize,
) -> Ended {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let request = request.map(|b| {
        http_body_util::Full::new(b)
            .map_err(|never| -> wasmtime_wasi_http::Error { match never {} })
    });
    let setup = (|| {
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(tx)?;
        wasmtime::Result::Ok((req, out))
    })();
    let (req, out) = match setup {
        Ok(v) => v,
        Err(e) => return Ended::Failed(e),
    };

    // The guest may stream its body after setting the response, so collect
    // concurrently with the call; a bounded body channel would otherwise
    // stall the guest.
    let collect = collect_response(rx, max_response_bytes);
    tokio::pin!(collect);
    let mut response = None;
    let called = {
        let guest = async {
            let proxy = pre.instantiate_async(&mut *store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, req, out)
                .await
        };
        tokio::pin!(guest);
        loop {
            tokio::select! {
                r = &mut guest => break r,
                c = &mut collect, if response.is_none() => response = Some(c),
            }
        }
    };
    // `exit(0)` keeps whatever response the guest set before it.
    let exited = match called {
        Ok(()) => None,
        Err(e) => match exit_status(&e) {
            Some(0) => Some(0),
            Some(code) => return Ended::Exited(code, None),
            None => return Ended::Failed(e),
        },
    };
    let response = match response {
        Some(r) => r,
        None => {
            // The guest returned without finishing its response: drop what
            // it left behind (an unset outparam, an unfinished body) so the
            // collection ends instead of waiting for the deadline.
            store.data_mut().table = ResourceTable::new();
            collect.await
        }
    };
    match (response, exited) {
        (Ok(r), None) => Ended::Returned(Output::Http(r)),
        (Ok(r), Some(code)) => Ended::Exited(code, Some(Output::Http(r))),
        (Err(m), _) => Ended::BadResponse(m),
    }
}

/// The status of a `wasi:cli/exit` call that ended the guest, if that is
/// how it ended.
fn exit_status(e: &wasmtime::Error) -> Option<i32> {
    e.downcast_ref::<wasmtime_wasi::I32Exit>().map(|x| x.0)
}

async fn collect_response(
    rx: tokio::sync::oneshot::Receiver<Result<http::Response<HyperOutgoingBody>, ErrorCode>>,
    max_bytes: usize,
) -> Result<http::Response<Bytes>, String> {
    let response = match rx.await {
        Ok(Ok(r)) => r,
        Ok(Err(code)) => return Err(format!("the guest answered with error {code:?}")),
        Err(_) => return Err("the guest returned without setting a response".into()),
    };
    let (parts, mut body) = response.into_parts();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the guest's response body failed: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max_bytes {
                return Err(format!(
                    "the response body exceeds the limit of {max_bytes} bytes"
                ));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(http::Response::from_parts(parts, Bytes::from(buf)))
}
