//! `nimbus build DIR [-o OUT.wasm] [--world WORLD] [--lang LANG]`: the
//! function in `DIR` (Python, JavaScript or Rust, told by its files) into a
//! component, with the language's toolchain and the Nimbus SDK embedded in
//! this binary (see [`nimbus_build`]).
//!
//! On a terminal a spinner shows the step, the elapsed time and the
//! toolchain's latest line; otherwise (CI logs, pipes) plain lines. The
//! result goes to stdout: `built OUT.wasm: Python component, 18.4 MB in 29.9 s`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nimbus_build::{Language, Options, Plain, Progress};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Languages, told by the files in DIR:
  app.py or lambda_function.py   Python: componentize-py 0.25.1 (pip install componentize-py==0.25.1)
  package.json or index.js       JavaScript: esbuild 0.28.2 + componentize-js 0.23.0
                                 (npm install -g esbuild@0.28.2 @bytecodealliance/componentize-js@0.23.0)
  Cargo.toml                     Rust: cargo build --release --target wasm32-wasip2

Python and JavaScript are built with the Nimbus SDK against nimbus:function/app
(event handlers, HTTP handlers, Lambda-style handlers); with --world the module
alone is built against that world (a standard component, no SDK).

Examples:
  nimbus build guests/python/hello-http --world wasi:http/proxy@0.2.12 -o hello.wasm
  nimbus build my-function              # writes ./my-function.wasm")]
pub struct BuildArgs {
    /// The function's directory.
    dir: PathBuf,
    /// The component to write (default: `<name of DIR>.wasm` in the current directory).
    #[arg(long, short, value_name = "OUT.wasm")]
    output: Option<PathBuf>,
    /// Build the module against this world without the SDK (Python, JavaScript), e.g. wasi:http/proxy@0.2.12.
    #[arg(long, value_name = "WORLD")]
    world: Option<String>,
    /// The language, when DIR holds the files of more than one.
    #[arg(long, value_name = "LANG", value_parser = ["python", "js", "rust"])]
    lang: Option<String>,
}

/// Runs `nimbus build`: 0 when the component is written, 1 otherwise.
pub fn build(args: BuildArgs) -> ExitCode {
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| nimbus_build::default_output(&args.dir));
    let language = match args.lang.as_deref().map(str::parse::<Language>) {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => return crate::fail(e),
    };
    let options = Options {
        world: args.world,
        language,
    };
    let terminal = std::io::stderr().is_terminal();
    let result = if terminal {
        let mut spinner = Spinner::new();
        let result = nimbus_build::build(&args.dir, &out, &options, &mut spinner);
        spinner.finish(result.is_ok());
        result
    } else {
        nimbus_build::build(&args.dir, &out, &options, &mut Plain)
    };
    match result {
        Ok(built) => {
            let world = built
                .world
                .as_deref()
                .map(|w| format!(" for {w}"))
                .unwrap_or_default();
            println!(
                "built {}: {} component{world}, {} in {}",
                built.output.display(),
                built.language,
                size(built.bytes),
                seconds(built.elapsed)
            );
            ExitCode::SUCCESS
        }
        // Plain lines already showed a failed tool's output as it came.
        Err(e) if !terminal => crate::fail(e.summary()),
        Err(e) => crate::fail(e),
    }
}

/// The spinner: `⠋ step [12s] latest line of the tool`, and a `✓ step (3.2 s)`
/// line left above it when each step ends.
pub(crate) struct Spinner {
    bar: ProgressBar,
    step: Option<(String, Instant)>,
}

impl Spinner {
    pub(crate) fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:.bold} [{elapsed}] {wide_msg:.dim}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        Self { bar, step: None }
    }

    fn end_step(&mut self, ok: bool) {
        if let Some((step, started)) = self.step.take() {
            let mark = if ok { "✓" } else { "✗" };
            self.bar
                .println(format!("{mark} {step} ({})", seconds(started.elapsed())));
        }
    }

    pub(crate) fn finish(mut self, ok: bool) {
        self.end_step(ok);
        self.bar.finish_and_clear();
    }
}

impl Progress for Spinner {
    fn step(&mut self, step: &str) {
        self.end_step(true);
        self.step = Some((step.to_string(), Instant::now()));
        self.bar.set_message("");
        self.bar.set_prefix(step.to_string());
    }

    fn output(&mut self, line: &str) {
        // One line beside the step: cargo's right-aligned verbs and
        // Python's indentation would only push the text off the edge.
        self.bar.set_message(line.trim().to_string());
    }

    fn warn(&mut self, message: &str) {
        self.bar.println(format!("warning: {message}"));
    }
}

/// `18.4 MB`, `412 kB`, `900 B` (decimal units, as toolchains and `ls -h --si` print).
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.0} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_as_people_write_them() {
        assert_eq!(size(18_403_461), "18.4 MB");
        assert_eq!(size(412_300), "412 kB");
        assert_eq!(size(900), "900 B");
        assert_eq!(seconds(Duration::from_millis(29_940)), "29.9 s");
    }
}
