//! The WIT packages and SDKs compiled into the binary (see `build.rs`),
//! written once per content hash to a cache directory the toolchains can
//! read: componentize-py and componentize-js take directories, not bytes.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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

/// A tree no build has used for this long is deleted when another is
/// written: every change of the SDK (each release; each edit in a checkout)
/// writes a new one of about half a megabyte.
const UNUSED_FOR: Duration = Duration::from_secs(14 * 24 * 3600);

fn materialize(base: &Path) -> std::io::Result<PathBuf> {
    let dir = base.join(format!("sdk-{HASH}"));
    if dir.join(COMPLETE).is_file() {
        // The marker's time says when the tree was last used.
        let _ = std::fs::File::options()
            .append(true)
            .open(dir.join(COMPLETE))
            .and_then(|f| f.set_modified(SystemTime::now()));
        return Ok(dir);
    }
    std::fs::create_dir_all(base)?;
    prune(base);
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

/// Deletes the other `sdk-*` trees in `base` unused for [`UNUSED_FOR`]
/// (best effort: a tree another process is writing has no marker yet and
/// is left alone).
fn prune(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("sdk-") || name == format!("sdk-{HASH}") {
            continue;
        }
        let used = std::fs::metadata(entry.path().join(COMPLETE)).and_then(|m| m.modified());
        if let Ok(used) = used
            && used.elapsed().is_ok_and(|age| age > UNUSED_FOR)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
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

    #[test]
    fn trees_unused_for_two_weeks_are_pruned() {
        let base = tempfile::tempdir().expect("tempdir");
        let tree = |name: &str, age: Duration| {
            let dir = base.path().join(name);
            std::fs::create_dir_all(&dir).expect("mkdir");
            let marker = std::fs::File::create(dir.join(COMPLETE)).expect("marker");
            marker
                .set_modified(SystemTime::now() - age)
                .expect("set mtime");
            dir
        };
        let old = tree("sdk-0000000000000001", UNUSED_FOR + Duration::from_secs(60));
        let recent = tree("sdk-0000000000000002", Duration::from_secs(3600));
        let other = base.path().join("unrelated");
        std::fs::create_dir(&other).expect("mkdir");
        let current = materialize(base.path()).expect("materialize");
        assert!(!old.exists(), "unused for over two weeks");
        assert!(recent.exists() && other.exists() && current.exists());
    }
}
