//! The filesystem's denied root. Without any preopen a guest's libc fails
//! `open("/etc/passwd")` by itself, so the host never sees the attempt and
//! cannot count it. Every invocation therefore gets a preopen at `/` on an
//! empty host directory, and every path operation through it (`open-at`,
//! `stat-at`, `readdir`, …) fails with `access` — a Python
//! `PermissionError`, a JS exception — and is counted in `denied_calls`. A
//! granted directory (`/data`) is a separate, longer preopen, which libc
//! prefers for its paths, so granted access is untouched.
//!
//! The guarded functions shadow wasmtime-wasi's own in the linker and
//! delegate to them for every other descriptor.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::filesystem::{Descriptor as HostDescriptorState, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, Host as _, HostDescriptor, NewTimestamp, OpenFlags,
    PathFlags,
};

use super::Wasi;
use crate::capability::Holds;

/// The guest path of the denied root.
pub(super) const ROOT: &str = "/";

/// The interface version wasmtime-wasi 48 links (guests' 0.2.x imports
/// resolve to it).
const TYPES: &str = "wasi:filesystem/types@0.2.12";

/// The empty host directory behind the denied root. Nothing can be written
/// to it through the root (every operation is refused), and a fresh one is
/// made per process.
pub(super) fn empty_root() -> std::io::Result<&'static PathBuf> {
    static ROOT_DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = ROOT_DIR.get() {
        return Ok(dir);
    }
    let dir = std::env::temp_dir().join(format!("nimbus-denied-root-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(ROOT_DIR.get_or_init(|| dir))
}

/// Per invocation: which open directory is the root, found on first use.
#[derive(Default)]
pub(super) struct Root {
    dir: Option<Arc<std::fs::File>>,
}

/// Whether `fd` is the denied root; `w`'s preopens are read once to learn
/// which directory that is.
fn is_root(w: &mut Wasi, table: &ResourceTable, fd: u32) -> wasmtime::Result<bool> {
    if w.root.dir.is_none() {
        // The preopens' directories, as the guest's own `get-directories`
        // would see them, pushed into a scratch table.
        let mut scratch = ResourceTable::new();
        let mut view = WasiFilesystemCtxView {
            ctx: w.ctx.filesystem(),
            table: &mut scratch,
        };
        for (d, path) in view.get_directories()? {
            if path == ROOT
                && let HostDescriptorState::Dir(dir) = scratch.get(&d)?
            {
                w.root.dir = Some(dir.dir.clone());
            }
        }
    }
    let fd: Resource<Descriptor> = Resource::new_borrow(fd);
    Ok(match (table.get(&fd), &w.root.dir) {
        (Ok(HostDescriptorState::Dir(d)), Some(root)) => Arc::ptr_eq(&d.dir, root),
        _ => false,
    })
}

/// Shadows one `descriptor` method: refused and counted when any of the
/// named descriptors is the root, else wasmtime-wasi's own.
macro_rules! guard {
    ($l:ident, $name:literal, $method:ident, ($($arg:ident: $ty:ty),*), [$($fd:ident),+]) => {
        $l.func_wrap_async(
            $name,
            |mut store: StoreContextMut<'_, T>, ($($arg,)*): ($($ty,)*)| {
                Box::new(async move {
                    let (w, table) = store.data_mut().parts();
                    for rep in [$($fd.rep()),+] {
                        if is_root(w, table, rep)? {
                            w.denied += 1;
                            tracing::info!(concat!($name, " denied: no directory is granted there"));
                            return Ok((Err(ErrorCode::Access),));
                        }
                    }
                    let mut view = WasiFilesystemCtxView {
                        ctx: w.ctx.filesystem(),
                        table,
                    };
                    Ok((match HostDescriptor::$method(&mut view, $($arg),*).await {
                        Ok(v) => Ok(v),
                        Err(e) => Err(view.convert_error_code(e)?),
                    },))
                })
            },
        )?;
    };
}

pub(super) fn add_to_linker<T: Holds<Wasi>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    {
        let mut l = linker.instance(TYPES)?;
        type Fd = Resource<Descriptor>;
        guard!(l, "[method]descriptor.open-at", open_at,
            (fd: Fd, pf: PathFlags, path: String, of: OpenFlags, fl: DescriptorFlags), [fd]);
        guard!(l, "[method]descriptor.stat-at", stat_at,
            (fd: Fd, pf: PathFlags, path: String), [fd]);
        guard!(l, "[method]descriptor.metadata-hash-at", metadata_hash_at,
            (fd: Fd, pf: PathFlags, path: String), [fd]);
        guard!(l, "[method]descriptor.set-times-at", set_times_at,
            (fd: Fd, pf: PathFlags, path: String, a: NewTimestamp, m: NewTimestamp), [fd]);
        guard!(l, "[method]descriptor.readlink-at", readlink_at, (fd: Fd, path: String), [fd]);
        guard!(l, "[method]descriptor.create-directory-at", create_directory_at,
            (fd: Fd, path: String), [fd]);
        guard!(l, "[method]descriptor.remove-directory-at", remove_directory_at,
            (fd: Fd, path: String), [fd]);
        guard!(l, "[method]descriptor.unlink-file-at", unlink_file_at,
            (fd: Fd, path: String), [fd]);
        guard!(l, "[method]descriptor.symlink-at", symlink_at,
            (fd: Fd, old: String, new: String), [fd]);
        guard!(l, "[method]descriptor.rename-at", rename_at,
            (fd: Fd, old: String, to: Fd, new: String), [fd, to]);
        guard!(l, "[method]descriptor.link-at", link_at,
            (fd: Fd, pf: PathFlags, old: String, to: Fd, new: String), [fd, to]);
        guard!(l, "[method]descriptor.read-directory", read_directory, (fd: Fd), [fd]);
    }
    linker.allow_shadowing(false);
    Ok(())
}
