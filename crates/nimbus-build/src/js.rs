//! JavaScript: componentize-js, with the Nimbus SDK against the app world,
//! or the user's module alone against `--world`.

use std::path::Path;

use crate::run::{self, Stdout, Tool};
use crate::{Error, Language, Options, Progress, Project};

const TOOL: Tool = Tool {
    name: "componentize-js",
    install: concat!(
        "npm install -g @bytecodealliance/componentize-js@",
        "0.23.0"
    ),
};

/// The module a JavaScript directory runs: `package.json`'s `main`, else
/// `index.js`.
pub(crate) fn entry(dir: &Path) -> Result<String, Error> {
    let manifest = dir.join("package.json");
    let main = if manifest.is_file() {
        let text = std::fs::read_to_string(&manifest).map_err(Error::io(&manifest))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: not JSON: {e}", manifest.display())))?;
        match json.get("main") {
            None => None,
            Some(serde_json::Value::String(m)) => Some(m.trim_start_matches("./").to_string()),
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "{}: \"main\" is {other}, not a file name",
                    manifest.display()
                )));
            }
        }
    } else {
        None
    };
    let (file, named_by) = match main {
        Some(m) => (m, "package.json's \"main\""),
        None => ("index.js".to_string(), "the default entry"),
    };
    if dir.join(&file).is_file() {
        Ok(file)
    } else {
        Err(Error::MissingEntry {
            dir: dir.to_path_buf(),
            language: Language::JavaScript,
            file: format!("{file} ({named_by})"),
        })
    }
}

/// esbuild bundles the SDK's entry with the function (componentize-js
/// evaluates one module and resolves no package names).
const ESBUILD: Tool = Tool {
    name: "esbuild",
    install: concat!("npm install -g esbuild@", "0.28.2"),
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
    crate::check_version(progress, TOOL, &found, crate::COMPONENTIZE_JS);
    if options.world.is_none() {
        let found = run::version(ESBUILD, crate::command(ESBUILD.name, dir))?;
        crate::check_version(progress, ESBUILD, &found, crate::ESBUILD);
    }
    let root = crate::sdk_root(progress)?;
    let (module, world) = match &options.world {
        Some(world) => {
            progress.step(&format!(
                "componentize-js {}: {} → {world} (no SDK)",
                crate::COMPONENTIZE_JS,
                project.entry
            ));
            (dir.join(&project.entry), world.as_str())
        }
        None => {
            let sdk = root.join("sdk/js");
            if !sdk.join("entry.js").is_file() {
                return Err(Error::Invalid(
                    "this nimbus binary was built without the JavaScript SDK (sdk/js/entry.js); build with --world to use the module's own exports".into(),
                ));
            }
            let bundle = out.with_file_name("bundle.js");
            progress.step(&format!(
                "esbuild {}: {} with the Nimbus SDK → one module",
                crate::ESBUILD,
                project.entry
            ));
            bundle_with_sdk(dir, &sdk, &bundle, progress)?;
            progress.step(&format!(
                "componentize-js {}: the bundle → {}",
                crate::COMPONENTIZE_JS,
                crate::APP_WORLD
            ));
            (bundle, crate::APP_WORLD)
        }
    };
    // Without StarlingMonkey's own fetch event and HTTP embedding, the
    // module's explicit `incomingHandler` export (the SDK's, or the user's
    // with --world) serves the world's version of wasi:http.
    let mut cmd = crate::command(TOOL.name, dir);
    cmd.arg(&module)
        .arg("-w")
        .arg(root.join("wit"))
        .args(["-n", world, "-d", "http", "-d", "fetch-event", "-o"])
        .arg(out);
    run::run(TOOL, cmd, Stdout::Show, progress)?;
    Ok(())
}

/// The recipe of `sdk/js/README.md`: the SDK's `entry.js` imports the
/// function as `__nimbus_user_function__` (esbuild resolves the directory:
/// `package.json` `main`, else `index.js`; npm dependencies from its
/// `node_modules`); `nimbus` and `@aws-sdk/client-s3` are the SDK's; the
/// WIT interfaces stay external for componentize-js to bind.
fn bundle_with_sdk(
    dir: &Path,
    sdk: &Path,
    bundle: &Path,
    progress: &mut dyn Progress,
) -> Result<(), Error> {
    let alias = |name: &str, path: &Path| format!("--alias:{name}={}", path.display());
    let mut cmd = crate::command(ESBUILD.name, dir);
    cmd.arg(sdk.join("entry.js"))
        .args([
            "--bundle",
            "--format=esm",
            // Neither Node's nor a browser's built-ins exist in the guest.
            "--platform=neutral",
            "--main-fields=module,main",
            "--charset=utf8",
            "--log-level=warning",
            "--external:wasi:*",
            "--external:nimbus:*",
            "--external:wasmcloud:*",
        ])
        .arg(alias("__nimbus_user_function__", dir))
        .arg(alias("nimbus", &sdk.join("nimbus.js")))
        .arg(alias("@aws-sdk/client-s3", &sdk.join("s3.js")))
        .arg(format!("--outfile={}", bundle.display()));
    run::run(ESBUILD, cmd, Stdout::Show, progress)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_is_package_json_main_or_index_js() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        assert!(entry(d).is_err());
        std::fs::write(d.join("index.js"), "").expect("write");
        assert_eq!(entry(d).expect("index"), "index.js");
        std::fs::write(d.join("package.json"), r#"{"main": "./src/main.js"}"#).expect("write");
        let err = entry(d).expect_err("main missing");
        assert!(err.to_string().contains("src/main.js"), "{err}");
        std::fs::create_dir(d.join("src")).expect("mkdir");
        std::fs::write(d.join("src/main.js"), "").expect("write");
        assert_eq!(entry(d).expect("main"), "src/main.js");
    }

    #[test]
    fn the_install_lines_name_the_pinned_releases() {
        assert!(TOOL.install.ends_with(crate::COMPONENTIZE_JS));
        assert!(ESBUILD.install.ends_with(crate::ESBUILD));
    }
}
