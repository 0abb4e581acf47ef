//! Deployments that last, driven through the real `nimbus serve` and its
//! admin API: tenants created at run time with hashed keys, immutable
//! versions, a weighted alias split, rollback, and a kill -9 after which
//! the registry restores exactly what was there, with the ledger exact
//! across the restart. And a deleted tenant's data is gone by every path.

use std::collections::BTreeMap;

use nimbus_http::{GRANTS_HEADER, VERSION_HEADER};

use crate::support::{Client, ServeDir, guests};

const ADMIN: &str = "admin-key";

fn server_dir() -> ServeDir {
    ServeDir::new(&format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"
admin_keys = ["{ADMIN}"]
"#
    ))
}

/// `nimbus_function_version_invocations_total` of `shop/echo` by version.
fn version_counts(metrics: &str) -> BTreeMap<u32, u64> {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("nimbus_function_version_invocations_total{")
                && l.contains("function=\"echo\"")
        })
        .filter_map(|l| {
            let v = l
                .split("version=\"")
                .nth(1)?
                .split('"')
                .next()?
                .parse()
                .ok()?;
            let n = l.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((v, n as u64))
        })
        .collect()
}

async fn deploy(admin: &Client, function: &str, guest: &str, query: &str) -> serde_json::Value {
    admin
        .put(&format!(
            "/admin/v1/tenants/shop/functions/{function}{query}"
        ))
        .body(guests().bytes(guest))
        .await
        .expect_status_in(&[200, 201])
        .json()
}

