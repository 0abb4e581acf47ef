//! `nimbus build DIR -o OUT.wasm`: a function's source directory into a
//! component Nimbus deploys, with the toolchain of its language.
//!
//! | `DIR` holds | language | toolchain | world |
//! |---|---|---|---|
//! | `app.py` or `lambda_function.py` | Python | componentize-py [`COMPONENTIZE_PY`] (pip) | [`APP_WORLD`] with the Python SDK |
//! | `package.json` or `index.js` | JavaScript | esbuild [`ESBUILD`] and componentize-js [`COMPONENTIZE_JS`] (npm) | [`APP_WORLD`] with the JavaScript SDK |
//! | `Cargo.toml` | Rust | `cargo build --release --target wasm32-wasip2` | the one the crate's bindings target |
//!
//! Python and JavaScript functions are built against [`APP_WORLD`] with the
//! Nimbus SDK, whose entry module imports the user's code (`app.py` or
//! `lambda_function.py`; the `main` of `package.json`, or `index.js`,
//! bundled with the SDK and its npm dependencies by esbuild first, as
//! `sdk/js/README.md` describes). With
//! [`Options::world`] (`--world wasi:http/proxy@0.2.12`) the user's module is
//! the entry itself, built against that world without the SDK: a standard
//! component, as the toolchain's own documentation builds it.
//!
//! The WIT packages (`wit/`) and the SDKs (`sdk/`) are compiled into the
//! binary ([`embedded`]) and written to `$XDG_CACHE_HOME/nimbus/sdk-<hash>`
//! (else `~/.cache/nimbus/…`, else the temporary directory) before a build,
//! so `nimbus build` works wherever the binary is, with the SDK it was
//! released with. Trees no build used for two weeks are deleted.
//!
//! Nothing is written into `DIR` by the Python and JavaScript builds:
//! componentize-py reads a copy of it (its CPython writes `__pycache__`
//! into every directory on its path), esbuild's bundle and the tool's
//! output go to a scratch directory beside `OUT`, renamed to `OUT` when the
//! build succeeds. cargo writes its `target/` as it always does.
//!
//! The output is checked to be a component (not a core module); [`Built`]
//! says its size and how long the build took. A missing toolchain is
//! [`Error::MissingTool`], one line naming the package and version to
//! install; a failed one is [`Error::ToolFailed`] with its output.
//!
//! ```no_run
//! use std::path::Path;
//! let built = nimbus_build::build(
//!     Path::new("guests/python/hello-http"),
//!     Path::new("hello.wasm"),
//!     &nimbus_build::Options::default(),
//!     &mut nimbus_build::Plain,
//! )?;
//! println!("{} bytes in {:?}", built.bytes, built.elapsed);
//! # Ok::<(), nimbus_build::Error>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod embedded;
mod js;
mod python;
mod run;
mod rust;

/// The componentize-py release Python functions are built with (pinned:
/// `.ci/setup` installs exactly this).
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The componentize-js release JavaScript functions are built with (pinned:
/// `.ci/setup` installs exactly this).
pub const COMPONENTIZE_JS: &str = "0.23.0";

/// The esbuild release that bundles a JavaScript function with the SDK
/// (pinned; `.ci/setup` installs exactly this from npm).
pub const ESBUILD: &str = "0.28.2";

/// The world the Python and JavaScript SDKs build against (`wit/world.wit`):
/// every Nimbus service, exporting both the event handler and
/// `wasi:http/incoming-handler`.
pub const APP_WORLD: &str = "nimbus:function/app";

/// The Rust target Nimbus components are compiled for.
pub const RUST_TARGET: &str = "wasm32-wasip2";

/// A function's language, told by the files in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Python,
    JavaScript,
    Rust,
}

impl Language {
    /// Every language, in the order [`detect`] tries them.
    pub const ALL: [Language; 3] = [Language::Python, Language::JavaScript, Language::Rust];

    /// The files whose presence tells the language.
    pub fn markers(self) -> &'static [&'static str] {
        match self {
            Language::Python => &["app.py", "lambda_function.py"],
            Language::JavaScript => &["package.json", "index.js"],
            Language::Rust => &["Cargo.toml"],
        }
    }

    /// The name `--lang` takes: `python`, `js` or `rust`.
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "js",
            Language::Rust => "rust",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
            Language::Rust => "Rust",
        })
    }
}

