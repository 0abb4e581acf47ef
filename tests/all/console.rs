//! The usage console in a real browser: the real `nimbus serve` with a
//! tenant's two functions, one invoked a few times (a number the browser is
//! not told how to find), the other failing once; then
//! `tests/console/console.test.mjs` drives Debian's Chromium through
//! playwright-core and checks what a person sees: the chart's series shows
//! those invocations, the failure is listed with its outcome and its log
//! link shows its REPORT line. Node, Chromium and the script's packages
//! come from `.ci/setup`; without them the test fails saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nimbus_http::OUTCOME_HEADER;

use crate::support::{NimbusServe, ServeDir, guest_path};

const TENANT: &str = "shop";
const KEY: &str = "shop-console-key";
/// Prices, so the console shows costs and this month's statement.
const PRICES: &str = r#"
currency = "USD"
[prices]
requests = "0.05"
gb_seconds = "0.0000166667"
[free_tier]
requests = 2
"#;
/// The browser script's own bound; its every wait is 15 s at most.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What the browser test needs besides the server: node, Chromium and
/// the script's `npm ci`.
fn browser_tools() -> PathBuf {
    let setup = "run .ci/setup (it installs Debian's chromium and runs `npm ci` in tests/console)";
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is not runnable ({node:?}); {setup}"
    );
    let chromium =
        std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    assert!(
        chromium.is_file(),
        "{} is missing; {setup}",
        chromium.display()
    );
    let dir = repo().join("tests/console");
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file(),
        "tests/console has no node_modules/playwright-core; {setup}"
    );
    dir.join("console.test.mjs")
}

/// How many times to invoke the good function: 3 to 9, from the clock, so
/// the page cannot pass on a figure it was written to show.
fn invocation_count() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    3 + nanos % 7
}

/// Waits until the usage API counts `total` invocations and the failed
/// one's logs are kept (both are written as invocations end; logs in the
/// background): the browser then sees a settled state.
async fn settled(server: &NimbusServe, total: u64, failed_logs: &str) {
    let client = server.client().with_key(KEY);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let usage = client.get(&format!("/usage/v1/{TENANT}")).await;
        let counted = (usage.status == 200)
            .then(|| usage.json()["totals"]["invocations"].as_u64())
            .flatten();
        let logs = client.get(failed_logs).await.status;
        if counted == Some(total) && logs == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the usage API did not settle: {counted:?} of {total} invocations, logs {logs}: {}\n{}",
            usage.text(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the browser script, bounded; its status and what it printed.
fn run_script(script: &Path, env: &[(&str, String)]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new("node")
        .arg(script)
        .current_dir(script.parent().expect("tests/console"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "console.test.mjs ran over {SCRIPT_TIMEOUT:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_console_shows_a_person_the_invocations_and_a_failures_logs() {
    let script = browser_tools();
    let dir = ServeDir::new(&format!(
        r#"
ledger = "usage"
data_dir = "data"

[usage]
prices = "prices.toml"

[tenants.{TENANT}]
api_keys = ["{KEY}"]

[[functions]]
tenant = "{TENANT}"
name = "hello"
component = {hello:?}

[[functions]]
tenant = "{TENANT}"
name = "crash"
component = {trap:?}
"#,
        hello = guest_path("hello-http"),
        trap = guest_path("trap"),
    ));
    std::fs::write(dir.path().join("prices.toml"), PRICES).expect("write prices");
    let server = dir.start();
    let client = server.client().with_key(KEY);

    let n = invocation_count();
    for _ in 0..n {
        let r = client
            .post(&format!("/{TENANT}/hello"))
            .body("hi")
            .await
            .expect(200);
        assert_eq!(r.text(), "Hello from Nimbus!\n");
    }
    let failed = client
        .post(&format!("/{TENANT}/crash"))
        .body("{}")
        .await
        .expect(500);
    let failed_id = failed.invocation_id().to_string();
    let outcome = failed
        .header(OUTCOME_HEADER)
        .expect("an outcome")
        .to_string();
    assert_eq!(outcome, "trap");
    let logs = format!("/usage/v1/{TENANT}/functions/crash/logs/{failed_id}");
    settled(&server, u64::from(n) + 1, &logs).await;

    // A fresh picture for the README with NIMBUS_CONSOLE_SCREENSHOT=docs/console.png.
    let screenshot = std::env::var_os("NIMBUS_CONSOLE_SCREENSHOT").map_or_else(
        || Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png"),
        |p| repo().join(p),
    );
    let _ = std::fs::remove_file(&screenshot);
    let started = Instant::now();
    let (status, output) = tokio::task::spawn_blocking({
        let env = [
            ("NIMBUS_URL", format!("http://{}", server.addr)),
            ("NIMBUS_TENANT", TENANT.to_string()),
            ("NIMBUS_KEY", KEY.to_string()),
            ("NIMBUS_FUNCTION", "hello".to_string()),
            ("NIMBUS_INVOCATIONS", n.to_string()),
            ("NIMBUS_FAILED_FUNCTION", "crash".to_string()),
            ("NIMBUS_FAILED_ID", failed_id.clone()),
            ("NIMBUS_FAILED_OUTCOME", outcome.clone()),
            ("NIMBUS_SCREENSHOT", screenshot.display().to_string()),
        ];
        move || run_script(&script, &env)
    })
    .await
    .expect("the script's thread");
    println!(
        "console.test.mjs ({n} invocations, {:.1} s):\n{output}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        status.success(),
        "console.test.mjs: {status}\n{output}\n{}",
        server.log()
    );
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {}",
        screenshot.display()
    );
    println!("screenshot: {}", screenshot.display());
    server.stop();
}
