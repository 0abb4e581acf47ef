//! `nimbus bill`: statements from the usage ledger.
//!
//! ```text
//! nimbus bill --ledger nimbus-usage --prices prices.toml --period 2026-11 [--tenant T] [--format table|json|csv]
//! ```
//!
//! Reads every record of the ledger once (files and directories, rotated
//! and gzipped files, the same invocation id in several files billed once:
//! [`nimbus_core::ledger::LedgerSource`]), keeps those whose `started_at`
//! is in the period (and of the tenant), sums them per tenant and function,
//! adds the storage samples (`nimbus-storage-*.jsonl`, each counted in the
//! month of its `sampled_at`), and prints one statement per tenant
//! ([`nimbus_billing::PriceSheet::statement`], the same arithmetic as the
//! usage API; docs/billing.md has the rounding rule).
//!
//! A malformed record stops the bill: `error: FILE: line N: ...`, exit 1.
//! A torn final line (a write the process died in) is not a record anyone
//! was told about: a warning names it and the bill goes on. The count of
//! duplicates skipped goes to stderr. `--tenant` with no usage in the period
//! gets a statement of zero (and a note saying so), so a script always gets
//! one statement for the tenant it asked about.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nimbus_billing::{Decimal, Period, PriceSheet, Quantities, Statement, StorageQuantities};
use nimbus_core::ledger::{LedgerError, LedgerSource, TornLine};

#[derive(Debug, clap::Args)]
pub struct BillArgs {
    /// Ledger directories (every nimbus-usage-*.jsonl[.gz] and
    /// nimbus-storage-*.jsonl in them) or files.
    #[arg(long, required = true, num_args = 1.., value_name = "DIR_OR_FILE")]
    ledger: Vec<PathBuf>,
    /// The price sheet (TOML; see docs/billing.md).
    #[arg(long, value_name = "FILE")]
    prices: PathBuf,
    /// The UTC month to bill.
    #[arg(long, value_name = "YYYY-MM", value_parser = parse_period)]
    period: Period,
    /// Bill only this tenant.
    #[arg(long, value_name = "NAME")]
    tenant: Option<String>,
    /// How to print the statements.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Aligned tables, one per tenant.
    Table,
    /// One JSON document: every statement, with decimals as strings.
    Json,
    /// One CSV file: a header, then every statement's rows.
    Csv,
}

fn parse_period(s: &str) -> Result<Period, String> {
    Period::parse(s).map_err(|e| e.to_string())
}

