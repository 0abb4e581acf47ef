//! The `nimbus` command line.
//!
//! `nimbus run COMPONENT.wasm` deploys a component into a throwaway host and
//! invokes it once: response data on stdout, guest logs on stderr (each line
//! prefixed with the invocation id), usage record and metrics to files on
//! request. The exit code names the outcome (see [`exit_code`]).
//!
//! `nimbus serve --config nimbus.toml` runs the API gateway (see [`config`]).
//!
//! `nimbus build DIR -o OUT.wasm` builds a Python, JavaScript or Rust
//! function into a component with the Nimbus SDK (see [`build`]).
//!
//! `nimbus bill --ledger DIR --prices prices.toml --period 2026-11` prints
//! per-tenant statements from the usage ledger (see [`bill`]).
//!
//! `nimbus deploy`, `functions`, `versions`, `alias`, `rollback`, `invoke`,
//! `logs` and `tenants` drive a running `nimbus serve` through its admin API
//! and gateway (see [`client`]).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

pub mod bill;
pub mod build;
pub mod client;
pub mod config;
pub mod serve;
use nimbus_core::{Error, Event, Host, Limits, Logs, Report};

#[derive(Debug, Parser)]
#[command(
    name = "nimbus",
    version,
    about = "Nimbus: a multi-tenant WebAssembly function host"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Invoke a component once and print its response.
    ///
    /// Exit codes: 0 success, 1 other error, 2 bad arguments, 3 invalid
    /// component, 4 guest error, 5 out of fuel, 6 memory limit, 7 timeout,
    /// 8 stack overflow, 9 trap, 10 throttled.
    Run(Box<RunArgs>),
    /// Serve the functions of a config file over HTTP (the API gateway).
    Serve(ServeArgs),
    /// Build a function's directory (Python, JavaScript or Rust) into a component.
    Build(build::BuildArgs),
    /// Print per-tenant statements for a month from the usage ledger and a price sheet.
    Bill(bill::BillArgs),
    #[command(flatten)]
    Client(client::Command),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The server's TOML configuration.
    #[arg(long, short, default_value = "nimbus.toml", value_name = "FILE")]
    config: PathBuf,
    /// Listen address, overriding the config's `listen` (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The component (.wasm) to run.
    component: PathBuf,
    /// File whose bytes are the event data (`-` for stdin; default: empty).
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Tenant to run as.
    #[arg(long, default_value = "default", value_name = "NAME")]
    tenant: String,
    /// Function name (default: the component's file stem).
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// Fuel budget of the invocation.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Linear memory limit, bytes.
    #[arg(long, value_name = "BYTES")]
    memory: Option<u64>,
    /// Wall-clock timeout, milliseconds.
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
    /// Event type.
    #[arg(long = "type", default_value = "nimbus.cli.run", value_name = "TYPE")]
    event_type: String,
    /// Media type of the event data.
    #[arg(long, value_name = "MIME")]
    content_type: Option<String>,
    /// Write the usage record (JSON) here.
    #[arg(long, value_name = "FILE")]
    usage_json: Option<PathBuf>,
    /// Write the Prometheus text exposition here.
    #[arg(long, value_name = "FILE")]
    metrics: Option<PathBuf>,
    /// Usage ledger to append to.
    #[arg(long, default_value = "nimbus-usage.jsonl", value_name = "FILE")]
    ledger: PathBuf,
}

/// Entry point of the `nimbus` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs deploys and failed invocations (with tenant, function and
    // invocation id); a one-shot run keeps stderr for the guest's own logs.
    let default_filter = match cli.command {
        Command::Serve(_) => "info",
        Command::Run(_) | Command::Build(_) | Command::Bill(_) | Command::Client(_) => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log file or a collector gets
        // plain text, and each invocation's span is formatted without them
        // (they were 1 % of a loaded server's CPU).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Build(args) => build::build(args),
        Command::Bill(args) => bill::bill(args),
        Command::Run(args) => runtime.block_on(run(*args)),
        Command::Client(command) => runtime.block_on(client::run(command)),
        Command::Serve(args) => match runtime.block_on(serve::serve(&args.config, args.listen)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
    }
}