impl std::str::FromStr for Language {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "python" | "py" => Ok(Language::Python),
            "js" | "javascript" | "node" => Ok(Language::JavaScript),
            "rust" | "rs" => Ok(Language::Rust),
            _ => Err(format!(
                "unknown language {s:?}: expected python, js or rust"
            )),
        }
    }
}

/// How to build.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Build the user's module against this world (e.g.
    /// `wasi:http/proxy@0.2.12`) without the SDK. Python and JavaScript
    /// only: a Rust crate's world is the one its bindings name.
    pub world: Option<String>,
    /// The language, when the directory holds the markers of more than one.
    pub language: Option<Language>,
}

/// What a build reports as it goes. Called on the building thread.
pub trait Progress {
    /// A step begins, e.g. `componentize-py: app.py with the Nimbus SDK → nimbus:function/app`.
    fn step(&mut self, step: &str);
    /// A line the running tool printed.
    fn output(&mut self, line: &str);
    /// Something the user should know that does not stop the build (a
    /// toolchain version other than the pinned one).
    fn warn(&mut self, message: &str);
}

/// Reports nothing.
impl Progress for () {
    fn step(&mut self, _: &str) {}
    fn output(&mut self, _: &str) {}
    fn warn(&mut self, _: &str) {}
}

/// Plain lines on stderr (through `eprintln!`, so a test harness captures
/// them): steps as `[nimbus build] …`, tool output indented.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Progress for Plain {
    fn step(&mut self, step: &str) {
        eprintln!("[nimbus build] {step}");
    }
    fn output(&mut self, line: &str) {
        eprintln!("    {line}");
    }
    fn warn(&mut self, message: &str) {
        eprintln!("[nimbus build] warning: {message}");
    }
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    /// The component written.
    pub output: PathBuf,
    pub language: Language,
    /// What it was built against: [`APP_WORLD`], the `--world` given, or
    /// `None` for Rust (the crate's own).
    pub world: Option<String>,
    /// Size of the component, bytes.
    pub bytes: u64,
    /// Wall time of the whole build.
    pub elapsed: Duration,
}

