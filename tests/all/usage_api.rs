//! The usage API against the real `nimbus serve`: a ledger directory rotated
//! and compressed while invocations run concurrently loses and duplicates
//! nothing; the API's figures (per bucket, per function, the month's
//! statement) equal the ledger's; rollups deleted while the server is down
//! are rebuilt from the ledger with the same answer, the month's statement
//! equal to `nimbus bill`'s on the same directory, storage included (sampled
//! every second here); keys and bad queries are refused with errors naming
//! what was wrong.

use std::collections::{BTreeMap, HashSet};

use nimbus_core::{Outcome, UsageRecord};
use serde_json::Value;

use crate::support::{ServeDir, guest_path, ledger, nimbus};

const TENANT: &str = "shop";
const KEY: &str = "shop-usage-key";
const OTHER_KEY: &str = "other-usage-key";

const PRICES: &str = r#"
currency = "USD"
[prices]
requests = "0.0002"
blob_gb_months = "0.023"
gb_seconds = "0.0000166667"
fuel = "0.0001"
cpu_seconds = "0.01"
[free_tier]
requests = 5
"#;

/// The API's figures recomputed from the raw records: count, outcomes and
/// integer sums per function.
fn sums(records: &[UsageRecord]) -> BTreeMap<String, (u64, BTreeMap<String, u64>, u64, u128)> {
    let mut out: BTreeMap<String, (u64, BTreeMap<String, u64>, u64, u128)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.tenant == TENANT) {
        let e = out.entry(r.function.clone()).or_default();
        e.0 += 1;
        *e.1.entry(r.outcome.as_str().to_string()).or_default() += 1;
        e.2 += r.billed_duration_ms;
        e.3 += u128::from(r.fuel_consumed);
    }
    out
}

