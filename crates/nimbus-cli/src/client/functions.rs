//! Functions, their versions and aliases: `nimbus functions`, `versions`,
//! `alias set|list|delete` and `rollback`.

use clap::Subcommand;
use hyper::Method;

use super::api::Api;
use super::parse::{self, FunctionRef, Routing, routing_text};
use super::{Result, Server, table};

#[derive(Debug, clap::Args)]
pub struct FunctionsArgs {
    /// Only this tenant's functions [default: every tenant's].
    #[arg(long, value_name = "T", value_parser = parse::tenant)]
    tenant: Option<String>,
    #[command(flatten)]
    server: Server,
}

#[derive(Debug, clap::Args)]
pub struct VersionsArgs {
    /// The function, as TENANT/FUNCTION.
    #[arg(value_name = "T/F", value_parser = parse::function_ref)]
    function: FunctionRef,
    #[command(flatten)]
    server: Server,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  nimbus alias set acme/hello live 3          # every request to version 3
  nimbus alias set acme/hello live 3=90,2=10  # 90 % to version 3, 10 % to version 2
  nimbus alias set acme/hello staging 4       # invoke it as acme/hello:staging
  nimbus alias list acme/hello
  nimbus alias delete acme/hello staging")]
pub struct AliasArgs {
    #[command(subcommand)]
    command: AliasCommand,
    #[command(flatten)]
    server: Server,
}

#[derive(Debug, Subcommand)]
enum AliasCommand {
    /// Create an alias or move it (the routing it had is kept for rollback).
    Set {
        /// The function, as TENANT/FUNCTION.
        #[arg(value_name = "T/F", value_parser = parse::function_ref)]
        function: FunctionRef,
        /// The alias, e.g. live or staging.
        #[arg(value_name = "NAME", value_parser = parse::alias)]
        name: String,
        /// One version (3), or two with weights summing to 100 (3=90,2=10).
        #[arg(value_name = "VERSION[=WEIGHT][,VERSION=WEIGHT]", value_parser = parse::routing)]
        routing: Routing,
    },
    /// List a function's aliases and where they route.
    List {
        /// The function, as TENANT/FUNCTION.
        #[arg(value_name = "T/F", value_parser = parse::function_ref)]
        function: FunctionRef,
    },
    /// Delete an alias (not `live`).
    Delete {
        /// The function, as TENANT/FUNCTION.
        #[arg(value_name = "T/F", value_parser = parse::function_ref)]
        function: FunctionRef,
        /// The alias.
        #[arg(value_name = "NAME", value_parser = parse::alias)]
        name: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The function, as TENANT/FUNCTION.
    #[arg(value_name = "T/F", value_parser = parse::function_ref)]
    function: FunctionRef,
    /// The alias to move back.
    #[arg(long, value_name = "A", default_value = "live", value_parser = parse::alias)]
    alias: String,
    #[command(flatten)]
    server: Server,
}

pub(crate) async fn functions(args: FunctionsArgs) -> Result<()> {
    let api = Api::admin(&args.server)?;
    let functions = match &args.tenant {
        Some(tenant) => {
            let reply = api
                .get(&format!("/admin/v1/tenants/{tenant}/functions"))
                .await?;
            if api.json {
                reply.print_body();
                return Ok(());
            }
            reply.json()?["functions"].take()
        }
        None => {
            // Every tenant's, gathered into one answer of the same shape.
            let tenants = api.get("/admin/v1/tenants").await?.json()?;
            let mut all = Vec::new();
            for tenant in tenants["tenants"].as_array().into_iter().flatten() {
                let name = table::cell(&tenant["name"]);
                let path = format!("/admin/v1/tenants/{}/functions", super::api::segment(&name));
                if let Some(list) = api.get(&path).await?.json()?["functions"].as_array() {
                    all.extend(list.iter().cloned());
                }
            }
            if api.json {
                println!("{}", serde_json::json!({ "functions": all }));
                return Ok(());
            }
            serde_json::Value::Array(all)
        }
    };
    let rows: Vec<Vec<String>> = functions
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            vec![
                table::cell(&f["tenant"]),
                table::cell(&f["function"]),
                table::cell(&f["kind"]),
                table::cell(&f["version"]),
                aliases_text(&f["aliases"]),
            ]
        })
        .collect();
    table::print(&["TENANT", "FUNCTION", "KIND", "LIVE", "ALIASES"], &rows);
    Ok(())
}