/// Why a build failed. Each message is one line, except a failed tool's,
/// which carries its output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
    #[error(
        "{dir}: nothing to build: looked for app.py or lambda_function.py (Python), package.json or index.js (JavaScript), Cargo.toml (Rust)",
        dir = .0.display()
    )]
    NothingToBuild(PathBuf),
    #[error(
        "{dir}: holds {found} (more than one language); choose one with --lang python|js|rust",
        dir = .dir.display()
    )]
    Ambiguous { dir: PathBuf, found: String },
    #[error("{dir}: no {file}, which --lang {lang} builds", dir = .dir.display(), lang = .language.name())]
    MissingEntry {
        dir: PathBuf,
        language: Language,
        file: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{tool} not found: install it with {install}")]
    MissingTool { tool: String, install: String },
    #[error("running {tool}: {source}")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} failed ({status}){}", output_block(.output))]
    ToolFailed {
        tool: String,
        /// `exit status 1`, or the signal.
        status: String,
        /// The tool's last lines (stdout and stderr as they came).
        output: Vec<String>,
    },
    #[error("{}: {what}, not a component", .path.display())]
    NotAComponent { path: PathBuf, what: String },
    #[error("writing the embedded WIT and SDK: {0}")]
    Cache(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn output_block(lines: &[String]) -> String {
    if lines.is_empty() {
        " and printed nothing".into()
    } else {
        format!(":\n{}", lines.join("\n"))
    }
}

impl Error {
    /// The first line of the message: for a failed tool, without its output
    /// (for a display that has already shown it as it came).
    pub fn summary(&self) -> String {
        match self {
            Error::ToolFailed { tool, status, .. } => format!("{tool} failed ({status})"),
            other => other.to_string(),
        }
    }

    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A directory's language and entry file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub language: Language,
    /// The user's entry, relative to the directory: `app.py`,
    /// `lambda_function.py`, `package.json`'s `main` or `index.js`,
    /// `Cargo.toml`.
    pub entry: String,
}

/// Which language `dir` is written in, and its entry file. `language`
/// chooses when the directory holds the markers of more than one.
pub fn detect(dir: &Path, language: Option<Language>) -> Result<Project, Error> {
    if !dir.is_dir() {
        return Err(Error::NotADirectory(dir.to_path_buf()));
    }
    let present = |l: Language| -> Vec<&'static str> {
        l.markers()
            .iter()
            .copied()
            .filter(|m| dir.join(m).is_file())
            .collect()
    };
    let language = match language {
        Some(l) => l,
        None => {
            let found: Vec<(Language, Vec<&str>)> = Language::ALL
                .iter()
                .map(|&l| (l, present(l)))
                .filter(|(_, m)| !m.is_empty())
                .collect();
            match found.as_slice() {
                [] => return Err(Error::NothingToBuild(dir.to_path_buf())),
                [(l, _)] => *l,
                _ => {
                    let found = found
                        .iter()
                        .map(|(l, m)| format!("{} ({l})", m.join(", ")))
                        .collect::<Vec<_>>()
                        .join(" and ");
                    return Err(Error::Ambiguous {
                        dir: dir.to_path_buf(),
                        found,
                    });
                }
            }
        }
    };
    let entry = match language {
        Language::JavaScript => js::entry(dir)?,
        _ => present(language)
            .first()
            .map(|m| m.to_string())
            .ok_or_else(|| Error::MissingEntry {
                dir: dir.to_path_buf(),
                language,
                file: language.markers().join(" or "),
            })?,
    };
    Ok(Project { language, entry })
}

/// The default output of `nimbus build DIR`: `<name of DIR>.wasm` in the
/// current directory (never inside `DIR`, whose files the toolchains read).
pub fn default_output(dir: &Path) -> PathBuf {
    let name = std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .ok()
        .and_then(|d| {
            d.components().rev().find_map(|c| match c {
                std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                _ => None,
            })
        })
        .unwrap_or_else(|| "function".into());
    PathBuf::from(format!("{name}.wasm"))
}

/// Builds the function in `dir` into the component `out` (parent
/// directories created; replaced only when the build succeeds).
pub fn build(
    dir: &Path,
    out: &Path,
    options: &Options,
    progress: &mut dyn Progress,
) -> Result<Built, Error> {
    let start = Instant::now();
    // Messages name the paths as the user gave them; toolchains run from
    // `dir`, so they are given absolute ones.
    let project = detect(dir, options.language)?;
    let (shown, dir) = (out, &std::path::absolute(dir).map_err(Error::io(dir))?);
    let out = &std::path::absolute(out).map_err(Error::io(out))?;
    if project.language == Language::Rust && options.world.is_some() {
        return Err(Error::Invalid(
            "--world applies to Python and JavaScript; a Rust crate builds the world its bindings name".into(),
        ));
    }
    if let Some(world) = &options.world {
        check_world(world)?;
    }
    let parent = out.parent().unwrap_or(Path::new("/")).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(Error::io(&parent))?;
    // The tool writes into a scratch directory beside `out`, renamed over
    // it on success: a failed build leaves the previous component in place.
    let scratch = tempfile::Builder::new()
        .prefix(".nimbus-build-")
        .tempdir_in(&parent)
        .map_err(Error::io(&parent))?;
    let staged = scratch.path().join("component.wasm");
    match project.language {
        Language::Python => python::build(dir, &project, &staged, options, progress)?,
        Language::JavaScript => js::build(dir, &project, &staged, options, progress)?,
        Language::Rust => rust::build(dir, &staged, progress)?,
    }
    progress.step("checking the output is a component");
    check_component(&staged)?;
    std::fs::rename(&staged, out).map_err(Error::io(out))?;
    let bytes = std::fs::metadata(out).map_err(Error::io(out))?.len();
    let world = match project.language {
        Language::Rust => None,
        _ => Some(options.world.clone().unwrap_or_else(|| APP_WORLD.into())),
    };
    Ok(Built {
        output: shown.to_path_buf(),
        language: project.language,
        world,
        bytes,
        elapsed: start.elapsed(),
    })
}

/// `namespace:package/world[@version]`, caught here rather than as a
/// toolchain's parse error deep in its output.
fn check_world(world: &str) -> Result<(), Error> {
    let (name, version) = world.split_once('@').unwrap_or((world, ""));
    let ok = name.split_once(':').is_some_and(|(ns, rest)| {
        rest.split_once('/').is_some_and(|(pkg, w)| {
            [ns, pkg, w]
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        })
    }) && (world.find('@').is_none() || !version.is_empty());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "--world {world:?}: expected namespace:package/world[@version], e.g. wasi:http/proxy@0.2.12"
        )))
    }
}

