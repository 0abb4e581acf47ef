//! The `nimbus` client commands (`deploy`, `versions`, `alias`, `rollback`,
//! `invoke`, `logs`, `functions`, `tenants`), run as users run them: the
//! real binary against a real `nimbus serve`, through the admin API and
//! the gateway only.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::support::{ACME_KEY, ADMIN_KEY, NimbusServe, ServeDir, guest_path, nimbus};

const CONFIG: &str = r#"
ledger = "usage.jsonl"
admin_keys = ["admin-key"]

[tenants.acme]
api_keys = ["acme-key"]
timeout_ms = 5000
"#;

/// `nimbus ARGS` against `server`, its URL and admin key from the
/// environment as a script would set them.
fn cli(server: &NimbusServe, args: &[&str]) -> Output {
    cli_in(server, None, args, None)
}

/// `nimbus ARGS` in `cwd` (with its environment), `stdin` fed if given.
fn cli_in(
    server: &NimbusServe,
    env: Option<&[(&str, &Path)]>,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    let mut command = nimbus();
    command
        .args(args)
        .env("NIMBUS_SERVER", format!("http://{}", server.addr))
        .env("NIMBUS_ADMIN_KEY", ADMIN_KEY)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env.unwrap_or_default() {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("run nimbus");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(data).expect("write stdin");
    }
    child.wait_with_output().expect("nimbus output")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command succeeded; its stdout.
#[track_caller]
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// The command succeeded with `--json`; its stdout as JSON.
#[track_caller]
fn json(out: Output) -> serde_json::Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not one JSON document ({e}): {text}"))
}

/// The command failed with `code` and said why in one line, `error: …`,
/// containing `needle`; that line.
#[track_caller]
fn fails(out: Output, code: i32, needle: &str) -> String {
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    assert!(errors[0].contains(needle), "{needle:?} not in {err}");
    errors[0].to_string()
}

/// A table's rows (after its header), each cell a word.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The `version N` an invocation's stderr line names.
#[track_caller]
fn invoked_version(out: &Output) -> u64 {
    let err = stderr(out);
    let line = err
        .lines()
        .find(|l| l.starts_with("invocation "))
        .unwrap_or_else(|| panic!("no invocation line: {err}"));
    let after = line.split(" version ").nth(1).unwrap_or_default();
    after
        .split(':')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in {line:?}"))
}

