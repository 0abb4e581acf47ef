//! `nimbus tenants list|show|create|delete|key create|key delete`: tenants
//! and their API keys. A key is shown once, when it is created (the server
//! keeps only its sha256).

use std::io::{BufRead, IsTerminal, Write};

use clap::Subcommand;
use hyper::Method;

use super::api::Api;
use super::{Failure, Result, Server, parse, table};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  nimbus tenants create acme --fuel 5000000 --rate-limit 100 --burst 200
  nimbus tenants key create acme          # a second key, for rotation
  nimbus tenants key delete acme KEY_ID   # then revoke the old one
  nimbus tenants delete acme --yes")]
pub struct TenantsArgs {
    #[command(subcommand)]
    command: TenantsCommand,
    #[command(flatten)]
    server: Server,
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
    /// List tenants.
    List,
    /// Show one tenant: its limits, rate limit, keys and functions.
    Show {
        #[arg(value_name = "NAME", value_parser = parse::tenant)]
        name: String,
    },
    /// Create a tenant; prints its first API key (shown only this once).
    Create(Box<CreateArgs>),
    /// Delete a tenant with all its functions, data and keys.
    Delete {
        #[arg(value_name = "NAME", value_parser = parse::tenant)]
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Create or revoke a tenant's API keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// A new API key (the old ones stay valid); shown only this once.
    Create {
        #[arg(value_name = "NAME", value_parser = parse::tenant)]
        name: String,
    },
    /// Revoke a key.
    Delete {
        #[arg(value_name = "NAME", value_parser = parse::tenant)]
        name: String,
        #[arg(value_name = "KEY_ID")]
        key_id: String,
    },
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    #[arg(value_name = "NAME", value_parser = parse::tenant)]
    name: String,
    /// Fuel budget of each invocation.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Linear memory limit of each invocation, bytes.
    #[arg(long, value_name = "BYTES")]
    memory: Option<u64>,
    /// Wall-clock timeout of each invocation, milliseconds.
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
    /// The tenant's invocations at once.
    #[arg(long, value_name = "N")]
    max_concurrency: Option<u64>,
    /// Key-value quota, bytes.
    #[arg(long, value_name = "BYTES")]
    max_kv_bytes: Option<u64>,
    /// Blob quota, bytes.
    #[arg(long, value_name = "BYTES")]
    max_blob_bytes: Option<u64>,
    /// All of the tenant's instances' memory at once, bytes.
    #[arg(long, value_name = "BYTES")]
    max_tenant_memory: Option<u64>,
    /// Share of the CPU against other tenants (1 = equal).
    #[arg(long, value_name = "N")]
    cpu_weight: Option<u64>,
    /// Requests per second (a token bucket) [default: unlimited].
    #[arg(long, value_name = "N")]
    rate_limit: Option<u64>,
    /// The bucket's size [default: the rate limit].
    #[arg(long, value_name = "N", requires = "rate_limit")]
    burst: Option<u64>,
}

impl CreateArgs {
    fn body(&self) -> serde_json::Value {
        let mut limits = serde_json::Map::new();
        for (key, value) in [
            ("fuel", self.fuel),
            ("max_memory_bytes", self.memory),
            ("timeout_ms", self.timeout),
            ("max_concurrency", self.max_concurrency),
            ("max_kv_bytes", self.max_kv_bytes),
            ("max_blob_bytes", self.max_blob_bytes),
            ("max_tenant_memory_bytes", self.max_tenant_memory),
            ("cpu_weight", self.cpu_weight),
        ] {
            if let Some(v) = value {
                limits.insert(key.into(), v.into());
            }
        }
        let mut body = serde_json::json!({ "name": self.name, "limits": limits });
        if let Some(per_second) = self.rate_limit {
            body["rate_limit"] = serde_json::json!({
                "per_second": per_second,
                "burst": self.burst.unwrap_or(per_second),
            });
        }
        body
    }
}

pub(crate) async fn tenants(args: TenantsArgs) -> Result<()> {
    let api = Api::admin(&args.server)?;
    match args.command {
        TenantsCommand::List => {
            let reply = api.get("/admin/v1/tenants").await?;
            if api.json {
                reply.print_body();
                return Ok(());
            }
            let body = reply.json()?;
            let rows: Vec<Vec<String>> = body["tenants"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    vec![
                        table::cell(&t["name"]),
                        count(&t["functions"]),
                        count(&t["keys"]),
                        rate_limit(&t["rate_limit"]),
                    ]
                })
                .collect();
            table::print(&["NAME", "FUNCTIONS", "KEYS", "RATE LIMIT"], &rows);
        }
        TenantsCommand::Show { name } => {
            let reply = api.get(&format!("/admin/v1/tenants/{name}")).await?;
            if api.json {
                reply.print_body();
                return Ok(());
            }
            print!("{}", show(&reply.json()?));
        }
        TenantsCommand::Create(create) => {
            let reply = api
                .call(Method::POST, "/admin/v1/tenants", Some(&create.body()))
                .await?;
            if api.json {
                reply.print_body();
                return Ok(());
            }
            let body = reply.json()?;
            println!("created tenant {}", create.name);
            print_key(&body);
        }
        TenantsCommand::Delete { name, yes } => {
            if !yes {
                confirm(&name)?;
            }
            let reply = api
                .call(Method::DELETE, &format!("/admin/v1/tenants/{name}"), None)
                .await?;
            if api.json {
                if !reply.body.is_empty() {
                    reply.print_body();
                }
                return Ok(());
            }
            println!("deleted tenant {name}");
        }
        TenantsCommand::Key(KeyCommand::Create { name }) => {
            let reply = api
                .call(
                    Method::POST,
                    &format!("/admin/v1/tenants/{name}/keys"),
                    None,
                )
                .await?;
            if api.json {
                reply.print_body();
                return Ok(());
            }
            println!("created a key for tenant {name}");
            print_key(&reply.json()?);
        }
        TenantsCommand::Key(KeyCommand::Delete { name, key_id }) => {
            let path = format!(
                "/admin/v1/tenants/{name}/keys/{}",
                super::api::segment(&key_id)
            );
            let reply = api.call(Method::DELETE, &path, None).await?;
            if api.json {
                if !reply.body.is_empty() {
                    reply.print_body();
                }
                return Ok(());
            }
            println!("revoked key {key_id} of tenant {name}");
        }
    }
    Ok(())
}

