//! `nimbus deploy PATH --tenant T --name F`: a component (or a function's
//! directory, built first as `nimbus build` builds it) uploaded with
//! `PUT /admin/v1/tenants/{t}/functions/{f}`, which publishes a version and
//! moves an alias (`live` unless `--alias`) to it.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode, header};
use nimbus_build::{Language, Options, Plain};
use serde::Deserialize;

use super::api::{Api, ascii_json, refusal_message};
use super::progress::{Spinner, Upload, upload_bar};
use super::{Failure, Result, Server, parse, table};

/// The header a deploy's grants travel in (`nimbus_http::GRANTS_HEADER`).
const GRANTS_HEADER: &str = "x-nimbus-grants";

#[derive(Debug, clap::Args)]
#[command(after_help = "\
PATH is a component (.wasm) or a function's directory, built first as `nimbus build` builds it
(Python, JavaScript or Rust, told by its files).

Exit codes: 0 deployed, 1 other error, 2 bad arguments, 3 the server refused the component.

Examples:
  nimbus deploy hello.wasm --tenant acme --name hello
  nimbus deploy ./notes --tenant acme --name notes --kv-store notes --config title=Notes
  nimbus deploy hello.wasm --tenant acme --name hello --alias staging --public")]
pub struct DeployArgs {
    /// The component (.wasm), or a function's directory to build first.
    path: PathBuf,
    /// The tenant to deploy to.
    #[arg(long, value_name = "T", value_parser = parse::tenant)]
    tenant: String,
    /// The function's name.
    #[arg(long, value_name = "F", value_parser = parse::function_name)]
    name: String,
    /// The alias to move to the new version [default: live].
    #[arg(long, value_name = "A", value_parser = parse::alias)]
    alias: Option<String>,
    /// Anyone may invoke it, without a key.
    #[arg(long, conflicts_with = "private")]
    public: bool,
    /// Only the tenant's keys (and admin keys) may invoke it.
    #[arg(long)]
    private: bool,
    /// Fuel budget of each invocation.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Linear memory limit, bytes.
    #[arg(long, value_name = "BYTES")]
    memory: Option<u64>,
    /// Wall-clock timeout, milliseconds.
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
    /// Invocations of this function at once.
    #[arg(long, value_name = "N")]
    max_concurrency: Option<u32>,
    /// The grants as a JSON file (the keys of the x-nimbus-grants header), instead of the flags below.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = [
        "kv_stores", "blob_containers", "topics", "outbound_hosts", "directory", "config"
    ])]
    grants: Option<PathBuf>,
    /// Grant a key-value store (repeatable).
    #[arg(long = "kv-store", value_name = "S")]
    kv_stores: Vec<String>,
    /// Grant a blob container (repeatable).
    #[arg(long = "blob-container", value_name = "C")]
    blob_containers: Vec<String>,
    /// Grant a messaging topic, one of the tenant's queues (repeatable).
    #[arg(long = "topic", value_name = "Q")]
    topics: Vec<String>,
    /// Grant outbound HTTP to a host, `name` or `name:port` (repeatable).
    #[arg(long = "outbound-host", value_name = "H")]
    outbound_hosts: Vec<String>,
    /// Grant the tenant's directory, at /data.
    #[arg(long)]
    directory: bool,
    /// A wasi:config value (repeatable).
    #[arg(long = "config", value_name = "K=V", value_parser = parse::key_value)]
    config: Vec<(String, String)>,
    /// The language, when a directory holds the files of more than one.
    #[arg(long, value_name = "LANG", value_parser = ["python", "js", "rust"])]
    lang: Option<String>,
    /// Build a directory's module against this world without the SDK (as `nimbus build --world`).
    #[arg(long, value_name = "WORLD")]
    world: Option<String>,
    #[command(flatten)]
    server: Server,
}

/// The grants the server takes (its `x-nimbus-grants` keys), checked here
/// so that a typo is a usage error naming the file, not a refused deploy.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Grants {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    config: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outbound_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    kv_stores: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    directory: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    blob_containers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    topics: Vec<String>,
}

