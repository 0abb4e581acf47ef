//! The WIT packages and SDKs compiled into the binary (see `build.rs`),
//! written once per content hash to a cache directory the toolchains can
//! read: componentize-py and componentize-js take directories, not bytes.

use std::path::{Path, PathBuf};

use crate::Error;

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// Written last: a directory without it was left half-written by a process
/// that died, and is written again.
const COMPLETE: &str = ".complete";

/// The embedded tree's content hash: names the cache directory, so a newer
/// binary never reads an older binary's SDK.
pub fn hash() -> &'static str {
    HASH
}

/// Whether the binary embeds `path` (relative to the workspace root, `/`
/// separated), e.g. `sdk/python/nimbus_app.py`.
pub(crate) fn has(path: &str) -> bool {
    FILES.iter().any(|(p, _)| *p == path)
}

/// A directory holding the embedded `wit/` and `sdk/`: the first of
/// `$XDG_CACHE_HOME/nimbus`, `~/.cache/nimbus` and the temporary directory
/// that can be written, with a subdirectory `sdk-<hash>`.
pub fn root() -> Result<PathBuf, Error> {
    let mut bases = Vec::new();
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from)
        && xdg.is_absolute()
    {
        bases.push(xdg.join("nimbus"));
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
        && home.is_absolute()
    {
        bases.push(home.join(".cache/nimbus"));
    }
    bases.push(std::env::temp_dir().join("nimbus-cache"));
    let mut failures = Vec::new();
    for base in &bases {
        match materialize(base) {
            Ok(dir) => return Ok(dir),
            Err(e) => failures.push(format!("{}: {e}", base.display())),
        }
    }
    Err(Error::Cache(failures.join("; ")))
}

fn materialize(base: &Path) -> std::io::Result<PathBuf> {
    let dir = base.join(format!("sdk-{HASH}"));
    if dir.join(COMPLETE).is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(base)?;
    // Written beside its final name and renamed into place, so concurrent
    // builds never read a partial tree.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".sdk-{HASH}-"))
        .tempdir_in(base)?;
    for (rel, bytes) in FILES {
        let path = staging.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
    }
    std::fs::write(staging.path().join(COMPLETE), HASH)?;
    if dir.exists() && !dir.join(COMPLETE).is_file() {
        // Files deleted by hand: replaced whole.
        std::fs::remove_dir_all(&dir)?;
    }
    match std::fs::rename(staging.path(), &dir) {
        Ok(()) => {
            // Renamed away: nothing left for the guard to delete.
            let _ = staging.keep();
            Ok(dir)
        }
        // Another build won the race; its tree is the same bytes.
        Err(_) if dir.join(COMPLETE).is_file() => Ok(dir),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_the_world_and_excludes_caches() {
        assert!(has("wit/world.wit"));
        assert!(FILES.iter().all(|(p, _)| !p.contains("__pycache__")
            && !p.contains("node_modules")
            && !p.ends_with(".pyc")));
    }

    #[test]
    fn materializes_every_file_once() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = materialize(base.path()).expect("materialize");
        for (rel, bytes) in FILES {
            assert_eq!(&std::fs::read(dir.join(rel)).expect(rel), bytes, "{rel}");
        }
        // A second call reuses the directory.
        std::fs::write(dir.join("wit/marker"), b"kept").expect("write");
        assert_eq!(materialize(base.path()).expect("again"), dir);
        assert!(dir.join("wit/marker").is_file());
    }
}
