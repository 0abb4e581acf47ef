//! `nimbus invoke T/F[@V|:ALIAS]`: one request to the function's URL on
//! the gateway (`/{t}/{f}…`), the admin key as its bearer. The response
//! body goes to stdout, the invocation's id, version and outcome to
//! stderr; the exit code is the outcome's, numbered as `nimbus run`'s.

use std::io::{Read, Write};
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, StatusCode, header};
use nimbus_core::Outcome;

use super::api::{Api, refusal_message};
use super::parse::{self, Target};
use super::{Failure, Result, Server};

/// The headers the gateway answers invocations with.
const INVOCATION_ID: &str = "x-nimbus-invocation-id";
const VERSION: &str = "x-nimbus-function-version";
const OUTCOME: &str = "x-nimbus-outcome";

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit codes: 0 success, 1 other error, 2 bad arguments, 4 guest error, 5 out of fuel,
6 memory limit, 7 timeout, 8 stack overflow, 9 trap, 10 throttled.

Examples:
  nimbus invoke acme/hello                      # the live alias
  nimbus invoke acme/hello@3 --path /greet      # version 3, GET /acme/hello@3/greet
  echo '{\"n\": 1}' | nimbus invoke acme/handler:staging --data -")]
pub struct InvokeArgs {
    /// The function: T/F (its live alias), T/F@VERSION or T/F:ALIAS.
    #[arg(value_name = "T/F[@V|:ALIAS]", value_parser = parse::target)]
    target: Target,
    /// The request body: a file, or `-` for stdin [default: none].
    #[arg(long, value_name = "FILE|-")]
    data: Option<PathBuf>,
    /// The path below the function's URL, e.g. /users/7?full=1.
    #[arg(long, value_name = "/SUB/PATH")]
    path: Option<String>,
    /// The request method [default: POST with --data, GET without].
    #[arg(long, value_name = "METHOD")]
    method: Option<String>,
    /// The body's media type.
    #[arg(long, value_name = "MIME")]
    content_type: Option<String>,
    #[command(flatten)]
    server: Server,
}

/// The exit code of an `x-nimbus-outcome`, as `nimbus run` numbers them
/// (`crate::exit_code`); 1 for one this client does not know.
pub(crate) fn outcome_code(outcome: &str) -> u8 {
    match serde_json::from_value::<Outcome>(serde_json::Value::String(outcome.to_string())) {
        Ok(Outcome::Success) => 0,
        Ok(Outcome::GuestError) => 4,
        Ok(Outcome::OutOfFuel) => 5,
        Ok(Outcome::MemoryLimit) => 6,
        Ok(Outcome::Timeout) => 7,
        Ok(Outcome::StackOverflow) => 8,
        Ok(Outcome::Trap) => 9,
        Ok(Outcome::Throttled) => 10,
        _ => 1,
    }
}

fn read_data(data: &Option<PathBuf>) -> Result<Option<Vec<u8>>> {
    match data {
        None => Ok(None),
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| Failure::other(format_args!("reading stdin: {e}")))?;
            Ok(Some(buf))
        }
        Some(p) => std::fs::read(p)
            .map(Some)
            .map_err(|e| Failure::other(format_args!("reading --data {}: {e}", p.display()))),
    }
}

/// The gateway path: the function's, then `--path`.
fn request_path(target: &Target, sub: Option<&str>) -> String {
    let mut path = target.gateway_path();
    match sub {
        None | Some("") => {}
        Some(s) if s.starts_with('/') || s.starts_with('?') => path.push_str(s),
        Some(s) => {
            path.push('/');
            path.push_str(s);
        }
    }
    path
}

pub(crate) async fn invoke(args: InvokeArgs) -> Result<u8> {
    let api = Api::new(&args.server)?;
    let data = read_data(&args.data)?;
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| Failure::usage(format_args!("--method {m}: not an HTTP method")))?,
        None if data.is_some() => Method::POST,
        None => Method::GET,
    };
    let path = request_path(&args.target, args.path.as_deref());
    let mut request = api.request(method, &path);
    if let Some(mime) = &args.content_type {
        request = request.header(header::CONTENT_TYPE, mime);
    }
    let request = request
        .body(Full::new(Bytes::from(data.unwrap_or_default())).boxed())
        .map_err(|e| Failure::usage(format_args!("--path {path}: {e}")))?;
    let reply = api.exchange(request).await?;

    let id = reply.header(INVOCATION_ID).map(str::to_string);
    let version = reply.header(VERSION).map(str::to_string);
    let outcome = reply.header(OUTCOME).map(str::to_string);
    let code = match outcome.as_deref() {
        Some(o) => outcome_code(o),
        None if reply.status.is_success() => 0,
        // Refused before any invocation (no key, no such function).
        None if reply.status == StatusCode::TOO_MANY_REQUESTS => 10,
        None => 1,
    };
    // The function's answer, or (for --json) the gateway's error body too.
    if code == 0 || api.json {
        let mut out = std::io::stdout().lock();
        out.write_all(&reply.body)
            .and_then(|()| out.flush())
            .map_err(|e| Failure::other(format_args!("writing the response: {e}")))?;
    }
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    if api.json {
        eprintln!(
            "{}",
            serde_json::json!({
                "invocation_id": id,
                "version": version.as_deref().and_then(|v| v.parse::<u64>().ok()),
                "outcome": outcome,
                "status": reply.status.as_u16(),
            })
        );
    } else if id.is_some() || outcome.is_some() {
        eprintln!(
            "invocation {} version {}: {} (HTTP {})",
            shown(&id),
            shown(&version),
            shown(&outcome),
            reply.status.as_u16()
        );
    }
    if code != 0 {
        eprintln!("error: {}", refusal_message(reply.status, &reply.body));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_exit_with_the_codes_of_nimbus_run() {
        for (outcome, code) in [
            ("success", 0),
            ("guest_error", 4),
            ("out_of_fuel", 5),
            ("memory_limit", 6),
            ("timeout", 7),
            ("stack_overflow", 8),
            ("trap", 9),
            ("throttled", 10),
            ("something_new", 1),
        ] {
            assert_eq!(outcome_code(outcome), code, "{outcome}");
        }
    }

    #[test]
    fn the_sub_path_follows_the_functions_url() {
        let live = parse::target("acme/hello").expect("target");
        let v3 = parse::target("acme/hello@3").expect("target");
        assert_eq!(request_path(&live, None), "/acme/hello");
        assert_eq!(request_path(&live, Some("/a/b?c=1")), "/acme/hello/a/b?c=1");
        assert_eq!(request_path(&v3, Some("greet")), "/acme/hello@3/greet");
        assert_eq!(request_path(&v3, Some("?q=1")), "/acme/hello@3?q=1");
    }
}