/// The state the registry must restore: tenant, keys, versions, aliases.
async fn registry_view(admin: &Client) -> serde_json::Value {
    let tenant = admin.get("/admin/v1/tenants/shop").await.expect(200).json();
    let mut versions = admin
        .get("/admin/v1/tenants/shop/functions/echo/versions")
        .await
        .expect(200)
        .json();
    // `kind` says `loading` while a version loads; the rest is the record.
    for v in versions["versions"].as_array_mut().into_iter().flatten() {
        v.as_object_mut().map(|o| o.remove("kind"));
    }
    let aliases = admin
        .get("/admin/v1/tenants/shop/functions/echo/aliases")
        .await
        .expect(200)
        .json();
    serde_json::json!({ "tenant": tenant, "versions": versions, "aliases": aliases })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_aliases_and_tenants_survive_kill_9_and_a_split_routes_by_weight() {
    let dir = server_dir();
    let server = dir.start();
    let admin = server.client().with_key(ADMIN);

    // A tenant created at run time: its key is shown once.
    let created = admin
        .post("/admin/v1/tenants")
        .body(r#"{"name": "shop", "limits": {"fuel": 5000000000}, "rate_limit": null}"#)
        .await
        .expect(201)
        .json();
    let key = created["api_key"].as_str().expect("api key").to_string();
    assert!(key.starts_with("nbk_"), "{created}");
    assert_eq!(created["tenant"]["limits"]["fuel"], 5_000_000_000u64);
    admin
        .post("/admin/v1/tenants")
        .body(r#"{"name": "shop"}"#)
        .await
        .expect_error(409, "already exists");
    let shop = server.client().with_key(&key);

    // Three versions of one function (config differs, bytes do not); the
    // same deploy again publishes nothing new.
    for (n, fuel) in [
        (1, 1_000_000_000u64),
        (2, 2_000_000_000),
        (3, 3_000_000_000),
    ] {
        let f = deploy(&admin, "echo", "echo", &format!("?fuel={fuel}")).await;
        assert_eq!(f["published"], n, "{f}");
        assert_eq!(f["version"], n, "live moves to the new version: {f}");
    }
    let again = deploy(&admin, "echo", "echo", "?fuel=3000000000").await;
    assert_eq!(again["published"], 3, "{again}");
    let r = shop.post("/shop/echo").body("hi").await.expect(200);
    assert_eq!(r.text(), "hi");
    assert_eq!(r.header(VERSION_HEADER), Some("3"));
    assert_eq!(
        shop.post("/shop/echo@1")
            .body("x")
            .await
            .expect(200)
            .header(VERSION_HEADER),
        Some("1")
    );
    shop.post("/shop/echo@9").body("x").await.expect(404);
    shop.post("/shop/echo:nope").body("x").await.expect(404);

    // A 90/10 split of `live` between versions 3 and 2.
    admin
        .put("/admin/v1/tenants/shop/functions/echo/aliases/live")
        .body(r#"{"routing": [{"version": 3, "weight": 90}, {"version": 2, "weight": 10}]}"#)
        .await
        .expect(200);
    for bad in [
        r#"{"routing": [{"version": 3, "weight": 90}, {"version": 2, "weight": 20}]}"#,
        r#"{"routing": [{"version": 3, "weight": 50}, {"version": 3, "weight": 50}]}"#,
        r#"{"version": 7}"#,
        r#"{"versions": 3}"#,
    ] {
        let r = admin
            .put("/admin/v1/tenants/shop/functions/echo/aliases/live")
            .body(bad)
            .await;
        assert!(
            [400, 404].contains(&r.status.as_u16()),
            "{bad}: {}",
            r.text()
        );
        assert!(r.json()["error"].is_string(), "{bad}");
    }
    let mut by_version: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..1000 {
        let r = shop
            .post("/shop/echo")
            .body(format!("n{i}"))
            .await
            .expect(200);
        *by_version
            .entry(r.header(VERSION_HEADER).unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let share = |v: &str| f64::from(by_version.get(v).copied().unwrap_or(0)) / 10.0;
    assert!((85.0..=95.0).contains(&share("3")), "{by_version:?}");
    assert!((5.0..=15.0).contains(&share("2")), "{by_version:?}");
    assert_eq!(by_version.len(), 2, "{by_version:?}");

    // Another alias, then rollback of `live` to its previous routing.
    admin
        .put("/admin/v1/tenants/shop/functions/echo/aliases/staging")
        .body(r#"{"version": 1}"#)
        .await
        .expect(200);
    let r = shop.post("/shop/echo:staging").body("s").await.expect(200);
    assert_eq!(r.header(VERSION_HEADER), Some("1"));
    let back = admin
        .post("/admin/v1/tenants/shop/functions/echo/rollback")
        .await
        .expect(200)
        .json();
    assert_eq!(
        back["routing"],
        serde_json::json!([{"version": 3, "weight": 100}])
    );
    admin
        .delete("/admin/v1/tenants/shop/functions/echo/versions/1")
        .await
        .expect_error(409, "staging");
    admin
        .delete("/admin/v1/tenants/shop/functions/echo/aliases/live")
        .await
        .expect(409);

    // A failing function leaves a log with its summary line.
    deploy(&admin, "boom", "trap", "").await;
    let failed = shop.post("/shop/boom").body("x").await.expect(500);
    let boom_id = failed.invocation_id().to_string();

    let before = registry_view(&admin).await;
    let metrics = server.client().get("/metrics").await.expect(200).text();
    let counted = version_counts(&metrics);
    let logs_before = until_logged(&admin, &boom_id).await;
    server.kill_9();

    // The ledger, read after the crash, holds every invocation answered,
    // by version exactly as the metrics counted them.
    let records = dir.records();
    let mut ledger: BTreeMap<u32, u64> = BTreeMap::new();
    for r in records.iter().filter(|r| r.function == "echo") {
        *ledger.entry(r.function_version).or_default() += 1;
    }
    assert_eq!(ledger, counted, "ledger vs metrics by version");
    assert_eq!(ledger.values().sum::<u64>(), 1 + 1 + 1000 + 1);

    // Restart: everything is as it was.
    let server = dir.start();
    let admin = server.client().with_key(ADMIN);
    assert_eq!(registry_view(&admin).await, before);
    let shop = server.client().with_key(&key);
    let r = shop.post("/shop/echo").body("after").await.expect(200);
    assert_eq!(r.text(), "after");
    assert_eq!(r.header(VERSION_HEADER), Some("3"));
    assert_eq!(
        shop.post("/shop/echo:staging")
            .body("s")
            .await
            .expect(200)
            .header(VERSION_HEADER),
        Some("1")
    );
    assert_eq!(until_logged(&admin, &boom_id).await, logs_before);
    // The restart appended to the ledger, losing and repeating nothing.
    let after = dir.records();
    assert_eq!(after.len(), records.len() + 2);
    assert_eq!(after[..records.len()], records[..]);

    // Limits and rate limit change at run time, for running functions.
    admin
        .patch("/admin/v1/tenants/shop")
        .body(r#"{"rate_limit": {"per_second": 1, "burst": 1}}"#)
        .await
        .expect(200);
    shop.post("/shop/echo").body("1").await.expect(200);
    shop.post("/shop/echo").body("2").await.expect(429);
    admin
        .patch("/admin/v1/tenants/shop")
        .body(r#"{"rate_limit": null, "limits": {"fuel": 1000}}"#)
        .await
        .expect(200);
    shop.post("/shop/echo@1")
        .body("x")
        .await
        .expect_status_in(&[200, 500]);
    let tenant = admin.get("/admin/v1/tenants/shop").await.expect(200).json();
    assert_eq!(tenant["limits"]["fuel"], 1000, "{tenant}");
    assert!(tenant["rate_limit"].is_null(), "{tenant}");
    // Version 1 overrides fuel itself (1e9); `boom` (no override) now runs
    // out of fuel under the tenant's new limit.
    let r = shop.post("/shop/boom").body("x").await.expect(500);
    assert_eq!(r.header(nimbus_http::OUTCOME_HEADER), Some("out_of_fuel"));
    admin
        .patch("/admin/v1/tenants/shop")
        .body(r#"{"limits": {"fuel": 5000000000}}"#)
        .await
        .expect(200);

    // Keys: a second key works, the first is revoked at once.
    let second = admin
        .post("/admin/v1/tenants/shop/keys")
        .await
        .expect(201)
        .json();
    let second_key = second["api_key"].as_str().expect("key").to_string();
    let first_id = created["key_id"].as_str().expect("key id");
    admin
        .delete(&format!("/admin/v1/tenants/shop/keys/{first_id}"))
        .await
        .expect(204);
    shop.post("/shop/echo").body("x").await.expect(401);
    server
        .client()
        .with_key(&second_key)
        .post("/shop/echo")
        .body("x")
        .await
        .expect(200);
    server.stop();
}

/// The logs of invocation `id` of `shop/boom`, once they are committed.
async fn until_logged(admin: &Client, id: &str) -> serde_json::Value {
    for _ in 0..200 {
        let r = admin
            .get(&format!(
                "/admin/v1/tenants/shop/functions/boom/logs?invocation_id={id}"
            ))
            .await
            .expect(200)
            .json();
        if let Some(inv) = r["invocations"].as_array().and_then(|a| a.first()) {
            assert_eq!(inv["outcome"], "trap", "{inv}");
            let report = inv["report"].as_str().unwrap_or_default();
            assert!(
                report.starts_with(&format!("REPORT RequestId: {id}")),
                "{inv}"
            );
            return inv.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no logs for invocation {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_tenants_data_is_gone_by_every_path_and_its_keys_are_refused() {
    let dir = server_dir();
    let server = dir.start();
    let admin = server.client().with_key(ADMIN);
    let key = admin
        .post("/admin/v1/tenants")
        .body(r#"{"name": "shop"}"#)
        .await
        .expect(201)
        .json()["api_key"]
        .as_str()
        .expect("key")
        .to_string();
    let shop = server.client().with_key(&key);
    let grants = [
        ("kv", "kv-counter", r#"{"kv_stores": ["visits"]}"#),
        ("blob", "blob-store", r#"{"blob_containers": ["photos"]}"#),
        ("files", "files", r#"{"directory": true}"#),
        ("pub", "publisher", r#"{"topics": ["orders"]}"#),
    ];
    let deploy_all = async |admin: &Client| {
        for (name, guest, grant) in grants {
            admin
                .put(&format!("/admin/v1/tenants/shop/functions/{name}"))
                .header(GRANTS_HEADER, grant)
                .body(guests().bytes(guest))
                .await
                .expect_status_in(&[200, 201]);
        }
    };
    deploy_all(&admin).await;
    assert_eq!(shop.run("/shop/kv", "set visits home 7").await, "ok");
    assert_eq!(
        shop.run("/shop/blob", "write photos cat.jpg meow").await,
        "ok"
    );
    assert_eq!(shop.run("/shop/files", "write notes.txt hello").await, "ok");
    assert_eq!(shop.run("/shop/pub", "publish orders one").await, "ok");
    shop.get("/storage/v1/shop/photos/cat.jpg")
        .await
        .expect(200);
    let files = dir.path().join("data/files/shop");
    assert!(files.join("notes.txt").is_file());

    admin.delete("/admin/v1/tenants/shop").await.expect(204);
    // The old key is refused by every tenant API, at once; its functions
    // are gone.
    shop.get("/storage/v1/shop/photos/cat.jpg")
        .await
        .expect(401);
    shop.get("/queues/v1/shop/orders").await.expect(401);
    shop.post("/shop/kv")
        .body("get visits home")
        .await
        .expect(404);
    admin.get("/admin/v1/tenants/shop").await.expect(404);
    assert!(!files.exists(), "the tenant's files are deleted");

    // A tenant of the same name starts empty: nothing came back.
    let key = admin
        .post("/admin/v1/tenants")
        .body(r#"{"name": "shop"}"#)
        .await
        .expect(201)
        .json()["api_key"]
        .as_str()
        .expect("key")
        .to_string();
    let shop = server.client().with_key(&key);
    admin
        .get("/admin/v1/tenants/shop/functions/kv")
        .await
        .expect(404);
    deploy_all(&admin).await;
    shop.post("/shop/kv")
        .body("get visits home")
        .await
        .expect_error(400, "rejected");
    let r = shop.post("/shop/blob").body("has photos cat.jpg").await;
    assert_eq!(r.text(), "false", "{}", r.text());
    let r = shop.post("/shop/files").body("read notes.txt").await;
    assert_ne!(r.status.as_u16(), 200, "{}", r.text());
    let q = shop.get("/queues/v1/shop/orders").await;
    assert!(
        q.status.as_u16() == 404 || q.json()["visible"] == 0,
        "{}",
        q.text()
    );
    server.stop();
}
