//! Compiled components kept on disk, so a component is compiled once and
//! reused by every later deploy of the same bytes, in this process or the
//! next one (an 18 MB componentize-py component takes 8 s to compile in a
//! release build, about a minute in a debug one; loading its artifact takes
//! milliseconds).
//!
//! Layout of the cache directory, one entry per (component, engine):
//!
//! - `<key>.cwasm`: the artifact (`Component::serialize`), where `<key>` is
//!   the hex sha256 of the component's sha256 followed by the sha256 of the
//!   engine's [`Engine::precompile_compatibility_hash`] (wasmtime version,
//!   target, compiler flags, tunables such as fuel and stack size). The key
//!   is always computed here from the bytes being deployed; no name from
//!   elsewhere is trusted.
//! - `<key>.crc32`: the CRC-32 of the key followed by the artifact as
//!   written, in hex. A checksum, not a cryptographic digest: it guards
//!   against torn writes, flipped bits and entries moved under another
//!   name, which is all a digest beside the file could do (whoever can
//!   write this 0700 directory can write a matching sha256 too), and it
//!   checks a 37 MB artifact in 11-16 ms where sha256 took 34–53 ms, the
//!   largest part of a restart's first response (`benches/restart.sh`).
//!   An artifact that does not hash to it (a torn write after a
//!   crash, a flipped bit, another entry's files copied over this one's) is
//!   never loaded: the component is compiled again and the entry rewritten.
//! - `<key>.lock`: held (`flock`) while one process compiles that entry, so
//!   concurrent deploys of one component, by hosts in one process or in
//!   several, compile it once and the others load the result.
//!
//! Files are written to a temporary file in the directory and renamed into
//! place, so a reader sees a whole file or none, and a file a host has
//! mapped is never modified under it (a rename replaces the inode).
//!
//! Nothing here ever fails a deploy: an unreadable, corrupt or incompatible
//! entry, or a directory that cannot be written, means compiling as if
//! there were no cache.

use std::fs::File;
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::metrics::Metrics;

/// Compiled artifacts under one directory, for one engine.
#[derive(Debug)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    /// sha256 of the engine's compatibility hash.
    engine: [u8; 32],
}

impl CompileCache {
    /// Opens (creating it if needed) the cache directory for `engine`.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            // Artifacts are machine code this host will run: only its own
            // user may write them.
            builder.mode(0o700);
        }
        builder.create(dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine: hasher.0.finalize().into(),
        })
    }

    fn key(&self, bytes: &[u8]) -> String {
        self.key_of_digest(&Sha256::digest(bytes).into())
    }

    /// The cached component whose bytes hash to `component_sha256`, if the
    /// entry is whole and loads (not counted in the metrics: the caller
    /// counts the hit when it uses it). Blocking.
    pub(crate) fn load_digest(
        &self,
        engine: &Engine,
        component_sha256: &[u8; 32],
    ) -> Option<Component> {
        self.load(engine, &self.key_of_digest(component_sha256))
    }

    fn key_of_digest(&self, component: &[u8; 32]) -> String {
        let mut h = Sha256::new();
        h.update(component);
        h.update(self.engine);
        hex(&h.finalize())
    }

    /// The entry's artifact, if it is there, whole, and loads into `engine`.
    fn load(&self, engine: &Engine, key: &str) -> Option<Component> {
        let artifact = self.dir.join(format!("{key}.cwasm"));
        let expected = match std::fs::read_to_string(self.dir.join(format!("{key}.crc32"))) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(%key, "compile cache: cannot read the artifact's digest: {e}");
                return None;
            }
        };
        match file_digest(key, &artifact) {
            Ok(actual) if actual == expected.trim() => {}
            Ok(_) => {
                tracing::warn!(%key, "compile cache: the artifact does not match its digest; compiling again");
                return None;
            }
            Err(e) => {
                tracing::warn!(%key, "compile cache: cannot read the artifact: {e}");
                return None;
            }
        }
        // SAFETY: `deserialize_file` runs the file's machine code, so it must
        // be an artifact wasmtime produced and must not change while mapped.
        // Only files this host wrote are loaded: they live in its own cache
        // directory (created 0700), are named by the hash of the component
        // and engine computed above from the bytes being deployed (never a
        // name from tenant input), and their contents were just checked
        // against the digest written beside them. Entries are only ever
        // replaced by rename, never modified in place, so a mapped file
        // keeps its contents. wasmtime itself refuses an artifact from
        // another version or engine configuration.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &artifact) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(%key, "compile cache: the artifact does not load ({e:#}); compiling again");
                None
            }
        }
    }

    /// Writes `component` as the entry `key`: artifact first, then its
    /// digest, each renamed into place.
    fn store(&self, key: &str, component: &Component) -> wasmtime::Result<()> {
        let artifact = component.serialize()?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(key.as_bytes());
        crc.update(&artifact);
        let digest = format!("{:08x}", crc.finalize());
        self.write(&format!("{key}.cwasm"), &artifact)?;
        self.write(&format!("{key}.crc32"), digest.as_bytes())?;
        Ok(())
    }

    fn write(&self, name: &str, contents: &[u8]) -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        tmp.write_all(contents)?;
        // No fsync: a torn file after a power loss fails its digest check
        // and is recompiled, which is all a sync would have bought.
        tmp.persist(self.dir.join(name)).map_err(|e| e.error)?;
        Ok(())
    }

    /// Holds `<key>.lock` until dropped; `None` if it cannot be taken (then
    /// the caller compiles without it).
    fn lock(&self, key: &str) -> Option<File> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(format!("{key}.lock")))
            .and_then(|f| f.lock().map(|()| f));
        match file {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(%key, "compile cache: cannot lock the entry: {e}");
                None
            }
        }
    }
}

