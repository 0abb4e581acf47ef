//! A standard `wasi:http/proxy` component written with the `wstd` async SDK:
//! it runs unmodified on `wasmtime serve`, Spin and Nimbus's gateway.
//!
//! Any request gets `200 Hello from wstd on Nimbus!`; a path ending in
//! `/echo` gets the request body back, with the request's `content-type`.

use wstd::http::{Body, Error, HeaderName, Request, Response};

const CONTENT_TYPE: HeaderName = HeaderName::from_static("content-type");

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path();
    if path.ends_with("/echo") {
        let content_type = request.headers().get(CONTENT_TYPE).cloned();
        let mut response = Response::new(request.into_body());
        if let Some(content_type) = content_type {
            response.headers_mut().insert(CONTENT_TYPE, content_type);
        }
        return Ok(response);
    }
    Ok(Response::new(
        "Hello from wstd on Nimbus!\n".to_owned().into(),
    ))
}
