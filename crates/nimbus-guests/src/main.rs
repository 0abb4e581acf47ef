//! `cargo run -p nimbus-guests`: build every sample guest into
//! `target/guests/<name>.wasm` and print the paths.

fn main() -> std::process::ExitCode {
    match nimbus_guests::build_all() {
        Ok(guests) => {
            for (name, path) in guests.iter() {
                println!("{name}\t{}", path.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
