//! The README's main job as a user runs it: the real `nimbus serve` on a
//! config wiring `uploads` → `thumbnail`, a PNG and a JPEG uploaded through
//! the storage API, their thumbnails fetched back and measured; the
//! invocations billed with trigger `object`; and an upload acknowledged
//! right before a kill -9 processed after the restart.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use image::{DynamicImage, ImageFormat, RgbImage};
use nimbus_core::{JsonLinesLedger, Outcome, Trigger};

use crate::guests;
use crate::http::NimbusServe;

const KEY: &str = "demo-key";

async fn request(
    server: &NimbusServe,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", server.addr))
        .header("authorization", format!("Bearer {KEY}"))
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = client.request(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

fn encode(w: u32, h: u32, format: ImageFormat) -> Vec<u8> {
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 200) as u8, (y % 200) as u8, 90])
    }));
    let mut buf = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut buf), format)
        .expect("encode");
    buf
}

async fn upload(server: &NimbusServe, key: &str, data: Vec<u8>) {
    let (status, body) = request(
        server,
        Method::PUT,
        &format!("/storage/v1/demo/uploads/{key}"),
        data,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

/// The thumbnail's (width, height), once it exists (bounded wait).
async fn thumbnail(server: &NimbusServe, key: &str) -> (u32, u32) {
    for _ in 0..200 {
        let (status, body) = request(
            server,
            Method::GET,
            &format!("/storage/v1/demo/thumbnails/{key}"),
            Vec::new(),
        )
        .await;
        if status == StatusCode::OK {
            let img = image::load_from_memory(&body).expect("a thumbnail image");
            return (img.width(), img.height());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no thumbnail for {key}:\n{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_through_the_storage_api_get_thumbnails_even_across_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("nimbus.toml");
    std::fs::write(
        &config,
        format!(
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
            component = guests().path("thumbnail").display().to_string(),
        ),
    )
    .expect("write config");
    let cwd = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("usage.jsonl");

    let mut server = NimbusServe::start(&config, cwd.path());
    upload(&server, "cat.png", encode(1000, 500, ImageFormat::Png)).await;
    upload(&server, "dir/dog.jpg", encode(200, 400, ImageFormat::Jpeg)).await;
    upload(&server, "small.png", encode(60, 30, ImageFormat::Png)).await;
    assert_eq!(thumbnail(&server, "cat.png").await, (128, 64));
    assert_eq!(thumbnail(&server, "dir/dog.jpg").await, (64, 128));
    assert_eq!(thumbnail(&server, "small.png").await, (60, 30));

    // Billed like any invocation, with its trigger.
    let (_, metrics) = request(&server, Method::GET, "/metrics", Vec::new()).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(
            "nimbus_invocations_total{tenant=\"demo\",function=\"thumbnail\",outcome=\"success\"} 3"
        ),
        "{metrics}"
    );

    // Acknowledged, then killed before (or while) the event is delivered.
    upload(&server, "last.png", encode(300, 300, ImageFormat::Png)).await;
    server.child.kill().expect("kill -9");
    let status = server.child.wait().expect("wait");
    assert_eq!(status.signal(), Some(9));
    drop(server);

    let mut server = NimbusServe::start(&config, cwd.path());
    assert_eq!(thumbnail(&server, "last.png").await, (128, 128));
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(10)).success());

    let records = JsonLinesLedger::read(&ledger).expect("ledger");
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
