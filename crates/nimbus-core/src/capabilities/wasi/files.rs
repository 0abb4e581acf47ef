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
//! delegate to them for every other descriptor. `get-directories` is ours
//! too: both directories are opened once (the root per process, `/data` at
//! deploy) and each invocation's table gets a clone of the descriptor,
//! where wasmtime-wasi's preopens would open them again per invocation.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::FsPerms;
use wasmtime_wasi::filesystem::{
    Descriptor as HostDescriptorState, Dir, OpenMode, WasiFilesystemCtxView,
};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, Host as _, HostDescriptor, NewTimestamp, OpenFlags,
    PathFlags,
};

use super::Wasi;
use crate::capability::Holds;

/// The guest path of the denied root.
pub(super) const ROOT: &str = "/";

/// The guest path of a granted directory.
pub(super) const DATA: &str = "/data";

/// The interface versions wasmtime-wasi 48 links (guests' 0.2.x imports
/// resolve to them).
const TYPES: &str = "wasi:filesystem/types@0.2.12";
const PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";

/// The denied root, opened once per process and shared by every
/// invocation: an `open` and a `close` per invocation were 4 % of a loaded
/// `nimbus serve`'s CPU. Sharing is sound because every operation through
/// it is refused, and it is an empty directory made per process.
fn root() -> std::io::Result<&'static Dir> {
    static ROOT_DIR: OnceLock<Dir> = OnceLock::new();
    if let Some(dir) = ROOT_DIR.get() {
        return Ok(dir);
    }
    let path = std::env::temp_dir().join(format!("nimbus-denied-root-{}", std::process::id()));
    std::fs::create_dir_all(&path)?;
    let dir = open_dir(&path, FsPerms::ReadOnly)?;
    Ok(ROOT_DIR.get_or_init(|| dir))
}

/// A directory as a preopen descriptor, opened once (at deploy for a
/// granted one) and cloned into each invocation's table.
pub(super) fn open_dir(path: &Path, perms: FsPerms) -> std::io::Result<Dir> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::DIRECTORY.bits() as i32)
        .open(path)?;
    let mode = match perms {
        FsPerms::ReadOnly => OpenMode::READ,
        FsPerms::ReadWrite => OpenMode::READ | OpenMode::WRITE,
    };
    Ok(Dir::new(file, perms, mode, false))
}

/// Whether `fd` is the denied root.
fn is_root(table: &ResourceTable, fd: u32) -> bool {
    let fd: Resource<Descriptor> = Resource::new_borrow(fd);
    match (table.get(&fd), root()) {
        (Ok(HostDescriptorState::Dir(d)), Ok(root)) => Arc::ptr_eq(&d.dir, &root.dir),
        _ => false,
    }
}

/// `get-directories`: the denied root at `/`, then the granted directory
/// at `/data`, if any.
fn get_directories(
    w: &Wasi,
    table: &mut ResourceTable,
) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
    let mut dirs = Vec::with_capacity(2);
    let root = root()?.clone();
    dirs.push((
        table.push(HostDescriptorState::Dir(root))?,
        ROOT.to_string(),
    ));
    if let Some(data) = &w.granted {
        let data = HostDescriptorState::Dir(data.clone());
        dirs.push((table.push(data)?, DATA.to_string()));
    }
    Ok(dirs)
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
                        if is_root(table, rep) {
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
    linker.instance(PREOPENS)?.func_wrap(
        "get-directories",
        |mut store: StoreContextMut<'_, T>, ()| {
            let (w, table) = store.data_mut().parts();
            Ok((get_directories(w, table)?,))
        },
    )?;
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
