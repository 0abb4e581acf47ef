//! `cargo run -p nimbus-guests`: build every sample guest into
//! `target/guests/<name>.wasm` (Rust) and `target/guests/python-<name>.wasm`
//! (Python, with the SDK), and print the paths.

/// The Python samples built with the SDK (`guests/python/<name>`): the
/// sample config (`nimbus.toml`) runs `seed-handler` on uploads.
const PYTHON_SAMPLES: &[&str] = &["seed-handler", "notes", "limits"];

fn main() -> std::process::ExitCode {
    let guests = match nimbus_guests::build_all() {
        Ok(guests) => guests,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for (name, path) in guests.iter() {
        println!("{name}\t{}", path.display());
    }
    for name in PYTHON_SAMPLES {
        match nimbus_guests::build_python_app(name) {
            Ok(path) => println!("python-{name}\t{}", path.display()),
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
