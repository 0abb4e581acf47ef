//! `nimbus build DIR -o OUT.wasm`, run as a user runs it (the real binary),
//! and what it builds deployed through the admin API and invoked.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::{ADMIN_KEY, FUNCTIONS, GatewayHost, nimbus};

fn root() -> PathBuf {
    nimbus_guests::workspace_root()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of stderr that are errors (plain progress lines are not).
fn errors(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("error"))
        .map(str::to_string)
        .collect()
}

#[track_caller]
fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "nimbus build failed ({}):\n{}{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Deploys `wasm` as `acme/{name}` through the admin API; returns the
/// answer's `kind`.
async fn deploy(gw: &GatewayHost, name: &str, wasm: &Path) -> String {
    let bytes = std::fs::read(wasm).expect("built component");
    // A componentize-py component is 18 MB: compiling it takes a minute in
    // a debug build on a busy machine.
    let r = gw
        .admin
        .put(&format!("{FUNCTIONS}/{name}"))
        .timeout(Duration::from_secs(300))
        .body(bytes)
        .await
        .expect(201);
    r.json()["kind"].as_str().unwrap_or_default().to_string()
}

/// A Lambda handler in a directory of its own, outside the source tree:
/// the SDK and WIT come from the binary (written to the cache directory it
/// is given), and the HTTP request reaches the handler in the API Gateway
/// v2 shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_lambda_handler_builds_with_the_embedded_sdk_deploys_and_answers() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("greeter");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(
        dir.join("lambda_function.py"),
        "def lambda_handler(event, context):\n    \
             return {'statusCode': 200, 'headers': {'content-type': 'text/plain'},\n            \
             'body': f\"hi {event['rawPath']} from {context.function_name}\"}\n",
    )
    .expect("write the handler");
    let cache = work.path().join("cache");
    let out = nimbus()
        .current_dir(work.path())
        .env("XDG_CACHE_HOME", &cache)
        .args(["build", "greeter"])
        .output()
        .expect("run nimbus build");
    succeeded(&out);
    // The default output: <dir name>.wasm in the working directory.
    let wasm = work.path().join("greeter.wasm");
    let report = stdout(&out);
    assert!(
        report.starts_with("built greeter.wasm: Python component for nimbus:function/app, ")
            && report.contains(" MB in ")
            && report.trim_end().ends_with(" s"),
        "{report}"
    );
    let size = std::fs::metadata(&wasm).expect("greeter.wasm").len();
    assert!(
        report.contains(&format!("{:.1} MB", size as f64 / 1e6)),
        "{report}"
    );
    // Plain progress lines (stderr is not a terminal here), one per step.
    let progress = stderr(&out);
    assert!(
        progress.contains(
            "[nimbus build] componentize-py 0.25.1: lambda_function.py with the Nimbus SDK"
        ),
        "{progress}"
    );
    // The SDK was written where XDG_CACHE_HOME says, content-addressed,
    // without bytecode caches; nothing was written into the function's dir.
    let sdks: Vec<PathBuf> = std::fs::read_dir(cache.join("nimbus"))
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(sdks.len(), 1, "{sdks:?}");
    let sdk = &sdks[0];
    assert!(
        sdk.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("sdk-")),
        "{sdk:?}"
    );
    assert!(sdk.join("sdk/python/nimbus_app.py").is_file());
    assert!(sdk.join("wit/world.wit").is_file());
    assert!(!sdk.join("sdk/python/nimbus/__pycache__").exists());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["lambda_function.py"], "the build wrote into DIR");

    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;
    assert_eq!(deploy(&gw, "greeter", &wasm).await, "http+event");
    let r = gw.acme.get("/acme/greeter/hello").await.expect(200);
    assert_eq!(r.text(), "hi /acme/greeter/hello from greeter");
    let records = gw.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, nimbus_core::Outcome::Success);
}

/// A Rust function crate of its own (the `echo` guest's source, depending
/// on the guest SDK by path): cargo builds it for wasm32-wasip2, and the
/// component cargo reports is copied to OUT, deployed and invoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_crate_builds_with_cargo_deploys_and_echoes() {
    let root = root();
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("my-echo");
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    std::fs::copy(root.join("guests/echo/src/lib.rs"), dir.join("src/lib.rs"))
        .expect("copy echo's source");
    // The guests' lock and release profile: the dependencies already built
    // for the guests in the shared target directory are reused.
    std::fs::copy(root.join("guests/Cargo.lock"), dir.join("Cargo.lock")).expect("copy lock");
    let guests = std::fs::read_to_string(root.join("guests/Cargo.toml")).expect("guests manifest");
    let profile = &guests[guests.find("[profile.release]").expect("a release profile")..];
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"my-echo\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nnimbus-guest = {{ path = {:?} }}\n\n\
             # Not part of any enclosing workspace.\n[workspace]\n\n{profile}",
            root.join("guests/sdk").display().to_string()
        ),
    )
    .expect("write Cargo.toml");
    let wasm = work.path().join("out/echo.wasm");
    let out = nimbus()
        .current_dir(work.path())
        .env("CARGO_TARGET_DIR", root.join("target/guest-build"))
        .args(["build", "my-echo", "-o"])
        .arg(&wasm)
        .output()
        .expect("run nimbus build");
    succeeded(&out);
    let report = stdout(&out);
    assert!(
        report.starts_with(&format!("built {}: Rust component, ", wasm.display())),
        "{report}"
    );
    assert!(
        stderr(&out).contains("Compiling my-echo"),
        "cargo's own lines are shown: {}",
        stderr(&out)
    );

    let gw = GatewayHost::start(|b| b.admin_key(ADMIN_KEY)).await;
    assert_eq!(deploy(&gw, "my-echo", &wasm).await, "event");
    let r = gw
        .acme
        .post("/acme/my-echo")
        .body("built by nimbus")
        .await
        .expect(200);
    assert_eq!(r.text(), "built by nimbus");
}