/// The component-model preamble: magic, then version 0x0d and layer 1
/// (a core module has version 1, layer 0).
fn check_component(path: &Path) -> Result<(), Error> {
    use std::io::Read;
    let mut header = [0u8; 8];
    let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
    let n = file.read(&mut header).map_err(Error::io(path))?;
    let what = if n < 8 || &header[..4] != b"\0asm" {
        "not WebAssembly"
    } else if header[4..] == [1, 0, 0, 0] {
        "a core WebAssembly module"
    } else if header[6..8] == [1, 0] {
        return Ok(());
    } else {
        "WebAssembly of an unknown layer"
    };
    Err(Error::NotAComponent {
        path: path.to_path_buf(),
        what: what.into(),
    })
}

/// The embedded WIT and SDK, written out, with the step shown.
fn sdk_root(progress: &mut dyn Progress) -> Result<PathBuf, Error> {
    progress.step("preparing the embedded WIT and SDK");
    embedded::root()
}

/// A [`Command`](std::process::Command) for a toolchain, run from `dir`.
fn command(program: &str, dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.current_dir(dir);
    cmd
}

/// Warns when the toolchain is not the pinned release (it may still work;
/// the SDK is tested with the pinned one).
fn check_version(progress: &mut dyn Progress, tool: run::Tool, found: &str, pinned: &str) {
    if !found
        .split_whitespace()
        .any(|w| w.trim_start_matches('v') == pinned)
    {
        progress.warn(&format!(
            "{} reports {found:?}; Nimbus is tested with {pinned} ({})",
            tool.name, tool.install
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_language_and_refuses_an_empty_or_mixed_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let err = detect(d, None).expect_err("empty");
        assert!(matches!(err, Error::NothingToBuild(_)), "{err}");
        assert!(err.to_string().contains("app.py"), "{err}");

        std::fs::write(d.join("lambda_function.py"), "").expect("write");
        assert_eq!(
            detect(d, None).expect("python"),
            Project {
                language: Language::Python,
                entry: "lambda_function.py".into()
            }
        );
        std::fs::write(d.join("Cargo.toml"), "").expect("write");
        let err = detect(d, None).expect_err("mixed");
        assert!(err.to_string().contains("--lang"), "{err}");
        assert_eq!(
            detect(d, Some(Language::Rust)).expect("rust").language,
            Language::Rust
        );
        let err = detect(d, Some(Language::JavaScript)).expect_err("no js");
        assert!(err.to_string().contains("index.js"), "{err}");
    }

    #[test]
    fn tells_components_from_core_modules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let core = dir.path().join("core.wasm");
        std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
        let err = check_component(&core).expect_err("core module");
        assert!(err.to_string().contains("core WebAssembly module"), "{err}");
        let component = dir.path().join("c.wasm");
        std::fs::write(&component, b"\0asm\x0d\0\x01\0").expect("write");
        check_component(&component).expect("component");
        std::fs::write(&component, b"#!/bin/sh").expect("write");
        assert!(check_component(&component).is_err());
    }

    #[test]
    fn worlds_are_checked_and_outputs_named_after_the_dir() {
        check_world("wasi:http/proxy@0.2.12").expect("ok");
        check_world("nimbus:function/app").expect("ok");
        for bad in ["proxy", "wasi:http", "wasi:http/proxy@", "wasi:/proxy"] {
            assert!(check_world(bad).is_err(), "{bad}");
        }
        assert_eq!(
            default_output(Path::new("guests/python/hello-http/")),
            PathBuf::from("hello-http.wasm")
        );
    }
}