impl DeployArgs {
    /// The grants header's value, if anything is granted.
    fn grants(&self) -> Result<Option<String>> {
        let grants = match &self.grants {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    Failure::usage(format_args!("--grants {}: {e}", file.display()))
                })?;
                serde_json::from_str::<Grants>(&text)
                    .map_err(|e| Failure::usage(format_args!("--grants {}: {e}", file.display())))?
            }
            None => Grants {
                config: self.config.iter().cloned().collect(),
                outbound_hosts: self.outbound_hosts.clone(),
                kv_stores: self.kv_stores.clone(),
                directory: self.directory,
                blob_containers: self.blob_containers.clone(),
                topics: self.topics.clone(),
            },
        };
        let value = serde_json::to_value(&grants).map_err(Failure::other)?;
        Ok(match value.as_object() {
            Some(map) if map.is_empty() => None,
            _ => Some(ascii_json(&value)),
        })
    }

    /// `?alias=…&fuel=…`: what was given.
    fn query(&self) -> String {
        let mut params: Vec<String> = Vec::new();
        if let Some(alias) = &self.alias {
            params.push(format!("alias={alias}"));
        }
        for (key, value) in [
            ("fuel", self.fuel),
            ("max_memory_bytes", self.memory),
            ("timeout_ms", self.timeout),
            ("max_concurrency", self.max_concurrency.map(u64::from)),
        ] {
            if let Some(v) = value {
                params.push(format!("{key}={v}"));
            }
        }
        if self.public {
            params.push("public=true".into());
        } else if self.private {
            params.push("public=false".into());
        }
        if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        }
    }
}

pub(crate) async fn deploy(args: DeployArgs) -> Result<()> {
    let api = Api::admin(&args.server)?;
    let grants = args.grants()?;
    let bytes = Bytes::from(component(&args)?);
    let path = format!(
        "/admin/v1/tenants/{}/functions/{}{}",
        args.tenant,
        args.name,
        args.query()
    );
    let mut request = api
        .request(Method::PUT, &path)
        .header(header::CONTENT_TYPE, "application/wasm");
    if let Some(grants) = &grants {
        request = request.header(GRANTS_HEADER, grants);
    }
    let what = format!("{}/{}", args.tenant, args.name);
    let bar = upload_bar(&what, bytes.len() as u64, api.json);
    let request = request
        .body(Upload::new(bytes, bar.clone()).boxed())
        .map_err(Failure::other)?;
    let reply = api.exchange(request).await;
    bar.finish_and_clear();
    let reply = reply?;
    if !reply.status.is_success() {
        // The component itself refused (invalid, too large, an import
        // nothing provides): exit code 3, as `nimbus run` has it.
        let code = match reply.status {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => 3,
            _ => 1,
        };
        return Err(Failure {
            code,
            message: refusal_message(reply.status, &reply.body),
        });
    }
    if api.json {
        reply.print_body();
        return Ok(());
    }
    let body = reply.json()?;
    let alias = args.alias.as_deref().unwrap_or("live");
    // `version` is the one published (the contract); a server that also
    // says `published` means the same, and is taken at its word.
    let version = Some(&body["published"])
        .filter(|v| v.is_u64())
        .unwrap_or(&body["version"]);
    println!(
        "deployed {}/{} version {} (alias {alias})",
        args.tenant,
        args.name,
        table::cell(version)
    );
    // Imports with nothing granted, each a sentence of the server's.
    for note in body["ungranted_imports"].as_array().into_iter().flatten() {
        eprintln!("note: {}", table::cell(note));
    }
    Ok(())
}

