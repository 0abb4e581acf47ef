//! Embedding Nimbus in your own Rust program: one host, one tenant, one
//! function, your own Prometheus registry.
//!
//! Run with `cargo run --example embed` (it builds the sample guests first).

use std::time::Duration;

use nimbus_core::prometheus::{self, Encoder};
use nimbus_core::{Event, Host, Limits};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The sample guests, compiled from guests/ into target/guests/.
    let guests = nimbus_guests::build_all()?;

    // Your server's registry: Nimbus registers its billing families in it,
    // next to your own metrics.
    let registry = prometheus::Registry::new();
    let ledger = std::env::temp_dir().join("nimbus-embed-usage.jsonl");

    // One host per process: it owns the wasmtime engine and instance pool.
    let host = Host::builder()
        .registry(registry.clone())
        .ledger_path(&ledger)
        .build()?;

    // Tenants carry the limits every invocation of theirs runs under.
    let limits = Limits::default()
        .fuel(500_000_000)
        .max_memory_bytes(64 << 20)
        .timeout(Duration::from_secs(2))
        .max_concurrency(8);
    host.add_tenant("acme", limits)?;

    // Deploy compiles once; the handle is cheap to clone and to invoke.
    let echo = host
        .deploy("acme", "echo", &std::fs::read(guests.path("echo"))?)
        .await?;

    // Each invoke runs in a fresh instance and returns the response with
    // its usage record (already in the ledger).
    let event = Event::new(
        "com.example.greeting",
        "/example",
        b"hello from Rust".to_vec(),
    )
    .content_type("text/plain");
    let done = echo.invoke(event).await?;
    println!("response: {}", String::from_utf8_lossy(&done.response.data));
    println!("usage:    {}", serde_json::to_string(&done.usage)?);

    // A failure is a typed error that still carries its usage record.
    let spin = host
        .deploy("acme", "spin", &std::fs::read(guests.path("spin-loop"))?)
        .await?;
    match spin
        .invoke(Event::new("tick", "/example", Vec::new()))
        .await
    {
        Err(e) => println!(
            "spin:     {e} (billed {:?} ms)",
            e.report().map(|r| r.usage.billed_duration_ms)
        ),
        Ok(_) => println!("spin:     unexpectedly finished"),
    }

    // Scrape: exactly what a /metrics endpoint would serve.
    let mut text = Vec::new();
    prometheus::TextEncoder::new().encode(&registry.gather(), &mut text)?;
    let text = String::from_utf8(text)?;
    for line in text
        .lines()
        .filter(|l| l.starts_with("nimbus_invocations_total"))
    {
        println!("{line}");
    }
    println!("ledger:   {}", ledger.display());
    Ok(())
}
