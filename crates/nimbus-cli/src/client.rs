//! The `nimbus` commands that drive a running `nimbus serve` through its
//! admin API (`/admin/v1`, the contract of issue 12) and its gateway, as
//! `spin deploy`, `wash` and `aws lambda` do theirs:
//!
//! | command | what it does |
//! |---|---|
//! | `deploy PATH --tenant T --name F` | uploads a component (a directory is built first), publishing a version and moving an alias to it |
//! | `functions [--tenant T]` | the functions of one tenant or of all |
//! | `versions T/F` | a function's versions |
//! | `alias set\|list\|delete T/F …` | aliases and their weighted routing |
//! | `rollback T/F [--alias A]` | an alias back to its previous routing |
//! | `invoke T/F[@V\|:ALIAS]` | one request to the function's URL; the exit code names the outcome |
//! | `logs T/F [--follow]` | recent invocations' logs, or the live stream |
//! | `tenants list\|create\|delete\|key …` | tenants and their API keys |
//!
//! Each takes `--server URL` (`NIMBUS_SERVER`, default
//! `http://127.0.0.1:8080`), `--admin-key KEY` (`NIMBUS_ADMIN_KEY`) and
//! `--json`, which prints the server's JSON body as it came (one document)
//! instead of text. A refusal is one line on stderr,
//! `error: <the server's message> (HTTP 409)`, and exit code 1 (2 for bad
//! arguments, 3 for a component the server refused at deploy; `invoke`
//! exits with the outcome's code, as `nimbus run` does).

use std::process::ExitCode;

use clap::Subcommand;

mod api;
mod deploy;
mod functions;
mod invoke;
mod logs;
mod parse;
mod progress;
mod table;
mod tenants;

pub use deploy::DeployArgs;
pub use functions::{AliasArgs, FunctionsArgs, RollbackArgs, VersionsArgs};
pub use invoke::InvokeArgs;
pub use logs::LogsArgs;
pub use tenants::TenantsArgs;

/// The commands that talk to a server.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy a component, or a function's directory (built first), as a new version.
    Deploy(Box<DeployArgs>),
    /// List functions: one tenant's, or every tenant's.
    Functions(FunctionsArgs),
    /// List a function's versions.
    Versions(VersionsArgs),
    /// Set, list or delete a function's aliases (weighted routing to versions).
    Alias(AliasArgs),
    /// Move an alias back to the routing it had before its last change.
    Rollback(RollbackArgs),
    /// Invoke a function through the gateway: its response body on stdout.
    ///
    /// Exit codes: 0 success, 1 other error, 2 bad arguments, 4 guest error,
    /// 5 out of fuel, 6 memory limit, 7 timeout, 8 stack overflow, 9 trap,
    /// 10 throttled.
    Invoke(InvokeArgs),
    /// Show a function's recent invocation logs, or follow them live.
    Logs(LogsArgs),
    /// Manage tenants and their API keys.
    Tenants(TenantsArgs),
}

/// Where the server is and how to authenticate, shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct Server {
    /// The server's base URL.
    #[arg(
        long = "server",
        env = "NIMBUS_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    url: String,
    /// An admin key of the server (sent as `Authorization: Bearer`).
    #[arg(
        long,
        env = "NIMBUS_ADMIN_KEY",
        value_name = "KEY",
        hide_env_values = true,
        global = true
    )]
    admin_key: Option<String>,
    /// Print the server's JSON answer as it came (one document), for scripts.
    #[arg(long, global = true)]
    json: bool,
}

/// Why a command failed: a message for one `error:` line and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    /// Exit code 1: the server refused, or something else went wrong.
    pub(crate) fn other(message: impl std::fmt::Display) -> Self {
        Self {
            code: 1,
            message: message.to_string(),
        }
    }

    /// Exit code 2: the command line is wrong.
    pub(crate) fn usage(message: impl std::fmt::Display) -> Self {
        Self {
            code: 2,
            message: message.to_string(),
        }
    }
}

pub(crate) type Result<T, E = Failure> = std::result::Result<T, E>;

/// Runs a client command; its exit code.
pub async fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Deploy(args) => deploy::deploy(*args).await.map(|()| 0),
        Command::Functions(args) => functions::functions(args).await.map(|()| 0),
        Command::Versions(args) => functions::versions(args).await.map(|()| 0),
        Command::Alias(args) => functions::alias(args).await.map(|()| 0),
        Command::Rollback(args) => functions::rollback(args).await.map(|()| 0),
        Command::Invoke(args) => invoke::invoke(args).await,
        Command::Logs(args) => logs::logs(args).await.map(|()| 0),
        Command::Tenants(args) => tenants::tenants(args).await.map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