fn api_sums(v: &Value) -> BTreeMap<String, (u64, BTreeMap<String, u64>, u64, u128)> {
    v["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| {
            let t = &f["totals"];
            let outcomes = t["outcomes"]
                .as_object()
                .expect("outcomes")
                .iter()
                .map(|(k, n)| (k.clone(), n.as_u64().expect("count")))
                .collect();
            (
                f["function"].as_str().expect("name").to_string(),
                (
                    t["invocations"].as_u64().expect("invocations"),
                    outcomes,
                    t["billed_duration_ms"].as_u64().expect("billed"),
                    u128::from(t["fuel"].as_u64().expect("fuel")),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_api_figures_equal_the_rotated_ledger_and_survive_a_rebuild() {
    let dir = ServeDir::new(&format!(
        r#"
ledger = "usage"
data_dir = "data"

[usage]
rotate_bytes = 4096
compress = true
prices = "prices.toml"
storage_sample_s = 1

[tenants.{TENANT}]
api_keys = ["{KEY}"]

[tenants.other]
api_keys = ["{OTHER_KEY}"]

[[functions]]
tenant = "{TENANT}"
name = "hello"
component = {hello:?}
blob_containers = ["files"]

[[functions]]
tenant = "{TENANT}"
name = "crash"
component = {trap:?}
"#,
        hello = guest_path("hello-http"),
        trap = guest_path("trap"),
    ));
    std::fs::write(dir.path().join("prices.toml"), PRICES).expect("prices");
    let server = dir.start();
    let client = server.client().with_key(KEY);
    // 256 KiB stored: sampled every second into the ledger directory.
    client
        .put(&format!("/storage/v1/{TENANT}/files/photo.bin"))
        .body(vec![7u8; 256 << 10])
        .await
        .expect_status_in(&[200, 201]);

    // 200 invocations from 16 concurrent callers: the ledger (about 600
    // bytes a record) rotates some thirty times under them.
    let mut tasks = Vec::new();
    for caller in 0..16 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..12 {
                let fail = (caller + i) % 10 == 0;
                let path = if fail { "crash" } else { "hello" };
                let r = client
                    .post(&format!("/{TENANT}/{path}"))
                    .body("hi")
                    .await
                    .expect(if fail { 500 } else { 200 });
                ids.push(r.invocation_id().to_string());
            }
            ids
        }));
    }
    let mut answered = HashSet::new();
    for t in tasks {
        answered.extend(t.await.expect("caller"));
    }
    for _ in 0..8 {
        client
            .post(&format!("/{TENANT}/hello"))
            .body("x")
            .await
            .expect(200);
    }
    assert_eq!(answered.len(), 192);

    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let query = format!("/usage/v1/{TENANT}?period={month}&granularity=hour");
    let live = client.get(&query).await.expect(200).json();

    // Every answered invocation is in the ledger once, across the files.
    let ledger_dir = dir.path().join("usage");
    let files: Vec<String> = std::fs::read_dir(&ledger_dir)
        .expect("ledger dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files
            .iter()
            .filter(|f| f.starts_with("nimbus-usage-"))
            .count()
            > 10,
        "the ledger rotated: {files:?}"
    );
    let records = ledger(&ledger_dir);
    assert_eq!(records.len(), 200, "one record per invocation");
    let ids: HashSet<String> = records
        .iter()
        .map(|r| r.invocation_id.to_string())
        .collect();
    assert_eq!(ids.len(), 200);
    assert!(answered.is_subset(&ids));
    assert_eq!(
        records
            .iter()
            .filter(|r| r.outcome == Outcome::Trap)
            .count(),
        records.iter().filter(|r| r.function == "crash").count()
    );

    // The API's figures are the ledger's.
    assert_eq!(api_sums(&live), sums(&records));
    let total: u64 = live["totals"]["invocations"].as_u64().expect("total");
    assert_eq!(total, 200);
    let buckets: u64 = live["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .flat_map(|f| f["buckets"].as_array().expect("buckets").iter())
        .map(|b| b["invocations"].as_u64().expect("n"))
        .sum();
    assert_eq!(buckets, 200);
    assert_eq!(live["currency"], "USD");
    let statement = &live["statement"];
    assert_eq!(statement["tenant"], TENANT);
    let requests: u64 = statement["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["dimension"] == "requests")
        .map(|l| {
            l["quantity"]
                .as_str()
                .expect("quantity")
                .parse::<u64>()
                .expect("n")
        })
        .sum();
    assert_eq!(requests, 200);

    // The other tenant's key sees nothing of shop's; no key, a wrong one
    // and a bad query are refused, naming the problem.
    server
        .client()
        .with_key(OTHER_KEY)
        .get(&query)
        .await
        .expect_error(401, "invalid API key");
    server
        .client()
        .get(&query)
        .await
        .expect_error(401, "Authorization");
    client
        .get(&format!("/usage/v1/{TENANT}?granularity=week"))
        .await
        .expect_error(400, "granularity");
    client
        .get(&format!("/usage/v1/{TENANT}?from=yesterday"))
        .await
        .expect_error(400, "from");
    client
        .get(&format!("/usage/v1/{TENANT}?period=2026-13"))
        .await
        .expect_error(400, "period");
    let other = server
        .client()
        .with_key(OTHER_KEY)
        .get(&format!("/usage/v1/other?period={month}"))
        .await
        .expect(200)
        .json();
    assert_eq!(other["totals"]["invocations"], 0);

    // Recent invocations, newest first, with a link to a failure's logs.
    let recent = client
        .get(&format!("/usage/v1/{TENANT}/invocations?limit=300"))
        .await
        .expect(200)
        .json();
    let listed = recent["invocations"].as_array().expect("invocations");
    assert_eq!(listed.len(), 200);
    let crash = listed
        .iter()
        .find(|r| r["function"] == "crash")
        .expect("a failure listed");
    assert_eq!(crash["outcome"], "trap");
    let logs = client
        .get(crash["logs"].as_str().expect("logs link"))
        .await
        .expect(200)
        .json();
    assert_eq!(logs["invocation_id"], crash["invocation_id"]);

    // Storage samples of the object are in the ledger directory.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while samples(&ledger_dir)
        .iter()
        .filter(|s| s["blob_bytes"].as_u64() >= Some(256 << 10))
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no storage samples: {:?}",
            samples(&ledger_dir)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Rollups deleted while the server is down are rebuilt from the
    // ledger: the same answer. The restarted server takes no sample within
    // the test, so its statement and `nimbus bill`'s read the same samples.
    drop(server);
    std::fs::remove_file(dir.path().join("data/usage-rollups.redb")).expect("rollups file");
    let config = std::fs::read_to_string(dir.config()).expect("config");
    std::fs::write(
        dir.config(),
        config.replace("storage_sample_s = 1", "storage_sample_s = 3600"),
    )
    .expect("config");
    let server = dir.start();
    let rebuilt = server
        .client()
        .with_key(KEY)
        .get(&query)
        .await
        .expect(200)
        .json();
    assert_eq!(rebuilt["functions"], live["functions"]);

    let out = nimbus()
        .arg("bill")
        .arg("--ledger")
        .arg(&ledger_dir)
        .arg("--prices")
        .arg(dir.path().join("prices.toml"))
        .args(["--period", &month, "--tenant", TENANT, "--format", "json"])
        .output()
        .expect("nimbus bill");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bill: Value = serde_json::from_slice(&out.stdout).expect("bill json");
    assert_eq!(
        bill["statements"][0], rebuilt["statement"],
        "nimbus bill and the usage API"
    );
    let storage = rebuilt["statement"]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["dimension"] == "blob_gb_months")
        .expect("a blob storage line");
    let byte_seconds: u128 = storage["base_quantity"]
        .as_str()
        .expect("base")
        .parse()
        .expect("n");
    assert!(byte_seconds >= 2 * (256 << 10), "{storage}");
}

/// Every storage sample of the tenant in the ledger directory.
fn samples(dir: &std::path::Path) -> Vec<Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("ledger dir") {
        let path = e.expect("entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with("nimbus-storage-")) {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|v| v["tenant"] == TENANT),
            );
        }
    }
    out
}
