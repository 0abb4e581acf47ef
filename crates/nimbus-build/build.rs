//! Embeds the workspace's `wit/` and `sdk/` trees into the library, so a
//! `nimbus` binary copied anywhere still builds against the WIT and SDK it
//! was released with. Generates `$OUT_DIR/embedded.rs`: every file as an
//! `include_bytes!` entry, sorted, and a content hash naming the cache
//! directory they are written to.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Never embedded: Python's bytecode caches and npm's installs are build
/// by-products of whoever ran the SDK from the source tree; dot-files are
/// editors' and tools' state.
fn skipped(name: &str) -> bool {
    name == "__pycache__"
        || name == "node_modules"
        || name.starts_with('.')
        || name.ends_with(".pyc")
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if skipped(&name) {
            continue;
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if kind.is_dir() || (kind.is_symlink() && path.is_dir()) {
            walk(root, &path, files);
        } else if path.is_file() {
            let rel = path.strip_prefix(root).expect("under the root");
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            files.push((rel.join("/"), path));
        }
    }
}

/// FNV-1a, 64 bits: stable across compilers and platforms (std's hasher is
/// not promised to be), and the cache only needs to tell releases apart.
fn fnv(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
}

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest
        .ancestors()
        .nth(2)
        .expect("crates/nimbus-build is two levels below the workspace root")
        .to_path_buf();
    println!("cargo:rerun-if-changed=build.rs");
    let mut files = Vec::new();
    for top in ["wit", "sdk"] {
        let dir = root.join(top);
        assert!(
            dir.is_dir(),
            "nimbus-build embeds {}, which is missing",
            dir.display()
        );
        // A directory is scanned recursively by cargo: a new or edited file
        // anywhere below it rebuilds the embedding.
        println!("cargo:rerun-if-changed={}", dir.display());
        walk(&root, &dir, &mut files);
    }
    files.sort();
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut code = String::from(
        "/// Every embedded file: path relative to the workspace root, bytes.\npub(crate) static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, path) in &files {
        let bytes =
            std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        fnv(&mut hash, &(rel.len() as u64).to_le_bytes());
        fnv(&mut hash, rel.as_bytes());
        fnv(&mut hash, &(bytes.len() as u64).to_le_bytes());
        fnv(&mut hash, &bytes);
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .expect("write to a String");
    }
    code.push_str("];\n");
    writeln!(code, "/// Hash of [`FILES`] (paths and contents).\npub(crate) const HASH: &str = \"{hash:016x}\";").expect("write to a String");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("embedded.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