/// The component's bytes: the file, or the directory built into a
/// temporary file.
fn component(args: &DeployArgs) -> Result<Vec<u8>> {
    let path = &args.path;
    if !path.is_dir() {
        if args.lang.is_some() || args.world.is_some() {
            return Err(Failure::usage(format_args!(
                "--lang and --world build a directory; {} is a file",
                path.display()
            )));
        }
        return std::fs::read(path)
            .map_err(|e| Failure::other(format_args!("reading {}: {e}", path.display())));
    }
    let language = args
        .lang
        .as_deref()
        .map(str::parse::<Language>)
        .transpose()
        .map_err(Failure::usage)?;
    let options = Options {
        world: args.world.clone(),
        language,
    };
    let scratch = tempfile::tempdir()
        .map_err(|e| Failure::other(format_args!("a temporary directory: {e}")))?;
    let out = scratch.path().join(format!("{}.wasm", args.name));
    let terminal = std::io::stderr().is_terminal();
    let result = if terminal {
        let mut spinner = Spinner::new();
        let result = nimbus_build::build(path, &out, &options, &mut spinner);
        spinner.finish(result.is_ok());
        result
    } else {
        nimbus_build::build(path, &out, &options, &mut Plain)
    };
    let built = result.map_err(|e| {
        // Plain lines already showed a failed tool's output as it came.
        Failure::other(if terminal { e.to_string() } else { e.summary() })
    })?;
    eprintln!(
        "built {}: {} component, {} in {:.1} s",
        path.display(),
        built.language,
        table::size(built.bytes),
        built.elapsed.as_secs_f64()
    );
    std::fs::read(&out).map_err(|e| Failure::other(format_args!("reading {}: {e}", out.display())))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        deploy: DeployArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<DeployArgs, clap::Error> {
        Cli::try_parse_from(["deploy"].iter().chain(args)).map(|c| c.deploy)
    }

    #[test]
    fn flags_become_the_grants_header_and_the_query() {
        let args = parse(&[
            "f.wasm",
            "--tenant",
            "acme",
            "--name",
            "notes",
            "--kv-store",
            "notes",
            "--kv-store",
            "cache",
            "--config",
            "title=Café",
            "--directory",
            "--fuel",
            "5000",
            "--timeout",
            "300",
            "--alias",
            "staging",
            "--public",
        ])
        .expect("parses");
        let grants = args.grants().expect("grants").expect("some");
        assert!(grants.is_ascii());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&grants).expect("JSON"),
            serde_json::json!({"config": {"title": "Café"}, "kv_stores": ["notes", "cache"], "directory": true})
        );
        assert_eq!(
            args.query(),
            "?alias=staging&fuel=5000&timeout_ms=300&public=true"
        );

        let bare = parse(&["f.wasm", "--tenant", "acme", "--name", "f"]).expect("parses");
        assert_eq!(bare.grants().expect("grants"), None);
        assert_eq!(bare.query(), "");
        let private =
            parse(&["f.wasm", "--tenant", "acme", "--name", "f", "--private"]).expect("parses");
        assert_eq!(private.query(), "?public=false");
    }

    #[test]
    fn a_grants_file_is_checked_and_excludes_the_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("grants.json");
        std::fs::write(
            &file,
            r#"{"topics": ["orders"], "outbound_hosts": ["api.example.com:443"]}"#,
        )
        .expect("write");
        let file_arg = file.display().to_string();
        let args = parse(&[
            "f.wasm", "--tenant", "acme", "--name", "f", "--grants", &file_arg,
        ])
        .expect("parses");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&args.grants().expect("ok").expect("some"))
                .expect("JSON"),
            serde_json::json!({"topics": ["orders"], "outbound_hosts": ["api.example.com:443"]})
        );
        std::fs::write(&file, r#"{"topic": ["orders"]}"#).expect("write");
        let e = args.grants().expect_err("unknown key");
        assert_eq!(e.code, 2);
        assert!(e.message.contains("unknown field `topic`"), "{}", e.message);

        let e = parse(&[
            "f.wasm", "--tenant", "acme", "--name", "f", "--grants", &file_arg, "--topic", "q",
        ])
        .expect_err("conflict");
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let e = parse(&["f.wasm", "--tenant", "Acme", "--name", "f"]).expect_err("bad name");
        assert_eq!(e.exit_code(), 2);
    }
}