/// Runs `nimbus bill`; its exit code.
pub fn bill(args: BillArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What was read, per tenant, and what the reader skipped.
#[derive(Debug, Default)]
struct Usage {
    functions: BTreeMap<String, BTreeMap<String, Quantities>>,
    storage: BTreeMap<String, StorageQuantities>,
    records: u64,
    duplicates: u64,
    torn: Vec<TornLine>,
}

fn run(args: &BillArgs) -> Result<(), String> {
    let sheet = PriceSheet::load(&args.prices).map_err(|e| e.to_string())?;
    let source = LedgerSource::open(&args.ledger).map_err(|e| e.to_string())?;
    let usage = read(&source, &args.period, args.tenant.as_deref())?;

    let mut err = std::io::stderr().lock();
    for t in &usage.torn {
        let _ = writeln!(
            err,
            "warning: {}: line {}: torn final line (an unfinished write), skipped",
            t.file.display(),
            t.line
        );
    }
    let _ = writeln!(
        err,
        "nimbus bill: {} records of {} from {} files; {} duplicate records skipped",
        usage.records,
        args.period,
        source.files().len(),
        usage.duplicates
    );

    let tenants: Vec<String> = match &args.tenant {
        Some(t) => {
            if !usage.functions.contains_key(t) && !usage.storage.contains_key(t) {
                let _ = writeln!(err, "note: tenant {t} has no usage in {}", args.period);
            }
            vec![t.clone()]
        }
        None => {
            let mut all: Vec<String> = usage.functions.keys().cloned().collect();
            all.extend(usage.storage.keys().cloned());
            all.sort();
            all.dedup();
            if all.is_empty() {
                let _ = writeln!(err, "note: no tenant has usage in {}", args.period);
            }
            all
        }
    };
    drop(err);

    let no_functions = BTreeMap::new();
    let statements = tenants
        .iter()
        .map(|t| {
            let functions = usage.functions.get(t).unwrap_or(&no_functions);
            let storage = usage.storage.get(t).copied().unwrap_or_default();
            sheet
                .try_statement(t, &args.period, functions, &storage)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<Statement>, String>>()?;

    let out = match args.format {
        Format::Table => statements
            .iter()
            .map(Statement::render_table)
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Csv => {
            let rows: String = statements.iter().map(Statement::csv_rows).collect();
            format!("{}\n{rows}", nimbus_billing::CSV_HEADER)
        }
        Format::Json => json(&sheet, args, &usage, &statements)?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing the statements: {e}"))
}

/// Reads the period's records and storage samples, with a progress bar of
/// the bytes read on a terminal.
fn read(source: &LedgerSource, period: &Period, tenant: Option<&str>) -> Result<Usage, String> {
    let bar = progress_bar(source.total_bytes());
    let mut usage = Usage::default();
    let mut records = source.records();
    let mut n: u64 = 0;
    while let Some(record) = records.next() {
        let record = record.map_err(|e| malformed(&bar, e))?;
        n += 1;
        if n.is_multiple_of(4096) {
            bar.set_position(records.bytes_read());
        }
        let in_period = period.contains(&record.started_at).map_err(|e| {
            bar.finish_and_clear();
            let at = at(records.position());
            format!("{at}invocation {}: {e}", record.invocation_id)
        })?;
        if !in_period || tenant.is_some_and(|t| t != record.tenant) {
            continue;
        }
        usage.records += 1;
        // Look up before inserting: no allocation per record once a
        // tenant's function has been seen.
        if !usage.functions.contains_key(&record.tenant) {
            usage
                .functions
                .insert(record.tenant.clone(), BTreeMap::new());
        }
        let functions = usage.functions.get_mut(&record.tenant).expect("inserted");
        match functions.get_mut(&record.function) {
            Some(q) => q.add_record(&record),
            None => {
                let mut q = Quantities::default();
                q.add_record(&record);
                functions.insert(record.function.clone(), q);
            }
        }
    }
    bar.set_position(records.bytes_read());
    usage.duplicates = records.duplicates();
    usage.torn = records.torn_tails().to_vec();

    let mut samples = source.storage_samples();
    while let Some(sample) = samples.next() {
        let sample = sample.map_err(|e| malformed(&bar, e))?;
        let in_period = period.contains(&sample.sampled_at).map_err(|e| {
            bar.finish_and_clear();
            let at = at(samples.position());
            format!("{at}storage sample of {}: {e}", sample.tenant)
        })?;
        if !in_period || tenant.is_some_and(|t| t != sample.tenant) {
            continue;
        }
        usage
            .storage
            .entry(sample.tenant.clone())
            .or_default()
            .add_sample(sample.kv_bytes, sample.blob_bytes, sample.interval_s);
    }
    usage.torn.extend(samples.torn_tails().iter().cloned());
    bar.finish_and_clear();
    Ok(usage)
}

/// `FILE: line N: ` of a well-formed line whose contents are wrong.
fn at(position: Option<(&std::path::Path, u64)>) -> String {
    position
        .map(|(file, line)| format!("{}: line {line}: ", file.display()))
        .unwrap_or_default()
}

fn malformed(bar: &ProgressBar, e: LedgerError) -> String {
    bar.finish_and_clear();
    e.to_string()
}

/// Bytes read of the ledger, on a terminal only.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "reading the ledger [{bar:20.cyan/dim}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// One JSON document: the statements, their grand total, and what the
/// reader skipped.
fn json(
    sheet: &PriceSheet,
    args: &BillArgs,
    usage: &Usage,
    statements: &[Statement],
) -> Result<String, String> {
    let mut total = statements
        .iter()
        .try_fold(Decimal::ZERO, |sum, s| sum.checked_add(s.total))
        .ok_or("the total of all tenants exceeds the largest amount a statement can hold")?;
    // With the currency's places even when there is no statement (0.00).
    total.rescale(sheet.minor_unit());
    let torn: Vec<serde_json::Value> = usage
        .torn
        .iter()
        .map(|t| serde_json::json!({ "file": t.file.display().to_string(), "line": t.line }))
        .collect();
    let doc = serde_json::json!({
        "period": args.period,
        "currency": sheet.currency(),
        "records": usage.records,
        "duplicates_skipped": usage.duplicates,
        "torn_lines": torn,
        "total": total,
        "statements": statements,
    });
    serde_json::to_string_pretty(&doc)
        .map(|s| s + "\n")
        .map_err(|e| format!("writing JSON: {e}"))
}
