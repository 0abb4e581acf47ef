//! `wasi:http` types and outgoing requests: the `wasi:http/proxy` world's
//! imports. Outbound requests reach only the function's granted hosts
//! (`outbound_hosts`); anything else fails with `HTTP-request-denied`, an
//! error the guest can handle, and is counted. Body bytes are counted as
//! they stream. The same context serves an HTTP function's incoming request
//! ([`OutboundHttp::view`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::BodyExt;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi_http::p2::bindings::LinkOptions;
use wasmtime_wasi_http::p2::bindings::http::{outgoing_handler, types};
use wasmtime_wasi_http::{WasiBody, WasiHttp, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks};

use crate::capability::{Capability, DeployCx, Holds, InvokeCx};
use crate::error::Error;
use crate::logs::Logs;
use crate::usage::UsageRecord;

pub(crate) struct OutboundHttp {
    ctx: WasiHttpCtx,
    hooks: Hooks,
}

impl OutboundHttp {
    /// The `wasi:http` view of the store, for the host's side of an
    /// incoming request.
    pub(crate) fn view<'a>(&'a mut self, table: &'a mut ResourceTable) -> WasiHttpCtxView<'a> {
        WasiHttpCtxView {
            ctx: &mut self.ctx,
            table,
            hooks: &mut self.hooks,
        }
    }
}

impl Capability for OutboundHttp {
    type Grant = Arc<[String]>;
    const INTERFACES: &'static [&'static str] = &["wasi:http/types", "wasi:http/outgoing-handler"];

    fn add_to_linker<T: Holds<Self>>(l: &mut Linker<T>) -> wasmtime::Result<()> {
        fn view<T: Holds<OutboundHttp>>(t: &mut T) -> WasiHttpCtxView<'_> {
            let (http, table) = t.parts();
            http.view(table)
        }
        outgoing_handler::add_to_linker::<T, WasiHttp>(l, view)?;
        types::add_to_linker::<T, WasiHttp>(l, &LinkOptions::default().into(), view)
    }

    async fn grant(cx: &DeployCx<'_>) -> Result<Self::Grant, Error> {
        Ok(cx.spec.outbound_hosts.clone().into())
    }

    fn prepare(allowed: &Self::Grant, _cx: &InvokeCx<'_>) -> wasmtime::Result<Self> {
        Ok(OutboundHttp {
            ctx: WasiHttpCtx::new(),
            hooks: Hooks {
                allowed: allowed.clone(),
                sent: 0,
                denied: 0,
                bytes_sent: Default::default(),
                bytes_received: Default::default(),
            },
        })
    }

    fn finish(self, usage: &mut UsageRecord, _logs: &mut Logs) {
        let h = self.hooks;
        usage.outbound_requests += h.sent;
        usage.outbound_bytes_sent += h.bytes_sent.load(Ordering::Relaxed);
        usage.outbound_bytes_received += h.bytes_received.load(Ordering::Relaxed);
        usage.denied_calls += h.denied;
    }
}

struct Hooks {
    allowed: Arc<[String]>,
    sent: u64,
    denied: u64,
    /// Body bytes sent and received, counted as they stream (the bodies
    /// outlive the hook call).
    bytes_sent: Arc<AtomicU64>,
    bytes_received: Arc<AtomicU64>,
}

/// `body`, counting its data bytes into `counter` as they pass.
fn counted(body: WasiBody, counter: Arc<AtomicU64>) -> WasiBody {
    body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counter.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        frame
    })
    .boxed_unsync()
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ),
    wasmtime_wasi_http::Error,
>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_string();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !host_allowed(&self.allowed, &host, port) {
            self.denied += 1;
            tracing::info!(%host, port, "outbound HTTP denied: host not granted");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        self.sent += 1;
        let request = request.map(|b| counted(b, self.bytes_sent.clone()));
        let received = self.bytes_received.clone();
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(|b| counted(b.boxed_unsync(), received)),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// Whether `allowed` (entries `name` or `name:port`) lets a request reach
/// `host` on `port`. Names compare case-insensitively.
fn host_allowed(allowed: &[String], host: &str, port: u16) -> bool {
    allowed.iter().any(|entry| {
        let with_port = entry
            .rsplit_once(':')
            .and_then(|(name, p)| p.parse::<u16>().ok().map(|p| (name, p)));
        match with_port {
            Some((name, p)) => p == port && name.eq_ignore_ascii_case(host),
            None => entry.eq_ignore_ascii_case(host),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_allow_list_matches_names_and_ports() {
        let allowed = vec!["api.example.com".to_string(), "127.0.0.1:8080".to_string()];
        assert!(host_allowed(&allowed, "api.example.com", 443));
        assert!(host_allowed(&allowed, "API.example.com", 80));
        assert!(host_allowed(&allowed, "127.0.0.1", 8080));
        assert!(!host_allowed(&allowed, "127.0.0.1", 8081));
        assert!(!host_allowed(&allowed, "example.com", 443));
        assert!(!host_allowed(&allowed, "api.example.com.evil", 443));
        assert!(!host_allowed(&[], "api.example.com", 443));
    }
}
