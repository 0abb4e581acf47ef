//! The command-line guests (`kv-counter`, `blob-store`, `publisher`, ...):
//! each takes one command as its event data and answers with text, or fails
//! with a guest error.

use std::collections::BTreeSet;

use nimbus_core::{Error, GuestError, Host, Invocation, Outcome, Report, UsageRecord};

use super::host::event;

/// Invokes `tenant/function` with `text` as the event data.
pub async fn call(
    host: &Host,
    tenant: &str,
    function: &str,
    text: &str,
) -> Result<Invocation, Error> {
    host.invoke(tenant, function, event(text.as_bytes())).await
}

/// The invocation of a command that must succeed.
pub async fn done(host: &Host, tenant: &str, function: &str, command: &str) -> Invocation {
    call(host, tenant, function, command)
        .await
        .unwrap_or_else(|e| panic!("{tenant}/{function} `{}`: {e}", shorten(command)))
}

/// The response of a command that must succeed, as text.
pub async fn ok(host: &Host, tenant: &str, function: &str, command: &str) -> String {
    let done = done(host, tenant, function, command).await;
    String::from_utf8(done.response.data).expect("UTF-8 response")
}

/// The guest error and report of a command that must fail with one.
pub async fn guest_err(
    host: &Host,
    tenant: &str,
    function: &str,
    command: &str,
) -> (GuestError, Box<Report>) {
    match call(host, tenant, function, command).await {
        Err(Error::Guest { error, report }) => {
            assert_eq!(report.usage.outcome, Outcome::GuestError);
            (error, report)
        }
        Err(e) => panic!(
            "{tenant}/{function} `{}`: expected a guest error, got {e}",
            shorten(command)
        ),
        Ok(done) => panic!(
            "{tenant}/{function} `{}`: expected a guest error, got {:?}",
            shorten(command),
            String::from_utf8_lossy(&done.response.data)
        ),
    }
}

/// The message and report of a command that must fail with `failed(..)`.
pub async fn failed(
    host: &Host,
    tenant: &str,
    function: &str,
    command: &str,
) -> (String, Box<Report>) {
    match guest_err(host, tenant, function, command).await {
        (GuestError::Failed(m), report) => (m, report),
        (error, _) => panic!(
            "{tenant}/{function} `{}`: expected failed(..), got {error}",
            shorten(command)
        ),
    }
}

/// Asserts that a command fails with a message containing every one of
/// `parts`; returns the report.
pub async fn fails_with(
    host: &Host,
    tenant: &str,
    function: &str,
    command: &str,
    parts: &[&str],
) -> Box<Report> {
    let (m, report) = failed(host, tenant, function, command).await;
    for part in parts {
        assert!(
            m.contains(part),
            "{tenant}/{function} `{}`: {m:?} does not contain {part:?}",
            shorten(command)
        );
    }
    report
}

/// `s`, cut to 80 bytes: commands carry megabytes at times.
pub fn shorten(s: &str) -> String {
    if s.len() <= 80 {
        s.to_string()
    } else {
        format!("{}… ({} bytes)", &s[..s.floor_char_boundary(80)], s.len())
    }
}

/// The lines of a listing, whose order the guests do not promise.
pub fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(str::to_string).collect()
}

/// The usage record of an invocation, whether it succeeded or not.
pub fn usage(result: &Result<Invocation, Error>) -> UsageRecord {
    match result {
        Ok(done) => done.usage.clone(),
        Err(e) => e.report().expect("a report").usage.clone(),
    }
}