/// The invocation id an invocation's stderr line names.
fn invocation_id(out: &Output) -> String {
    let err = stderr(out);
    err.lines()
        .find_map(|l| l.strip_prefix("invocation "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no invocation line: {err}"))
        .to_string()
}

#[test]
fn deploy_publishes_versions_aliases_route_them_and_rollback_moves_back() {
    let dir = ServeDir::new(CONFIG);
    let server = dir.start();
    let hello = guest_path("hello-http");
    let wstd = guest_path("wstd-http");

    // Two versions of acme/hello: each deploy moves `live` to its version.
    let out = ok(cli(
        &server,
        &["deploy", &hello, "--tenant", "acme", "--name", "hello"],
    ));
    assert_eq!(out, "deployed acme/hello version 1 (alias live)\n");
    let out = ok(cli(
        &server,
        &["deploy", &wstd, "--tenant", "acme", "--name", "hello"],
    ));
    assert_eq!(out, "deployed acme/hello version 2 (alias live)\n");

    let versions = json(cli(&server, &["versions", "acme/hello", "--json"]));
    let list = versions["versions"].as_array().expect("versions");
    assert_eq!(list.len(), 2, "{versions}");
    assert_eq!(
        (list[0]["version"].as_u64(), list[1]["version"].as_u64()),
        (Some(1), Some(2))
    );
    let sha1 = list[0]["sha256"].as_str().expect("sha256");
    assert_eq!(sha1.len(), 64, "{sha1}");
    assert_ne!(list[0]["sha256"], list[1]["sha256"]);
    assert_eq!(list[1]["aliases"], serde_json::json!(["live"]));
    assert_eq!(
        list[0]["size"].as_u64(),
        std::fs::metadata(&hello).ok().map(|m| m.len())
    );
    // The table: the same two, sha256 cut to 12.
    let table = ok(cli(&server, &["versions", "acme/hello"]));
    assert!(table.starts_with("VERSION  SHA256  "), "{table}");
    let versions = rows(&table);
    assert_eq!(versions.len(), 2, "{table}");
    assert_eq!(versions[0][..2], ["1", &sha1[..12]], "{table}");
    assert_eq!(versions[0].last().map(String::as_str), Some("-"), "{table}");
    assert_eq!(
        versions[1].last().map(String::as_str),
        Some("live"),
        "{table}"
    );

    // The live alias: version 2, the wstd guest.
    let out = cli(&server, &["invoke", "acme/hello"]);
    assert_eq!(invoked_version(&out), 2);
    assert!(
        stderr(&out).contains(": success (HTTP 200)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ok(out), "Hello from wstd on Nimbus!\n");

    // live back to version 1 by hand; version 2 still reachable by number.
    let out = ok(cli(&server, &["alias", "set", "acme/hello", "live", "1"]));
    assert_eq!(out, "acme/hello alias live: 1 (was 2)\n");
    let out = cli(&server, &["invoke", "acme/hello", "--path", "/"]);
    assert_eq!(invoked_version(&out), 1);
    assert_eq!(ok(out), "Hello from Nimbus!\n");
    let out = cli(&server, &["invoke", "acme/hello@2"]);
    assert_eq!(invoked_version(&out), 2);
    assert_eq!(ok(out), "Hello from wstd on Nimbus!\n");

    // A second alias, invoked by name, listed with live.
    ok(cli(
        &server,
        &["alias", "set", "acme/hello", "staging", "2"],
    ));
    let out = cli(&server, &["invoke", "acme/hello:staging"]);
    assert_eq!(invoked_version(&out), 2);
    let aliases = json(cli(&server, &["alias", "list", "acme/hello", "--json"]));
    assert_eq!(
        aliases["aliases"]["staging"]["routing"],
        serde_json::json!([{"version": 2, "weight": 100}]),
        "{aliases}"
    );
    // A weighted split is accepted and shown as it was written.
    let out = ok(cli(
        &server,
        &["alias", "set", "acme/hello", "staging", "2=90,1=10"],
    ));
    assert_eq!(out, "acme/hello alias staging: 2=90,1=10 (was 2)\n");
    let table = ok(cli(&server, &["alias", "list", "acme/hello"]));
    assert!(
        table.starts_with("ALIAS    ROUTING    PREVIOUS\n"),
        "{table}"
    );
    assert_eq!(
        rows(&table),
        [["live", "1", "2"], ["staging", "2=90,1=10", "2"]],
        "{table}"
    );

    // Rollback: live goes back to what it routed before, version 2.
    let out = ok(cli(&server, &["rollback", "acme/hello"]));
    assert_eq!(out, "rolled back: acme/hello alias live: 2 (from 1)\n");
    let out = cli(&server, &["invoke", "acme/hello"]);
    assert_eq!(invoked_version(&out), 2);

    // `live` cannot be deleted; staging can.
    fails(
        cli(&server, &["alias", "delete", "acme/hello", "live"]),
        1,
        "(HTTP 409)",
    );
    ok(cli(&server, &["alias", "delete", "acme/hello", "staging"]));

    // The function list, one tenant's and every tenant's.
    let table = ok(cli(&server, &["functions", "--tenant", "acme"]));
    assert!(
        table.starts_with("TENANT  FUNCTION  KIND  LIVE  ALIASES\n"),
        "{table}"
    );
    assert_eq!(
        rows(&table),
        [["acme", "hello", "http", "2", "live:2"]],
        "{table}"
    );
    let all = json(cli(&server, &["functions", "--json"]));
    let names: Vec<&str> = all["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .filter_map(|f| f["function"].as_str())
        .collect();
    assert_eq!(names, ["hello"], "{all}");
}

#[test]
fn invoke_exits_with_the_outcome_and_logs_show_the_invocation() {
    let dir = ServeDir::new(CONFIG);
    let server = dir.start();
    for (guest, name) in [("echo", "echo"), ("trap", "trap")] {
        ok(cli(
            &server,
            &[
                "deploy",
                &guest_path(guest),
                "--tenant",
                "acme",
                "--name",
                name,
            ],
        ));
    }

    // Data from stdin and from a file, answered on stdout.
    let out = cli_in(
        &server,
        None,
        &["invoke", "acme/echo", "--data", "-"],
        Some(b"ping"),
    );
    assert_eq!(ok(out), "ping");
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("event.json");
    std::fs::write(&data, br#"{"n": 1}"#).expect("write");
    let data = data.display().to_string();
    let out = cli(&server, &["invoke", "acme/echo", "--data", &data]);
    assert_eq!(ok(out), r#"{"n": 1}"#);

    // Following the trap function's logs before it is invoked at all.
    let mut follow = nimbus()
        .args(["logs", "acme/trap", "--follow", "--json"])
        .env("NIMBUS_SERVER", format!("http://{}", server.addr))
        .env("NIMBUS_ADMIN_KEY", ADMIN_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nimbus logs --follow");
    let (tx, followed) = std::sync::mpsc::channel();
    let lines = follow.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(lines).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    // A trap: exit code 9 (as `nimbus run`), nothing on stdout, the
    // invocation named on stderr.
    let out = cli(&server, &["invoke", "acme/trap", "--data", &data]);
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let id = invocation_id(&out);
    assert!(
        stderr(&out).contains(": trap (HTTP 500)"),
        "{}",
        stderr(&out)
    );
    fails(out, 9, "(HTTP 500)");

    // The follower printed it as it was kept: one JSON document a line.
    let line = followed
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("nothing followed for {id}"));
    let _ = follow.kill();
    let _ = follow.wait();
    let event: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(event["invocation_id"], id.as_str(), "{event}");
    assert_eq!(event["outcome"], "trap", "{event}");

    // Its logs: the invocation, its outcome and its REPORT line.
    let logs = json(cli(&server, &["logs", "acme/trap", "--json"]));
    let invocations = logs["invocations"].as_array().expect("invocations");
    let inv = invocations
        .iter()
        .find(|i| i["invocation_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {logs}"));
    assert_eq!(inv["outcome"], "trap", "{inv}");
    assert_eq!(inv["version"], 1, "{inv}");
    let report = inv["report"].as_str().expect("report");
    assert!(
        report.starts_with(&format!("REPORT RequestId: {id} ")),
        "{report}"
    );
    let text = ok(cli(&server, &["logs", "acme/trap", "--invocation", &id]));
    assert!(text.starts_with("=== "), "{text}");
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.contains(&id) && l.contains(" trap ")),
        "{text}"
    );
    assert!(text.contains(&format!("\n{report}\n")), "{text}");

    // A wrong admin key: one line with the server's message, exit code 1.
    let line = fails(
        cli(
            &server,
            &["functions", "--tenant", "acme", "--admin-key", "wrong"],
        ),
        1,
        "(HTTP 401)",
    );
    assert_eq!(line, "error: invalid admin key (HTTP 401)");
    fails(
        cli(&server, &["logs", "acme/nope", "--json"]),
        1,
        "(HTTP 404)",
    );
    // A file that is no component: the server refuses it, exit code 3.
    let junk = work.path().join("junk.wasm");
    std::fs::write(&junk, b"not a component").expect("write");
    fails(
        cli(
            &server,
            &[
                "deploy",
                &junk.display().to_string(),
                "--tenant",
                "acme",
                "--name",
                "echo",
            ],
        ),
        3,
        "(HTTP 400)",
    );
    // A bad routing never reaches the server: a usage error.
    let out = cli(&server, &["alias", "set", "acme/echo", "live", "1=50"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("sum to 50"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_created_with_a_key_that_works_and_deleted() {
    let dir = ServeDir::new(CONFIG);
    let server = dir.start();

    let out = ok(cli(
        &server,
        &["tenants", "create", "beta", "--rate-limit", "50"],
    ));
    assert!(out.starts_with("created tenant beta\n"), "{out}");
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("api key: "))
        .unwrap_or_else(|| panic!("no key in {out}"))
        .to_string();
    let key_id = out
        .lines()
        .find_map(|l| l.strip_prefix("key id: "))
        .unwrap_or_else(|| panic!("no key id in {out}"))
        .to_string();
    assert!(key.starts_with("nbk_"), "{key}");
    fails(
        cli(&server, &["tenants", "create", "beta"]),
        1,
        "(HTTP 409)",
    );

    let tenants = json(cli(&server, &["tenants", "list", "--json"]));
    let names: Vec<&str> = tenants["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["acme", "beta"], "{tenants}");
    let beta = &tenants["tenants"][1];
    assert_eq!(
        beta["rate_limit"],
        serde_json::json!({"per_second": 50, "burst": 50})
    );

    // The key is beta's: its function answers it, not anonymous callers or
    // another tenant's key.
    ok(cli(
        &server,
        &[
            "deploy",
            &guest_path("hello-http"),
            "--tenant",
            "beta",
            "--name",
            "hello",
        ],
    ));
    let anyone = server.client();
    let r = anyone.get("/beta/hello").key(&key).await.expect(200);
    assert_eq!(r.text(), "Hello from Nimbus!\n");
    anyone.get("/beta/hello").await.expect(401);
    anyone.get("/beta/hello").key(ACME_KEY).await.expect(401);

    // Rotation: a second key, then the first revoked.
    let out = ok(cli(&server, &["tenants", "key", "create", "beta"]));
    let second = out
        .lines()
        .find_map(|l| l.strip_prefix("api key: "))
        .unwrap_or_else(|| panic!("no key in {out}"))
        .to_string();
    anyone.get("/beta/hello").key(&second).await.expect(200);
    ok(cli(&server, &["tenants", "key", "delete", "beta", &key_id]));
    anyone.get("/beta/hello").key(&key).await.expect(401);
    anyone.get("/beta/hello").key(&second).await.expect(200);

    // Deleting asks for --yes when it cannot ask; then the tenant is gone.
    fails(cli(&server, &["tenants", "delete", "beta"]), 2, "--yes");
    let out = ok(cli(&server, &["tenants", "delete", "beta", "--yes"]));
    assert_eq!(out, "deleted tenant beta\n");
    let r = anyone.get("/beta/hello").key(&second).await;
    assert!(matches!(r.status.as_u16(), 401 | 404), "{r:?}");
    let table = ok(cli(&server, &["tenants", "list"]));
    let names: Vec<String> = rows(&table).into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(names, ["acme"], "{table}");
}

/// A function's directory is built first (here a Rust crate: the `echo`
/// guest's source), then deployed and invoked.
#[test]
fn deploy_builds_a_directory_first() {
    let root = nimbus_guests::workspace_root();
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("my-echo");
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    std::fs::copy(root.join("guests/echo/src/lib.rs"), dir.join("src/lib.rs"))
        .expect("copy echo's source");
    // The guests' lock and release profile: dependencies already built for
    // the guests in the shared target directory are reused.
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

    let serve = ServeDir::new(CONFIG);
    let server = serve.start();
    let target = root.join("target/guest-build");
    let out = cli_in(
        &server,
        Some(&[("CARGO_TARGET_DIR", &target)]),
        &[
            "deploy",
            &dir.display().to_string(),
            "--tenant",
            "acme",
            "--name",
            "my-echo",
        ],
        None,
    );
    let err = stderr(&out);
    assert_eq!(ok(out), "deployed acme/my-echo version 1 (alias live)\n");
    assert!(
        err.contains("Compiling my-echo"),
        "cargo's own lines: {err}"
    );
    assert!(err.contains(": Rust component, "), "{err}");
    // Nothing was written into the directory but cargo's own output dir.
    assert!(!dir.join("my-echo.wasm").exists());

    let out = cli_in(
        &server,
        None,
        &["invoke", "acme/my-echo", "--data", "-"],
        Some(b"built and deployed by nimbus"),
    );
    assert_eq!(ok(out), "built and deployed by nimbus");
}