/// The exit code for an error (0 is success).
pub fn exit_code(error: &Error) -> u8 {
    match error {
        Error::InvalidComponent(_) => 3,
        Error::Guest { .. } => 4,
        Error::OutOfFuel { .. } => 5,
        Error::MemoryLimitExceeded { .. } => 6,
        Error::Timeout { .. } => 7,
        Error::StackOverflow { .. } => 8,
        Error::Trap { .. } => 9,
        Error::Throttled { .. } => 10,
        _ => 1,
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

async fn run(args: RunArgs) -> ExitCode {
    let wasm = match std::fs::read(&args.component) {
        Ok(b) => b,
        Err(e) => return fail(format_args!("reading {}: {e}", args.component.display())),
    };
    let data = match &args.data {
        None => Vec::new(),
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
                return fail(format_args!("reading stdin: {e}"));
            }
            buf
        }
        Some(p) => match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => return fail(format_args!("reading --data {}: {e}", p.display())),
        },
    };
    let function = args.function.clone().unwrap_or_else(|| {
        args.component
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "function".into())
    });
    let mut limits = Limits::default();
    if let Some(f) = args.fuel {
        limits.fuel = f;
    }
    if let Some(m) = args.memory {
        limits.max_memory_bytes = m;
    }
    if let Some(t) = args.timeout {
        limits.timeout = Duration::from_millis(t);
    }

    let host = match Host::builder()
        .pool(nimbus_core::PoolConfig {
            max_instances: 4,
            ..Default::default()
        })
        .ledger_path(&args.ledger)
        .build()
    {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    if let Err(e) = host.add_tenant(&args.tenant, limits) {
        return fail(e);
    }
    let handle = match host.deploy(&args.tenant, &function, &wasm).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {}: {e}", args.component.display());
            return ExitCode::from(exit_code(&e));
        }
    };
    let mut event = Event::new(args.event_type.clone(), "/nimbus/cli", data);
    event.content_type = args.content_type.clone();

    let (result, report) = match handle.invoke(event).await {
        Ok(done) => {
            let report = Report {
                usage: done.usage,
                logs: done.logs,
            };
            (Ok(done.response), Some(report))
        }
        Err(e) => {
            let report = e.report().cloned();
            (Err(e), report)
        }
    };
    if let Some(report) = &report {
        print_logs(&report.usage.invocation_id.to_string(), &report.logs);
        if let Some(path) = &args.usage_json {
            let json = serde_json::to_string_pretty(&report.usage).unwrap_or_default();
            if let Err(e) = std::fs::write(path, json + "\n") {
                return fail(format_args!("writing --usage-json {}: {e}", path.display()));
            }
        }
    }
    if let Some(path) = &args.metrics
        && let Err(e) = std::fs::write(path, host.metrics_text())
    {
        return fail(format_args!("writing --metrics {}: {e}", path.display()));
    }
    match result {
        Ok(response) => {
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(&response.data).and_then(|()| out.flush()) {
                return fail(format_args!("writing the response: {e}"));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            match &report {
                Some(r) => eprintln!("error: {e} (invocation {})", r.usage.invocation_id),
                None => eprintln!("error: {e}"),
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Guest output, each line prefixed with the invocation id so it can be told
/// apart from the host's own messages.
fn print_logs(id: &str, logs: &Logs) {
    let mut err = std::io::stderr().lock();
    for stream in [&logs.stdout, &logs.stderr] {
        for line in String::from_utf8_lossy(stream).lines() {
            let _ = writeln!(err, "[{id}] {line}");
        }
    }
    if logs.truncated() {
        let _ = writeln!(
            err,
            "[{id}] [nimbus] {} bytes of guest output dropped (per-invocation log cap)",
            logs.dropped_bytes
        );
    }
}