/// Each language's toolchain missing from PATH: one error line naming the
/// package and version to install, a failing status, no output file.
#[test]
fn a_missing_toolchain_is_one_line_naming_what_to_install() {
    let root = root();
    let empty = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(work.path().join("crate/src")).expect("mkdir");
    std::fs::write(
        work.path().join("crate/Cargo.toml"),
        "[package]\nname = \"c\"\n",
    )
    .expect("write");
    let cases = [
        (
            root.join("guests/python/hello-http"),
            "error: componentize-py not found: install it with pip install componentize-py==0.25.1",
        ),
        (
            root.join("guests/js/hello-http"),
            "error: componentize-js not found: install it with npm install -g @bytecodealliance/componentize-js@0.23.0",
        ),
        (
            work.path().join("crate"),
            "error: cargo not found: install it with rustup (https://rustup.rs), then rustup target add wasm32-wasip2",
        ),
    ];
    for (dir, line) in cases {
        let wasm = work.path().join("never.wasm");
        let out = nimbus()
            .env("PATH", empty.path())
            .arg("build")
            .arg(&dir)
            .arg("-o")
            .arg(&wasm)
            .output()
            .expect("run nimbus build");
        assert!(!out.status.success(), "{}", stderr(&out));
        assert_eq!(errors(&out), [line], "{}", stderr(&out));
        assert!(!wasm.exists());
    }
    // componentize-js (and the node it runs on) there, esbuild not: the SDK
    // build names the bundler.
    let bin = tempfile::tempdir().expect("tempdir");
    for tool in ["componentize-js", "node"] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} is not installed (.ci/setup installs it)"));
        std::os::unix::fs::symlink(&found, bin.path().join(tool)).expect("symlink");
    }
    let out = nimbus()
        .env("PATH", bin.path())
        .arg("build")
        .arg(root.join("guests/js/hello-http"))
        .arg("-o")
        .arg(work.path().join("never.wasm"))
        .output()
        .expect("run nimbus build");
    assert_eq!(
        errors(&out),
        ["error: esbuild not found: install it with npm install -g esbuild@0.28.2"],
        "{}",
        stderr(&out)
    );
}

/// A directory with nothing to build, or no directory at all: one line
/// naming what was looked for.
#[test]
fn a_dir_without_a_function_names_what_it_looked_for() {
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::write(work.path().join("README.md"), "not a function").expect("write");
    let out = nimbus()
        .current_dir(work.path())
        .args(["build", "."])
        .output()
        .expect("run nimbus build");
    assert!(!out.status.success());
    assert_eq!(
        errors(&out),
        [
            "error: .: nothing to build: looked for app.py or lambda_function.py (Python), \
             package.json or index.js (JavaScript), Cargo.toml (Rust)"
        ],
        "{}",
        stderr(&out)
    );
    let out = nimbus()
        .current_dir(work.path())
        .args(["build", "missing"])
        .output()
        .expect("run nimbus build");
    assert_eq!(errors(&out), ["error: missing: not a directory"]);
    assert!(
        std::fs::read_dir(work.path()).expect("dir").count() == 1,
        "nothing written"
    );
}

/// A tool that fails: its output is shown (here rustc's diagnostic) with
/// its exit status, and a component written before stays as it was.
#[test]
fn a_failed_build_shows_the_tools_output_and_status() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("broken");
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n[workspace]\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("src/lib.rs"),
        "pub fn f() -> u32 { \"not a number\" }\n",
    )
    .expect("write");
    let wasm = work.path().join("broken.wasm");
    std::fs::write(&wasm, b"previous build").expect("write");
    let out = nimbus()
        .current_dir(work.path())
        .env("CARGO_TARGET_DIR", work.path().join("target"))
        .args(["build", "broken", "--world", "wasi:http/proxy@0.2.12"])
        .output()
        .expect("run nimbus build");
    assert_eq!(
        errors(&out),
        [
            "error: --world applies to Python and JavaScript; a Rust crate builds the world its bindings name"
        ]
    );
    let out = nimbus()
        .current_dir(work.path())
        .env("CARGO_TARGET_DIR", work.path().join("target"))
        .args(["build", "broken"])
        .output()
        .expect("run nimbus build");
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("mismatched types"),
        "rustc's diagnostic: {text}"
    );
    assert!(
        text.trim_end()
            .ends_with("error: cargo failed (exit status 101)"),
        "{text}"
    );
    assert_eq!(std::fs::read(&wasm).expect("kept"), b"previous build");
}

#[test]
fn help_names_the_languages_and_their_toolchains() {
    let out = nimbus()
        .args(["build", "--help"])
        .output()
        .expect("run nimbus build --help");
    succeeded(&out);
    let help = stdout(&out);
    for needle in [
        "Usage: nimbus build [OPTIONS] <DIR>",
        "--output <OUT.wasm>",
        "--world <WORLD>",
        "pip install componentize-py==0.25.1",
        "@bytecodealliance/componentize-js@0.23.0",
        "cargo build --release --target wasm32-wasip2",
    ] {
        assert!(help.contains(needle), "{needle:?} not in:\n{help}");
    }
}
