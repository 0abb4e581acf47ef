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
    let root = crate::sdk_root(progress)?;
    let mut cmd = crate::command(TOOL.name, dir);
    match &options.world {
        None => {
            return Err(Error::Invalid(
                "the JavaScript SDK is not in this nimbus binary yet; build a standard component with --world wasi:http/proxy@0.2.12".into(),
            ));
        }
        Some(world) => {
            progress.step(&format!(
                "componentize-js {}: {} → {world} (no SDK)",
                crate::COMPONENTIZE_JS,
                project.entry
            ));
            // Without StarlingMonkey's own fetch event and HTTP embedding,
            // the module's explicit `incomingHandler` export serves the
            // world's version of wasi:http.
            cmd.arg(dir.join(&project.entry))
                .arg("-w")
                .arg(root.join("wit"))
                .args(["-n", world, "-d", "http", "-d", "fetch-event", "-o"])
                .arg(out);
        }
    }
    run::run(TOOL, cmd, Stdout::Show, progress)?;
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
    fn the_install_line_names_the_pinned_release() {
        assert!(TOOL.install.ends_with(crate::COMPONENTIZE_JS));
    }
}
