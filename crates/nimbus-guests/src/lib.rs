//! Builds the sample guests in `guests/` into `target/guests/<name>.wasm`.
//!
//! The same builder serves the README's command (`cargo run -p nimbus-guests`)
//! and the test harness, so what a user tries is what the tests ran. Guests
//! are compiled from source for `wasm32-wasip2` in release mode (size-tuned
//! profile in `guests/Cargo.toml`); binaries are never committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The guests `build_all` produces, by name (`guests/<name>`).
pub const GUESTS: &[&str] = &[
    "echo",
    "compute",
    "spin-loop",
    "memory-bomb",
    "deep-recursion",
    "trap",
    "log-flood",
    "sleep",
    "config-reader",
    "files",
    "kv-counter",
    "blob-store",
    "publisher",
    "thumbnail",
    "chain",
    "hello-http",
    "wstd-http",
];

const TARGET: &str = "wasm32-wasip2";

/// The workspace root (the directory holding `guests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Built guests: name → path of the component.
#[derive(Debug, Clone)]
pub struct Guests {
    paths: BTreeMap<String, PathBuf>,
}

impl Guests {
    /// The component built from `guests/<name>`.
    ///
    /// # Panics
    /// If `name` is not in [`GUESTS`]: a typo in a test, not a runtime condition.
    pub fn path(&self, name: &str) -> &Path {
        self.paths
            .get(name)
            .unwrap_or_else(|| panic!("no guest named {name:?}; known: {GUESTS:?}"))
    }

    /// The component's bytes.
    pub fn bytes(&self, name: &str) -> Vec<u8> {
        let path = self.path(name);
        std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.paths.iter().map(|(k, v)| (k.as_str(), v.as_path()))
    }
}

/// Builds every guest once per process (later calls reuse the result) and
/// returns their paths.
pub fn build_all() -> Result<Guests, String> {
    static BUILT: OnceLock<Mutex<Option<Guests>>> = OnceLock::new();
    let cell = BUILT.get_or_init(|| Mutex::new(None));
    let mut built = cell.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(g) = &*built {
        return Ok(g.clone());
    }
    let guests = build(&workspace_root())?;
    *built = Some(guests.clone());
    Ok(guests)
}

/// Runs the build: installs the target if missing, compiles the guests
/// workspace, and copies each component to `target/guests/<name>.wasm`.
pub fn build(root: &Path) -> Result<Guests, String> {
    ensure_target()?;
    let target_dir = root.join("target/guest-build");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root.join("guests"))
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir)
        // Settings of an outer cargo (a `cargo test` running us) must not
        // leak into the guest build.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_MAKEFLAGS");
    let status = cmd
        .status()
        .map_err(|e| format!("running cargo for the guests: {e}"))?;
    if !status.success() {
        return Err(format!("building the guests failed ({status})"));
    }
    let out_dir = root.join("target/guests");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let mut paths = BTreeMap::new();
    for name in GUESTS {
        let built = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&built, &dest)
            .map_err(|e| format!("copying {} to {}: {e}", built.display(), dest.display()))?;
        paths.insert(name.to_string(), dest);
    }
    Ok(Guests { paths })
}

/// A fresh machine lacks the wasm32-wasip2 standard library; rustup adds it.
fn ensure_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("running rustup (needed to add the {TARGET} target): {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map_err(|e| format!("running rustup target add {TARGET}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("rustup target add {TARGET} failed ({status})"))
    }
}

/// The componentize-py release the Python guests are built with (pinned:
/// `.ci/setup` installs exactly this).
pub const COMPONENTIZE_PY: &str = nimbus_build::COMPONENTIZE_PY;

/// The componentize-js release the JavaScript guests are built with
/// (pinned; `.ci/setup` installs exactly this from npm).
pub const COMPONENTIZE_JS: &str = nimbus_build::COMPONENTIZE_JS;

/// Builds the Python guest `guests/python/<name>` (its `app.py`) with
/// componentize-py against the WIT packages in `wit/`, for `world` (e.g.
/// `wasi:http/proxy@0.2.12`), into `target/guests/python-<name>.wasm`, and
/// returns that path.
pub fn build_python(name: &str, world: &str) -> Result<PathBuf, String> {
    componentize("python", name, "app.py", |src, wit, out| {
        let mut cmd = Command::new("componentize-py");
        // No __pycache__ in the source tree (it would also look like a
        // changed source to the freshness check).
        cmd.env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-d")
            .arg(wit)
            .args(["-w", world, "componentize", "-p"])
            .arg(src)
            .arg("app")
            .arg("-o")
            .arg(out);
        (
            cmd,
            format!("pip install componentize-py=={COMPONENTIZE_PY}"),
        )
    })
}

/// The world the Python and JavaScript SDKs build against (`wit/world.wit`).
pub const APP_WORLD: &str = nimbus_build::APP_WORLD;

/// Builds the Python guest `guests/python/<name>` with the Nimbus SDK
/// (`sdk/python`) against [`APP_WORLD`] into
/// `target/guests/python-<name>.wasm`, exactly as `nimbus build
/// guests/python/<name>` does ([`nimbus_build`]): the SDK's `nimbus_app`
/// module is the componentize entry and imports the guest's `app.py` (or
/// `lambda_function.py`).
pub fn build_python_app(name: &str) -> Result<PathBuf, String> {
    build_app(nimbus_build::Language::Python, "python", name)
}

