//! The `nimbus` binary; all logic lives in the `nimbus-cli` crate.

fn main() -> std::process::ExitCode {
    nimbus_cli::main()
}