/// A FunctionJson's `aliases` as `live:3 staging:4=90,3=10`.
fn aliases_text(aliases: &serde_json::Value) -> String {
    let Some(map) = aliases.as_object() else {
        return "-".into();
    };
    let mut names: Vec<&String> = map.keys().collect();
    // `live` first, then the others by name.
    names.sort_by_key(|n| (n.as_str() != "live", n.as_str()));
    names
        .iter()
        .map(|n| format!("{n}:{}", routing_text(&map[n.as_str()]["routing"])))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) async fn versions(args: VersionsArgs) -> Result<()> {
    let api = Api::admin(&args.server)?;
    let reply = api
        .get(&format!("{}/versions", args.function.admin_path()))
        .await?;
    if api.json {
        reply.print_body();
        return Ok(());
    }
    let body = reply.json()?;
    let rows: Vec<Vec<String>> = body["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let sha = table::cell(&v["sha256"]);
            let aliases: Vec<String> = v["aliases"]
                .as_array()
                .into_iter()
                .flatten()
                .map(table::cell)
                .collect();
            vec![
                table::cell(&v["version"]),
                sha.chars().take(12).collect(),
                v["size"]
                    .as_u64()
                    .map(table::size)
                    .unwrap_or_else(|| "-".into()),
                table::time(&table::cell(&v["created_at"])),
                if aliases.is_empty() {
                    "-".into()
                } else {
                    aliases.join(",")
                },
            ]
        })
        .collect();
    table::print(&["VERSION", "SHA256", "SIZE", "CREATED", "ALIASES"], &rows);
    Ok(())
}

pub(crate) async fn alias(args: AliasArgs) -> Result<()> {
    let api = Api::admin(&args.server)?;
    match args.command {
        AliasCommand::Set {
            function,
            name,
            routing,
        } => {
            let path = format!("{}/aliases/{name}", function.admin_path());
            let reply = api
                .call(Method::PUT, &path, Some(&routing.to_json()))
                .await?;
            if api.json {
                reply.print_body();
                return Ok(());
            }
            let body = reply.json()?;
            println!("{}", alias_line(&function, &name, &body, "was"));
        }
        AliasCommand::List { function } => {
            let reply = api
                .get(&format!("{}/aliases", function.admin_path()))
                .await?;
            if api.json {
                reply.print_body();
                return Ok(());
            }
            let body = reply.json()?;
            let mut rows: Vec<Vec<String>> = body["aliases"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, alias)| {
                    vec![
                        name.clone(),
                        routing_text(&alias["routing"]),
                        routing_text(&alias["previous"]),
                    ]
                })
                .collect();
            rows.sort_by(|a, b| (a[0] != "live", &a[0]).cmp(&(b[0] != "live", &b[0])));
            table::print(&["ALIAS", "ROUTING", "PREVIOUS"], &rows);
        }
        AliasCommand::Delete { function, name } => {
            let path = format!("{}/aliases/{name}", function.admin_path());
            let reply = api.call(Method::DELETE, &path, None).await?;
            if api.json {
                if !reply.body.is_empty() {
                    reply.print_body();
                }
                return Ok(());
            }
            println!("deleted alias {name} of {function}");
        }
    }
    Ok(())
}

/// `acme/hello alias live: 3=90,2=10 (was 2)`.
fn alias_line(function: &FunctionRef, name: &str, alias: &serde_json::Value, was: &str) -> String {
    let previous = routing_text(&alias["previous"]);
    let previous = if previous == "-" {
        String::new()
    } else {
        format!(" ({was} {previous})")
    };
    format!(
        "{function} alias {name}: {}{previous}",
        routing_text(&alias["routing"])
    )
}

pub(crate) async fn rollback(args: RollbackArgs) -> Result<()> {
    let api = Api::admin(&args.server)?;
    let path = format!(
        "{}/rollback?alias={}",
        args.function.admin_path(),
        args.alias
    );
    let reply = api.call(Method::POST, &path, None).await?;
    if api.json {
        reply.print_body();
        return Ok(());
    }
    let body = reply.json()?;
    println!(
        "rolled back: {}",
        alias_line(&args.function, &args.alias, &body, "from")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_print_live_first_then_by_name() {
        let aliases = serde_json::json!({
            "staging": {"routing": [{"version": 4, "weight": 90}, {"version": 3, "weight": 10}]},
            "live": {"routing": [{"version": 3, "weight": 100}], "previous": null},
            "beta": {"routing": [{"version": 2, "weight": 100}]},
        });
        assert_eq!(aliases_text(&aliases), "live:3 beta:2 staging:4=90,3=10");
        assert_eq!(aliases_text(&serde_json::Value::Null), "-");
    }

    #[test]
    fn an_alias_line_says_where_it_routes_and_where_it_did() {
        let f = parse::function_ref("acme/hello").expect("ref");
        let moved = serde_json::json!({
            "routing": [{"version": 3, "weight": 90}, {"version": 2, "weight": 10}],
            "previous": [{"version": 2, "weight": 100}],
        });
        assert_eq!(
            alias_line(&f, "live", &moved, "was"),
            "acme/hello alias live: 3=90,2=10 (was 2)"
        );
        let fresh =
            serde_json::json!({"routing": [{"version": 1, "weight": 100}], "previous": null});
        assert_eq!(
            alias_line(&f, "staging", &fresh, "was"),
            "acme/hello alias staging: 1"
        );
    }
}
