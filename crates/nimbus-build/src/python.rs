//! Python: componentize-py, with the Nimbus SDK against the app world, or
//! the user's module alone against `--world`.

use std::path::Path;

use crate::run::{self, Stdout, Tool};
use crate::{APP_WORLD, Error, Options, Progress, Project};

const TOOL: Tool = Tool {
    name: "componentize-py",
    install: concat!("pip install componentize-py==", "0.25.1"),
};

pub(crate) fn build(
    dir: &Path,
    project: &Project,
    out: &Path,
    options: &Options,
    progress: &mut dyn Progress,
) -> Result<(), Error> {
    progress.step(&format!("looking for {}", TOOL.name));
    let found = run::version(TOOL, crate::command(TOOL.name, dir))?;
    crate::check_version(progress, TOOL, &found, crate::COMPONENTIZE_PY);
    let root = crate::sdk_root(progress)?;
    let module = project.entry.trim_end_matches(".py");
    // componentize-py's CPython writes `__pycache__` into every directory
    // on its path while it pre-initializes (PYTHONDONTWRITEBYTECODE does not
    // reach it): it reads copies, so the user's directory and the shared
    // cache stay as they were.
    let scratch = out.parent().unwrap_or(Path::new("."));
    let src = scratch.join("function");
    copy_tree(dir, &src)?;
    let mut cmd = crate::command(TOOL.name, dir);
    cmd.env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("-d")
        .arg(root.join("wit"));
    match &options.world {
        None => {
            if !crate::embedded::has("sdk/python/nimbus_app.py") {
                return Err(Error::Invalid(
                    "this nimbus binary was built without the Python SDK (sdk/python/nimbus_app.py); build with --world to use the component's own bindings".into(),
                ));
            }
            progress.step(&format!(
                "componentize-py {}: {} with the Nimbus SDK → {APP_WORLD}",
                crate::COMPONENTIZE_PY,
                project.entry
            ));
            // The user's directory first: the SDK's entry imports `app` (or
            // `lambda_function`) from it.
            let sdk = scratch.join("sdk");
            copy_tree(&root.join("sdk/python"), &sdk)?;
            cmd.args(["-w", APP_WORLD, "componentize", "-p"])
                .arg(&src)
                .arg("-p")
                .arg(&sdk)
                .arg("nimbus_app");
        }
        Some(world) => {
            progress.step(&format!(
                "componentize-py {}: {} → {world} (no SDK)",
                crate::COMPONENTIZE_PY,
                project.entry
            ));
            cmd.args(["-w", world, "componentize", "-p"])
                .arg(&src)
                .arg(module);
        }
    }
    cmd.arg("-o").arg(out);
    run::run(TOOL, cmd, Stdout::Show, progress)?;
    Ok(())
}

/// Copies the tree at `from` to `to`, following symbolic links, without
/// bytecode caches, version-control and editor state (dot-files) or built
/// components (`nimbus build .` puts one there).
fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to).map_err(Error::io(to))?;
    for entry in std::fs::read_dir(from).map_err(Error::io(from))? {
        let entry = entry.map_err(Error::io(from))?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if text == "__pycache__" || text.starts_with('.') || text.ends_with(".wasm") {
            continue;
        }
        let path = entry.path();
        let dest = to.join(&name);
        if path.is_dir() {
            copy_tree(&path, &dest)?;
        } else if path.is_file() {
            std::fs::copy(&path, &dest).map_err(Error::io(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn copies_sources_without_caches_or_components() {
        let from = tempfile::tempdir().expect("tempdir");
        let f = from.path();
        for file in [
            "app.py",
            "lib/util.py",
            "__pycache__/app.pyc",
            ".git/HEAD",
            "old.wasm",
        ] {
            let path = f.join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, file).expect("write");
        }
        let to = tempfile::tempdir().expect("tempdir");
        let dest = to.path().join("copy");
        super::copy_tree(f, &dest).expect("copy");
        let mut found = Vec::new();
        fn walk(dir: &Path, base: &Path, found: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).expect("read").flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), base, found);
                } else {
                    let rel = e
                        .path()
                        .strip_prefix(base)
                        .expect("under")
                        .display()
                        .to_string();
                    found.push(rel);
                }
            }
        }
        walk(&dest, &dest, &mut found);
        found.sort();
        assert_eq!(found, ["app.py", "lib/util.py"]);
        assert_eq!(
            std::fs::read_to_string(dest.join("lib/util.py")).expect("read"),
            "lib/util.py"
        );
    }

    #[test]
    fn the_install_line_names_the_pinned_release() {
        assert_eq!(
            super::TOOL.install,
            format!("pip install componentize-py=={}", crate::COMPONENTIZE_PY)
        );
    }
}