/// The component for `bytes`: from `cache` if it holds it, else compiled
/// (and then stored there). Counts a cache hit or a compilation in
/// `metrics`. Blocking: call it off the async runtime.
pub(crate) fn load_or_compile(
    engine: &Engine,
    cache: Option<&CompileCache>,
    bytes: &[u8],
    metrics: &Metrics,
) -> wasmtime::Result<Component> {
    let Some(cache) = cache else {
        metrics.compiled();
        return Component::new(engine, bytes);
    };
    let key = cache.key(bytes);
    if let Some(component) = cache.load(engine, &key) {
        metrics.cache_hit();
        return Ok(component);
    }
    let _lock = cache.lock(&key);
    // Another deploy may have compiled it while this one waited.
    if let Some(component) = cache.load(engine, &key) {
        metrics.cache_hit();
        return Ok(component);
    }
    metrics.compiled();
    let component = Component::new(engine, bytes)?;
    if let Err(e) = cache.store(&key, &component) {
        tracing::warn!(%key, "compile cache: cannot store the artifact: {e:#}");
    }
    Ok(component)
}

/// The component whose bytes hash to `component_sha256`, if `cache`
/// holds its artifact for this engine: a restart loads what the registry
/// recorded without reading (or hashing) the component's bytes. Counts a
/// cache hit. Blocking.
pub(crate) fn load_by_digest(
    engine: &Engine,
    cache: Option<&CompileCache>,
    component_sha256: &[u8; 32],
    metrics: &Metrics,
) -> Option<Component> {
    let cache = cache?;
    let component = cache.load(engine, &cache.key_of_digest(component_sha256))?;
    metrics.cache_hit();
    Some(component)
}

/// The checksum `<key>.crc32` must hold for the artifact at `path`.
///
/// The artifact is mapped with `MAP_POPULATE` rather than read: on this
/// project's VM a fresh process reading a 37 MB artifact through a buffer
/// took 31-37 ms, mapping it 11-16 ms (one call fills the page tables from
/// the page cache and fetches any pages evicted since, instead of 37
/// copies), and the pages are then resident for `deserialize_file`'s own
/// mapping.
fn file_digest(key: &str, path: &Path) -> std::io::Result<String> {
    let file = File::open(path)?;
    let len = usize::try_from(file.metadata()?.len())
        .map_err(|_| std::io::Error::other("artifact larger than the address space"))?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(key.as_bytes());
    if len > 0 {
        let map = ReadOnlyMap::new(&file, len)?;
        hasher.update(map.bytes());
    }
    Ok(format!("{:08x}", hasher.finalize()))
}

/// A read-only shared mapping of a whole file, unmapped on drop.
struct ReadOnlyMap {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

impl ReadOnlyMap {
    fn new(file: &File, len: usize) -> std::io::Result<Self> {
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: a fresh mapping chosen by the kernel (null hint), so it
        // overlaps nothing of ours. Reading it is sound because cache
        // entries are only ever replaced by rename, never truncated or
        // written in place, so the mapped inode keeps its length and bytes.
        #[allow(unsafe_code)]
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED | MapFlags::POPULATE,
                file,
                0,
            )
        }?;
        Ok(Self { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is a live PROT_READ mapping owned by
        // `self` (see `new` for why its contents cannot change).
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len)
        }
    }
}

impl Drop for ReadOnlyMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; no borrow of it
        // outlives `self`.
        #[allow(unsafe_code)]
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Feeds a `Hash` value into sha256, for a fingerprint that is stable
/// across processes and Rust versions (std's `DefaultHasher` is neither
/// promised to be).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(fuel: bool) -> Engine {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(fuel).wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    #[test]
    fn another_engine_configuration_is_another_entry_and_refuses_the_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = wat::parse_str("(component (core module (func (export \"f\"))))").unwrap();
        let (fuel, plain) = (engine(true), engine(false));
        let a = CompileCache::open(dir.path(), &fuel).unwrap();
        let b = CompileCache::open(dir.path(), &plain).unwrap();
        let (ka, kb) = (a.key(&bytes), b.key(&bytes));
        assert_ne!(ka, kb, "the engine's configuration is part of the key");
        let again = CompileCache::open(dir.path(), &engine(true)).unwrap();
        assert_eq!(again.key(&bytes), ka, "the same engine, the same key");

        a.store(&ka, &Component::new(&fuel, &bytes).unwrap())
            .unwrap();
        assert!(a.load(&fuel, &ka).is_some());
        assert!(
            b.load(&plain, &kb).is_none(),
            "nothing stored for this engine"
        );

        // The fuel engine's artifact under the other engine's key, with a
        // digest that matches: wasmtime itself refuses it.
        std::fs::copy(
            dir.path().join(format!("{ka}.cwasm")),
            dir.path().join(format!("{kb}.cwasm")),
        )
        .unwrap();
        let digest = file_digest(&kb, &dir.path().join(format!("{kb}.cwasm"))).unwrap();
        std::fs::write(dir.path().join(format!("{kb}.crc32")), digest).unwrap();
        assert!(
            b.load(&plain, &kb).is_none(),
            "a foreign artifact is not loaded"
        );
    }
}
