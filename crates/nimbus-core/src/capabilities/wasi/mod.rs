//! All of WASI 0.2, denied by default, so the components standard
//! toolchains build (componentize-py, componentize-js, cargo) deploy as
//! they are: `wasi:io`, clocks, random, cli (an empty environment, no
//! arguments, no stdin; stdout and stderr captured per invocation; `exit`
//! ends the invocation with its code recorded), the filesystem — which has
//! no directories at all unless the function is granted one
//! (`directory`: the tenant's own, at `/data`, sandboxed by cap-std) — and
//! sockets, every use of which is refused and counted (`sockets.rs`).
//!
//! The filesystem and sockets live here rather than in capabilities of their
//! own because wasmtime-wasi keeps them inside the one `WasiCtx` built per
//! invocation.

mod files;
mod sockets;

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::cli::{WasiCli, WasiCliCtxView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksCtxView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::random::{WasiRandom, WasiRandomCtx};
use wasmtime_wasi_io::bindings::wasi::io;

use crate::capability::{Capability, DeployCx, Holds, InvokeCx};
use crate::error::Error;
use crate::logs::{CapturedStream, Logs};
use crate::usage::UsageRecord;

pub(crate) struct Wasi {
    ctx: WasiCtx,
    stdout: CapturedStream,
    stderr: CapturedStream,
    /// Socket uses and paths outside a granted directory refused.
    denied: u64,
    /// The function's granted directory, shared with its other invocations.
    granted: Option<wasmtime_wasi::filesystem::Dir>,
}

impl Capability for Wasi {
    /// The tenant's directory, preopened at `/data`, if granted: opened
    /// once at deploy.
    type Grant = Option<wasmtime_wasi::filesystem::Dir>;
    const INTERFACES: &'static [&'static str] = &[
        "wasi:io/error",
        "wasi:io/poll",
        "wasi:io/streams",
        "wasi:clocks/wall-clock",
        "wasi:clocks/monotonic-clock",
        "wasi:random/random",
        "wasi:random/insecure",
        "wasi:random/insecure-seed",
        "wasi:cli/environment",
        "wasi:cli/exit",
        "wasi:cli/stdin",
        "wasi:cli/stdout",
        "wasi:cli/stderr",
        "wasi:cli/terminal-input",
        "wasi:cli/terminal-output",
        "wasi:cli/terminal-stdin",
        "wasi:cli/terminal-stdout",
        "wasi:cli/terminal-stderr",
        "wasi:filesystem/types",
        "wasi:filesystem/preopens",
        "wasi:sockets/network",
        "wasi:sockets/instance-network",
        "wasi:sockets/tcp",
        "wasi:sockets/tcp-create-socket",
        "wasi:sockets/udp",
        "wasi:sockets/udp-create-socket",
        "wasi:sockets/ip-name-lookup",
    ];

    fn add_to_linker<T: Holds<Self>>(l: &mut Linker<T>) -> wasmtime::Result<()> {
        fn table<T: Holds<Wasi>>(t: &mut T) -> &mut ResourceTable {
            t.parts().1
        }
        fn clocks<T: Holds<Wasi>>(t: &mut T) -> WasiClocksCtxView<'_> {
            let (w, table) = t.parts();
            WasiClocksCtxView {
                ctx: w.ctx.clocks(),
                table,
            }
        }
        fn random<T: Holds<Wasi>>(t: &mut T) -> &mut WasiRandomCtx {
            t.parts().0.ctx.random()
        }
        fn cli<T: Holds<Wasi>>(t: &mut T) -> WasiCliCtxView<'_> {
            let (w, table) = t.parts();
            WasiCliCtxView {
                ctx: w.ctx.cli(),
                table,
            }
        }
        fn fs<T: Holds<Wasi>>(t: &mut T) -> WasiFilesystemCtxView<'_> {
            let (w, table) = t.parts();
            WasiFilesystemCtxView {
                ctx: w.ctx.filesystem(),
                table,
            }
        }
        io::error::add_to_linker::<T, HasTable>(l, table)?;
        io::poll::add_to_linker::<T, HasTable>(l, table)?;
        io::streams::add_to_linker::<T, HasTable>(l, table)?;
        clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, clocks)?;
        clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, clocks)?;
        random::random::add_to_linker::<T, WasiRandom>(l, random)?;
        random::insecure::add_to_linker::<T, WasiRandom>(l, random)?;
        random::insecure_seed::add_to_linker::<T, WasiRandom>(l, random)?;
        cli::environment::add_to_linker::<T, WasiCli>(l, cli)?;
        cli::exit::add_to_linker::<T, WasiCli>(l, cli)?;
        cli::stdin::add_to_linker::<T, WasiCli>(l, cli)?;
        cli::stdout::add_to_linker::<T, WasiCli>(l, cli)?;
        cli::stderr::add_to_linker::<T, WasiCli>(l, cli)?;
        cli::terminal_input::add_to_linker::<T, WasiCli>(l, cli)?;
        cli::terminal_output::add_to_linker::<T, WasiCli>(l, cli)?;
        cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, cli)?;
        cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, cli)?;
        cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, cli)?;
        filesystem::types::add_to_linker::<T, WasiFilesystem>(l, fs)?;
        files::add_to_linker(l)?;
        sockets::add_to_linker(l)
    }

    async fn grant(cx: &DeployCx<'_>) -> Result<Self::Grant, Error> {
        if !cx.spec.directory {
            return Ok(None);
        }
        let Some(data_dir) = &cx.services.data_dir else {
            return Err(Error::InvalidComponent(format!(
                "function `{}` is granted a directory, but the host has no data_dir",
                cx.function
            )));
        };
        let dir = data_dir.join("files").join(&**cx.tenant);
        let opened = std::fs::create_dir_all(&dir)
            .and_then(|()| files::open_dir(&dir, wasmtime_wasi::FsPerms::ReadWrite));
        let opened = opened.map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
        Ok(Some(opened))
    }

    fn prepare(directory: &Self::Grant, cx: &InvokeCx<'_>) -> wasmtime::Result<Self> {
        let max_log = cx.services.max_log_bytes;
        let (stdout, stderr) = (
            CapturedStream::new("stdout", max_log),
            CapturedStream::new("stderr", max_log),
        );
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .max_random_size(cx.services.max_random_bytes)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        Ok(Wasi {
            ctx: wasi.build(),
            stdout,
            stderr,
            denied: 0,
            granted: directory.clone(),
        })
    }

    fn finish(self, usage: &mut UsageRecord, logs: &mut Logs) {
        usage.denied_calls += self.denied;
        let (out, out_dropped) = self.stdout.take();
        let (err, err_dropped) = self.stderr.take();
        logs.stdout = out;
        logs.stderr = err;
        logs.dropped_bytes += out_dropped + err_dropped;
    }
}

struct HasTable;
impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}
