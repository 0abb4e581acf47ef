//! The real `nimbus` binary, run the way a user runs it.

use std::path::Path;
use std::process::Output;

use nimbus_core::{Outcome, UsageRecord};

use crate::support::{guest_path, nimbus};

fn run(dir: &Path, args: &[&str]) -> Output {
    nimbus()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run nimbus")
}

#[test]
fn run_echo_prints_the_response_usage_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("in.txt"), b"hello nimbus").expect("write");
    let out = run(
        dir.path(),
        &[
            "run",
            &guest_path("echo"),
            "--data",
            "in.txt",
            "--tenant",
            "acme",
            "--usage-json",
            "usage.json",
            "--metrics",
            "metrics.txt",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello nimbus");

    let usage: UsageRecord =
        serde_json::from_slice(&std::fs::read(dir.path().join("usage.json")).expect("usage"))
            .expect("usage json");
    assert_eq!(usage.outcome, Outcome::Success);
    assert_eq!(
        (usage.tenant.as_str(), usage.function.as_str()),
        ("acme", "echo")
    );
    assert!(usage.fuel_consumed > 0 && usage.billed_duration_ms >= 1);

    let metrics = std::fs::read_to_string(dir.path().join("metrics.txt")).expect("metrics");
    let series =
        "nimbus_invocations_total{tenant=\"acme\",function=\"echo\",outcome=\"success\"} 1";
    assert!(metrics.contains(series), "{metrics}");
    let fuel = format!(
        "nimbus_fuel_consumed_total{{tenant=\"acme\",function=\"echo\"}} {}",
        usage.fuel_consumed
    );
    assert!(metrics.contains(&fuel), "{metrics}");

    // The default ledger got the same record.
    let ledger =
        nimbus_core::JsonLinesLedger::read(dir.path().join("nimbus-usage.jsonl")).expect("ledger");
    assert_eq!(ledger, [usage]);
}

#[test]
fn guest_logs_go_to_stderr_prefixed_with_the_invocation_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("n"), b"100").expect("write");
    let out = run(
        dir.path(),
        &[
            "run",
            &guest_path("compute"),
            "--data",
            "n",
            "--usage-json",
            "u.json",
        ],
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, b"25");
    let usage: UsageRecord =
        serde_json::from_slice(&std::fs::read(dir.path().join("u.json")).expect("u"))
            .expect("json");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("[{}] primes below 100: 25", usage.invocation_id)),
        "{stderr}"
    );
}

#[test]
fn each_failure_exits_non_zero_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("junk.wasm"), b"not wasm at all").expect("write");
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["run", &guest_path("spin-loop"), "--fuel", "1000000"],
            5,
            "error: out of fuel",
        ),
        (
            &["run", &guest_path("memory-bomb"), "--memory", "8388608"],
            6,
            "error: memory limit exceeded",
        ),
        (
            &["run", &guest_path("sleep"), "--timeout", "200"],
            7,
            "error: timeout",
        ),
        (
            &["run", &guest_path("deep-recursion")],
            8,
            "error: trap: stack overflow",
        ),
        (&["run", &guest_path("trap")], 9, "error: trap: wasm trap"),
        (
            &["run", "junk.wasm"],
            3,
            "invalid component: not a WebAssembly binary",
        ),
        (
            &["run", &guest_path("compute")],
            4,
            "error: guest error: invalid input",
        ),
    ];
    for (args, code, line) in cases {
        let out = run(dir.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
        assert!(errors[0].contains(line), "{args:?}: {stderr}");
    }
}
