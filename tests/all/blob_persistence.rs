//! `wasi:blobstore` objects outliving a restart of the host and a `kill -9`
//! of `nimbus serve`, driven through the `blob-store` guest.

use std::path::Path;

use nimbus_core::{Limits, Trigger};

use crate::blob::{deploy_blobs, digest, object_files, pattern, read_native, stored_gauge};
use crate::support::{NimbusServe, ServeDir, data_host, guest_path, lines, ok, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_survive_a_restart_of_the_host() {
    let t = data_host(|b| b);
    let host = &t.host;
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_blobs(host, "t", "blobs", &["uploads", "notes"]).await;
    assert_eq!(
        ok(host, "t", "blobs", "put uploads big 3000001 65536").await,
        "ok 3000001"
    );
    assert_eq!(
        ok(host, "t", "blobs", "write notes hello hello again").await,
        "ok"
    );
    assert_eq!(ok(host, "t", "blobs", "write notes gone soon").await, "ok");
    assert_eq!(ok(host, "t", "blobs", "del notes gone").await, "ok");
    assert_eq!(
        ok(host, "t", "blobs", "copy uploads big notes copy").await,
        "ok"
    );
    assert_eq!(
        ok(host, "t", "blobs", "abandon notes ghost 1000").await,
        "ok"
    );
    let stored = host.blob_store().stored_bytes("t").expect("stored");
    assert_eq!(stored, 2 * 3_000_001 + 11);
    assert!(t.dir().join("data/blobs/blobs.redb").is_file());

    let t = t.restart(|b| b);
    let host = &t.host;
    // Readable natively before anything is deployed.
    assert!(read_native(host, "t", "uploads", "big") == pattern(3_000_001));
    host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_blobs(host, "t", "blobs", &["uploads", "notes"]).await;
    assert_eq!(
        ok(host, "t", "blobs", "get uploads big").await,
        digest(3_000_001)
    );
    assert_eq!(
        ok(host, "t", "blobs", "get notes copy").await,
        digest(3_000_001)
    );
    assert_eq!(
        ok(host, "t", "blobs", "cat notes hello").await,
        "hello again"
    );
    assert_eq!(ok(host, "t", "blobs", "has notes gone").await, "false");
    assert_eq!(ok(host, "t", "blobs", "has notes ghost").await, "false");
    assert_eq!(
        lines(&ok(host, "t", "blobs", "list notes").await),
        lines("copy\nhello")
    );
    assert_eq!(host.blob_store().stored_bytes("t").expect("stored"), stored);
    assert_eq!(stored_gauge(host, "t"), Some(stored as f64));
    assert_eq!(object_files(t.dir(), "t").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_object_survives_kill_9_of_nimbus_serve() {
    const KEY: &str = "acme-key";
    let dir = ServeDir::new(&format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"

[tenants.acme]
api_keys = ["{KEY}"]
max_blob_bytes = 10000000

[[functions]]
tenant = "acme"
name = "blobs"
component = {component:?}
blob_containers = ["uploads"]
"#,
        component = guest_path("blob-store"),
    ));
    let run = |server: &NimbusServe, command: &str| {
        let client = server.client().with_key(KEY);
        let command = command.to_string();
        async move { client.run("/acme/blobs", &command).await }
    };

    let server = dir.start();
    assert_eq!(
        run(&server, "put uploads big 2000001 65536").await,
        "ok 2000001"
    );
    assert_eq!(run(&server, "write uploads note acknowledged").await, "ok");
    // The config's quota applies.
    server
        .client()
        .with_key(KEY)
        .post("/acme/blobs")
        .body("put uploads too-big 9000000 65536")
        .await
        .expect(502);
    assert_eq!(run(&server, "has uploads too-big").await, "false");
    // A write in flight, one byte per stream write (seconds of work): its
    // spool file is on disk when the server dies.
    let objects = dir.path().join("data/blobs/data/acme");
    let count = |dir: &Path| std::fs::read_dir(dir).expect("tenant dir").count();
    assert_eq!(count(&objects), 2);
    let slow = tokio::spawn(run(&server, "put uploads slow 3000000 1"));
    wait_for("the slow put's spool file", || count(&objects) == 3).await;
    // SIGKILL right after the acknowledgements, mid-write.
    server.kill_9();
    assert!(slow.await.is_err(), "the slow put was cut off");
    assert_eq!(
        count(&objects),
        3,
        "the cut-off write's spool is still there"
    );

    let server = dir.start();
    assert_eq!(run(&server, "get uploads big").await, digest(2_000_001));
    assert_eq!(run(&server, "has uploads slow").await, "false");
    assert_eq!(run(&server, "cat uploads note").await, "acknowledged");
    assert_eq!(
        lines(&run(&server, "list uploads").await),
        lines("big\nnote")
    );
    assert_eq!(count(&objects), 2, "the orphaned spool was swept at start");
    drop(server);

    // The ledger billed the HTTP invocations' blob bytes.
    let records = dir.records();
    assert!(
        records.iter().all(|r| r.trigger == Trigger::Http),
        "{records:?}"
    );
    let written: u64 = records.iter().map(|r| r.blob_bytes_written).sum();
    let read: u64 = records.iter().map(|r| r.blob_bytes_read).sum();
    assert_eq!(written, 2_000_001 + 12);
    assert_eq!(read, 2_000_001 + 12);
}
