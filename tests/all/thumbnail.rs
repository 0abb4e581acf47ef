//! The README's main job as a user runs it: the real `nimbus serve` on a
//! config wiring `uploads` → `thumbnail`, a PNG and a JPEG uploaded through
//! the storage API, their thumbnails fetched back and measured; the
//! invocations billed with trigger `object`; and an upload acknowledged
//! right before a kill -9 processed after the restart.

use std::time::Duration;

use http::StatusCode;
use image::ImageFormat;
use nimbus_core::{Outcome, Trigger};

use crate::support::{NimbusServe, ServeDir, guest_path, test_image};

const KEY: &str = "demo-key";

async fn upload(server: &NimbusServe, key: &str, data: Vec<u8>) {
    server
        .client()
        .with_key(KEY)
        .put(&format!("/storage/v1/demo/uploads/{key}"))
        .body(data)
        .await
        .expect(200);
}

/// The thumbnail's (width, height), once it exists (bounded wait).
async fn thumbnail(server: &NimbusServe, key: &str) -> (u32, u32) {
    let demo = server.client().with_key(KEY);
    for _ in 0..200 {
        let r = demo
            .get(&format!("/storage/v1/demo/thumbnails/{key}"))
            .await;
        if r.status == StatusCode::OK {
            let img = image::load_from_memory(&r.body).expect("a thumbnail image");
            return (img.width(), img.height());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no thumbnail for {key}:\n{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_through_the_storage_api_get_thumbnails_even_across_a_crash() {
    let dir = ServeDir::new(&format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"

[tenants.demo]
api_keys = ["{KEY}"]

[[functions]]
tenant = "demo"
name = "thumbnail"
component = {component:?}
blob_containers = ["uploads", "thumbnails"]

[[object_triggers]]
tenant = "demo"
function = "thumbnail"
container = "uploads"
"#,
        component = guest_path("thumbnail"),
    ));

    let server = dir.start();
    upload(&server, "cat.png", test_image(1000, 500, ImageFormat::Png)).await;
    upload(
        &server,
        "dir/dog.jpg",
        test_image(200, 400, ImageFormat::Jpeg),
    )
    .await;
    upload(&server, "small.png", test_image(60, 30, ImageFormat::Png)).await;
    assert_eq!(thumbnail(&server, "cat.png").await, (128, 64));
    assert_eq!(thumbnail(&server, "dir/dog.jpg").await, (64, 128));
    assert_eq!(thumbnail(&server, "small.png").await, (60, 30));

    // Billed like any invocation, with its trigger.
    let metrics = server.client().get("/metrics").await.text();
    assert!(
        metrics.contains(
            "nimbus_invocations_total{tenant=\"demo\",function=\"thumbnail\",outcome=\"success\"} 3"
        ),
        "{metrics}"
    );

    // Acknowledged, then killed before (or while) the event is delivered.
    upload(&server, "last.png", test_image(300, 300, ImageFormat::Png)).await;
    server.kill_9();

    let server = dir.start();
    assert_eq!(thumbnail(&server, "last.png").await, (128, 128));
    server.stop();

    let records = dir.records();
    let last_png_runs = records.len() - 3;
    assert!(
        (1..=2).contains(&last_png_runs),
        "the crashed upload ran {last_png_runs} times: {records:?}"
    );
    assert!(records.iter().all(|r| r.trigger == Trigger::Object
        && r.function == "thumbnail"
        && r.outcome == Outcome::Success
        && r.blob_bytes_read > 0
        && r.blob_bytes_written > 0));
}