/// Builds the JavaScript guest `guests/js/<name>` (its `index.js`) with
/// componentize-js against `wit/` for `world`, into
/// `target/guests/js-<name>.wasm`. Built without StarlingMonkey's own
/// `fetch` event and HTTP embedding, so the guest's explicit
/// `incomingHandler` export serves `world`'s version of `wasi:http`.
pub fn build_js(name: &str, world: &str) -> Result<PathBuf, String> {
    componentize("js", name, "index.js", |src, wit, out| {
        let mut cmd = Command::new("componentize-js");
        cmd.arg(src.join("index.js"))
            .arg("-w")
            .arg(wit)
            .args(["-n", world, "-d", "http", "-d", "fetch-event", "-o"])
            .arg(out);
        (
            cmd,
            format!("npm install -g @bytecodealliance/componentize-js@{COMPONENTIZE_JS}"),
        )
    })
}

/// The esbuild release that bundles a JavaScript guest with the SDK
/// (pinned; `.ci/setup` installs exactly this from npm).
pub const ESBUILD: &str = nimbus_build::ESBUILD;

/// Builds the JavaScript guest `guests/js/<name>` with the Nimbus SDK
/// (`sdk/js`) against [`APP_WORLD`] into `target/guests/js-<name>.wasm`,
/// exactly as `nimbus build guests/js/<name>` does ([`nimbus_build`]):
/// esbuild bundles the SDK's `entry.js` with the guest's module (its
/// `package.json` `main`, else `index.js`) and its npm dependencies, then
/// componentize-js builds the bundle. The recipe is in `sdk/js/README.md`.
pub fn build_js_app(name: &str) -> Result<PathBuf, String> {
    build_app(nimbus_build::Language::JavaScript, "js", name)
}

/// One SDK build of `guests/<lang>/<name>` through [`nimbus_build::build`]
/// into `target/guests/<lang>-<name>.wasm`, skipped when the component is
/// newer than the guest, `wit/` and `sdk/<lang>` (what the binary embeds).
fn build_app(language: nimbus_build::Language, lang: &str, name: &str) -> Result<PathBuf, String> {
    let _one_at_a_time = COMPONENTIZE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = workspace_root();
    let src = root.join("guests").join(lang).join(name);
    let out = root
        .join("target/guests")
        .join(format!("{lang}-{name}.wasm"));
    if !src.is_dir() {
        return Err(format!("no guest at {}", src.display()));
    }
    if newer_than_sources(
        &out,
        &[&src, &root.join("wit"), &root.join("sdk").join(lang)],
    ) {
        return Ok(out);
    }
    let options = nimbus_build::Options {
        language: Some(language),
        ..Default::default()
    };
    nimbus_build::build(&src, &out, &options, &mut nimbus_build::Plain)
        .map_err(|e| format!("building guests/{lang}/{name}: {e}"))?;
    Ok(out)
}

/// Componentize builds run one at a time: each takes a core for 10–30 s.
static COMPONENTIZE_LOCK: Mutex<()> = Mutex::new(());

/// Runs one componentize build of `guests/<lang>/<name>` into
/// `target/guests/<lang>-<name>.wasm`, skipped when the component is newer
/// than every source and WIT file (these builds take 10–30 s). `command`
/// gives the build and the install line a missing toolchain is told to run.
fn componentize(
    lang: &str,
    name: &str,
    entry: &str,
    command: impl FnOnce(&Path, &Path, &Path) -> (Command, String),
) -> Result<PathBuf, String> {
    let _one_at_a_time = COMPONENTIZE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = workspace_root();
    let src = root.join("guests").join(lang).join(name);
    let wit = root.join("wit");
    let out_dir = root.join("target/guests");
    let out = out_dir.join(format!("{lang}-{name}.wasm"));
    let entry_ok = if entry.is_empty() {
        ["app.py", "lambda_function.py"]
            .iter()
            .any(|f| src.join(f).is_file())
    } else {
        src.join(entry).is_file()
    };
    if !entry_ok {
        return Err(format!("no guest at {}", src.display()));
    }
    let sdk = root.join("sdk").join(lang);
    if newer_than_sources(&out, &[&src, &wit, &sdk]) {
        return Ok(out);
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let (mut cmd, install) = command(&src, &wit, &out);
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd.status().map_err(|e| {
        format!("running {tool} ({e}): install it with `{install}` (.ci/setup does)")
    })?;
    if !status.success() {
        return Err(format!("{tool} failed for guests/{lang}/{name} ({status})"));
    }
    Ok(out)
}

/// Whether `out` exists and is newer than every file under `sources`.
fn newer_than_sources(out: &Path, sources: &[&Path]) -> bool {
    let Ok(built) = std::fs::metadata(out).and_then(|m| m.modified()) else {
        return false;
    };
    fn newest(dir: &Path) -> Option<std::time::SystemTime> {
        let mut latest = std::fs::metadata(dir).ok()?.modified().ok();
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            let t = if path.is_dir() {
                newest(&path)
            } else {
                entry.metadata().ok().and_then(|m| m.modified().ok())
            };
            latest = latest.max(t);
        }
        latest
    }
    // A source directory that does not exist (no SDK for a plain guest) cannot be newer.
    sources.iter().all(|s| newest(s).is_none_or(|t| t < built))
}
