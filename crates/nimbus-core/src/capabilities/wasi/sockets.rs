//! `wasi:sockets`, linked so standard toolchains' components (CPython's
//! `socket` module imports it) deploy, with every use denied: creating a
//! TCP or UDP socket and resolving a name fail with `access-denied` inside
//! the guest (a Python `PermissionError`, a JS exception) and are counted in
//! the usage record's `denied_calls`. No host socket is ever opened, so a
//! guest cannot spend the host's file descriptors.

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddressFamily, Network};
use wasmtime_wasi::p2::bindings::sockets::{
    instance_network, ip_name_lookup, network, tcp, tcp_create_socket, udp, udp_create_socket,
};
use wasmtime_wasi::p2::{SocketError, SocketResult, TcpSocket, UdpSocket};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsCtxView};
use wasmtime_wasi_io::poll::DynPollable;

use super::Wasi;
use crate::capability::Holds;

/// The socket interfaces' view: wasmtime's own context (for the resources,
/// which never come to exist) and the invocation's denial count.
pub(super) struct Denied<'a> {
    ctx: WasiSocketsCtxView<'a>,
    denied: &'a mut u64,
}

impl Denied<'_> {
    fn deny(&mut self, what: &str) -> ErrorCode {
        *self.denied += 1;
        tracing::info!("{what} denied: sockets are not granted");
        ErrorCode::AccessDenied
    }
}

struct DeniedSockets;
impl HasData for DeniedSockets {
    type Data<'a> = Denied<'a>;
}

pub(super) fn add_to_linker<T: Holds<Wasi>>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    fn ctx<T: Holds<Wasi>>(t: &mut T) -> WasiSocketsCtxView<'_> {
        let (w, table) = t.parts();
        WasiSocketsCtxView {
            ctx: w.ctx.sockets(),
            table,
        }
    }
    fn denied<T: Holds<Wasi>>(t: &mut T) -> Denied<'_> {
        let (w, table) = t.parts();
        Denied {
            ctx: WasiSocketsCtxView {
                ctx: w.ctx.sockets(),
                table,
            },
            denied: &mut w.denied,
        }
    }
    let options = network::LinkOptions::default();
    tcp::add_to_linker::<T, WasiSockets>(l, ctx)?;
    udp::add_to_linker::<T, WasiSockets>(l, ctx)?;
    network::add_to_linker::<T, WasiSockets>(l, &options, ctx)?;
    instance_network::add_to_linker::<T, WasiSockets>(l, ctx)?;
    tcp_create_socket::add_to_linker::<T, DeniedSockets>(l, denied)?;
    udp_create_socket::add_to_linker::<T, DeniedSockets>(l, denied)?;
    ip_name_lookup::add_to_linker::<T, DeniedSockets>(l, denied)
}

// The interfaces below `use` network's types, so their views implement it.
impl network::Host for Denied<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.ctx, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime_wasi::p2::bindings::io::error::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.ctx, err)
    }
}

impl network::HostNetwork for Denied<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.ctx, this)
    }
}

impl tcp_create_socket::Host for Denied<'_> {
    fn create_tcp_socket(&mut self, _: IpAddressFamily) -> SocketResult<Resource<TcpSocket>> {
        Err(self.deny("TCP socket").into())
    }
}

impl udp_create_socket::Host for Denied<'_> {
    async fn create_udp_socket(&mut self, _: IpAddressFamily) -> SocketResult<Resource<UdpSocket>> {
        Err(self.deny("UDP socket").into())
    }
}

impl ip_name_lookup::Host for Denied<'_> {
    fn resolve_addresses(
        &mut self,
        _: Resource<Network>,
        _: String,
    ) -> SocketResult<Resource<ip_name_lookup::ResolveAddressStream>> {
        Err(self.deny("name lookup").into())
    }
}

// No stream is ever created (resolving is denied); these only complete the
// interface.
impl ip_name_lookup::HostResolveAddressStream for Denied<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ip_name_lookup::ResolveAddressStream>,
    ) -> SocketResult<Option<network::IpAddress>> {
        ip_name_lookup::HostResolveAddressStream::resolve_next_address(&mut self.ctx, stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        ip_name_lookup::HostResolveAddressStream::subscribe(&mut self.ctx, stream)
    }

    fn drop(
        &mut self,
        stream: Resource<ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<()> {
        ip_name_lookup::HostResolveAddressStream::drop(&mut self.ctx, stream)
    }
}
