//! Rust: `cargo build --release --target wasm32-wasip2` in the crate's
//! directory; the component is the `.wasm` artifact cargo reports for that
//! crate in its JSON messages (wherever the target directory is:
//! `CARGO_TARGET_DIR`, `.cargo/config.toml`, an enclosing workspace).

use std::path::{Path, PathBuf};

use crate::run::{self, Stdout, Tool};
use crate::{Error, Progress, RUST_TARGET};

const CARGO: Tool = Tool {
    name: "cargo",
    install: "rustup (https://rustup.rs), then rustup target add wasm32-wasip2",
};

pub(crate) fn build(dir: &Path, out: &Path, progress: &mut dyn Progress) -> Result<(), Error> {
    progress.step("looking for cargo and the wasm32-wasip2 target");
    run::version(CARGO, crate::command("cargo", dir))?;
    check_target(dir)?;
    progress.step(&format!("cargo build --release --target {RUST_TARGET}"));
    let manifest = dir.join("Cargo.toml");
    let mut cmd = crate::command("cargo", dir);
    cmd.args(["build", "--release", "--target", RUST_TARGET])
        .arg("--manifest-path")
        .arg(&manifest)
        // Diagnostics rendered as usual on stderr; stdout carries only the
        // JSON messages naming the artifacts.
        .arg("--message-format=json-render-diagnostics")
        .env("CARGO_TERM_PROGRESS_WHEN", "never");
    let ran = run::run(CARGO, cmd, Stdout::Collect, progress)?;
    let built = artifact(&manifest, &ran.stdout)?;
    std::fs::copy(&built, out).map_err(Error::io(&built))?;
    Ok(())
}

/// The wasm32-wasip2 standard library is a rustup component; without it
/// cargo fails with "can't find crate for `core`". Asked of rustup in `dir`,
/// so its `rust-toolchain.toml` counts. No rustup (a distribution's Rust):
/// cargo's own error will tell.
fn check_target(dir: &Path) -> Result<(), Error> {
    let Ok(out) = crate::command("rustup", dir)
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(());
    };
    if !out.status.success()
        || String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == RUST_TARGET)
    {
        return Ok(());
    }
    Err(Error::MissingTool {
        tool: format!("the {RUST_TARGET} target"),
        install: format!("rustup target add {RUST_TARGET}"),
    })
}

/// The `.wasm` file of the crate at `manifest` among cargo's
/// `compiler-artifact` messages (a workspace's other members and the
/// dependencies are skipped; a virtual manifest's members all count).
fn artifact(manifest: &Path, messages: &[String]) -> Result<PathBuf, Error> {
    let manifest = std::fs::canonicalize(manifest).map_err(Error::io(manifest))?;
    let mut mine = Vec::new();
    let mut any = Vec::new();
    for line in messages {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let files = msg["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .filter(|f| f.ends_with(".wasm"))
            .map(PathBuf::from);
        let from_here = msg["manifest_path"]
            .as_str()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .is_some_and(|p| p == manifest);
        for file in files {
            if from_here {
                mine.push(file.clone());
            }
            any.push(file);
        }
    }
    let found = if mine.is_empty() { any } else { mine };
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Invalid(format!(
            "{}: cargo built no .wasm: a function crate needs `[lib] crate-type = [\"cdylib\"]` (or a binary)",
            manifest.display()
        ))),
        several => Err(Error::Invalid(format!(
            "{}: cargo built several components ({}); run nimbus build in one crate's directory",
            manifest.display(),
            several
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_crates_own_wasm_from_cargos_messages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "").expect("write");
        let msg = |manifest: &Path, file: &str| {
            serde_json::json!({
                "reason": "compiler-artifact",
                "manifest_path": manifest,
                "filenames": [file],
            })
            .to_string()
        };
        let messages = vec![
            msg(Path::new("/elsewhere/dep/Cargo.toml"), "/t/libdep.rlib"),
            msg(Path::new("/elsewhere/other/Cargo.toml"), "/t/other.wasm"),
            "not json".into(),
            msg(&manifest, "/t/echo.wasm"),
            r#"{"reason":"build-finished","success":true}"#.into(),
        ];
        assert_eq!(
            artifact(&manifest, &messages).expect("found"),
            PathBuf::from("/t/echo.wasm")
        );
        let err = artifact(&manifest, &messages[..1]).expect_err("none");
        assert!(err.to_string().contains("cdylib"), "{err}");
    }
}
