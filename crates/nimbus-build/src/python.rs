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
    let mut cmd = crate::command(TOOL.name, dir);
    // No __pycache__ written into the user's directory or the cache.
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
            cmd.args(["-w", APP_WORLD, "componentize", "-p"])
                .arg(dir)
                .arg("-p")
                .arg(root.join("sdk/python"))
                .arg("nimbus_app");
        }
        Some(world) => {
            progress.step(&format!(
                "componentize-py {}: {} → {world} (no SDK)",
                crate::COMPONENTIZE_PY,
                project.entry
            ));
            cmd.args(["-w", world, "componentize", "-p"])
                .arg(dir)
                .arg(module);
        }
    }
    cmd.arg("-o").arg(out);
    run::run(TOOL, cmd, Stdout::Show, progress)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_install_line_names_the_pinned_release() {
        assert_eq!(
            super::TOOL.install,
            format!("pip install componentize-py=={}", crate::COMPONENTIZE_PY)
        );
    }
}