/// The new key, on stdout; the reminder on stderr.
fn print_key(body: &serde_json::Value) {
    println!("api key: {}", table::cell(&body["api_key"]));
    println!("key id: {}", table::cell(&body["key_id"]));
    eprintln!("note: the key is shown only now; the server keeps only its sha256");
}

/// Asks on a terminal; refuses (a usage error) without one.
fn confirm(name: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format_args!(
            "deleting tenant `{name}` deletes its functions, versions, data and keys: pass --yes to confirm"
        )));
    }
    eprint!("delete tenant `{name}` with its functions, versions, data and keys? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure::other("not deleted")),
    }
}

fn count(list: &serde_json::Value) -> String {
    list.as_array()
        .map(|l| l.len().to_string())
        .unwrap_or_else(|| "-".into())
}

/// `100/s burst 200`, or `-`.
fn rate_limit(limit: &serde_json::Value) -> String {
    if limit.is_null() {
        return "-".into();
    }
    format!(
        "{}/s burst {}",
        table::cell(&limit["per_second"]),
        table::cell(&limit["burst"])
    )
}

/// A TenantJson as text.
fn show(t: &serde_json::Value) -> String {
    let mut text = format!("tenant: {}\n", table::cell(&t["name"]));
    text.push_str(&format!("rate limit: {}\n", rate_limit(&t["rate_limit"])));
    if let Some(limits) = t["limits"].as_object() {
        text.push_str("limits:\n");
        for (key, value) in limits {
            text.push_str(&format!("  {key}: {}\n", table::cell(value)));
        }
    }
    let functions: Vec<String> = t["functions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(table::cell)
        .collect();
    text.push_str(&format!(
        "functions: {}\n",
        if functions.is_empty() {
            "-".into()
        } else {
            functions.join(", ")
        }
    ));
    text.push_str("keys:\n");
    let keys: Vec<Vec<String>> = t["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            vec![
                table::cell(&k["key_id"]),
                table::time(&table::cell(&k["created_at"])),
                table::cell(&k["source"]),
            ]
        })
        .collect();
    for line in table::render(&["KEY ID", "CREATED", "SOURCE"], &keys).lines() {
        text.push_str(&format!("  {line}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        tenants: TenantsArgs,
    }

    fn create(args: &[&str]) -> std::result::Result<CreateArgs, clap::Error> {
        let cli = Cli::try_parse_from(["tenants", "create"].iter().chain(args))?;
        match cli.tenants.command {
            TenantsCommand::Create(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_sends_the_limits_given_and_a_rate_limit() {
        let c = create(&[
            "acme",
            "--fuel",
            "5000",
            "--max-tenant-memory",
            "1024",
            "--rate-limit",
            "100",
        ])
        .expect("parses");
        assert_eq!(
            c.body(),
            serde_json::json!({
                "name": "acme",
                "limits": {"fuel": 5000, "max_tenant_memory_bytes": 1024},
                "rate_limit": {"per_second": 100, "burst": 100},
            })
        );
        let c = create(&["acme", "--rate-limit", "10", "--burst", "50"]).expect("parses");
        assert_eq!(
            c.body()["rate_limit"],
            serde_json::json!({"per_second": 10, "burst": 50})
        );
        assert_eq!(
            create(&["acme"]).expect("parses").body(),
            serde_json::json!({"name": "acme", "limits": {}})
        );
        let e = create(&["acme", "--burst", "5"]).expect_err("burst alone");
        assert_eq!(e.exit_code(), 2);
        let e = create(&["ACME"]).expect_err("bad name");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn a_tenant_reads_as_text() {
        let t = serde_json::json!({
            "name": "acme", "limits": {"fuel": 10}, "rate_limit": {"per_second": 5, "burst": 9},
            "keys": [{"key_id": "k1", "created_at": "2026-12-01T10:00:00Z", "source": "config"}],
            "functions": ["a", "b"],
        });
        assert_eq!(
            show(&t),
            "tenant: acme\nrate limit: 5/s burst 9\nlimits:\n  fuel: 10\nfunctions: a, b\nkeys:\n  \
             KEY ID  CREATED               SOURCE\n  k1      2026-12-01 10:00:00Z  config\n"
        );
    }
}
