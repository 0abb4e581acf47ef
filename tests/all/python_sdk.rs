//! The Python SDK end to end, each sample built from source with
//! `nimbus_guests::build_python_app` (componentize-py + `sdk/python`):
//!
//! - `guests/python/seed-handler` is the seed's Lambda handler byte for
//!   byte, and under the real `nimbus serve` an upload to `uploads` runs it
//!   through an object trigger: its line in `GET …/logs`, a usage record
//!   with `trigger: object`, and its `statusCode` 200 result;
//! - `guests/python/notes` stores notes in a blob container and counts
//!   writes in a kv store over HTTP; an ungranted container is denied in
//!   the guest and counted;
//! - `guests/python/lambda-events`: a Lambda handler gets API Gateway v2,
//!   S3, EventBridge and CloudEvent-shaped events and a Lambda context from
//!   the real invocation, and a `batchItemFailures` answer retries only the
//!   SQS message it names;
//! - `guests/python/s3-client`: boto3's S3 calls and error shapes inside a
//!   function, checked against what the storage API then holds;
//! - `guests/python/limits`: a spin loop times out, unbounded growth hits
//!   the memory limit, an exception is a guest error with its traceback,
//!   a file open and a socket connect fail inside the guest and are
//!   counted as denied, and neither the host nor another tenant notices.
//!
//! Each component is compiled once per run (the shared compile cache).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nimbus_core::nimbus_queue::{OutgoingMessage, QueueConfig, now_ms};
use nimbus_core::{
    Error, Event, FunctionConfig, FunctionLimits, GuestError, Limits, Outcome, Trigger, UsageRecord,
};
use nimbus_http::GRANTS_HEADER;
use nimbus_triggers::{QueueTrigger, TriggerOptions, Triggers};
use serde_json::{Value, json};

use crate::support::{
    ADMIN_KEY, FUNCTIONS, GatewayHost, NimbusServe, ServeDir, call, containers, data_host, deploy,
    deploy_with, eventually, metric, test_host,
};

/// How long an admin deploy may take: compiling an 18 MB component in a
/// debug build takes a minute alone, several beside other builds.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(900);

fn sample(name: &str) -> PathBuf {
    nimbus_guests::build_python_app(name).unwrap_or_else(|e| panic!("{e}"))
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(sample(name)).expect("component")
}

/// The seed's text, beside the workspace (`/work/shared` next to
/// `/work/main`).
fn seed() -> String {
    let path = nimbus_guests::workspace_root().join("../shared/seed/000_9a420601f27210f9.txt");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The code block of step 1 ("#### 步骤 1"), as the seed prints it: every
/// line between its fences, each with its newline.
fn seed_step_1_code(seed: &str) -> String {
    let step = seed.find("#### 步骤 1").expect("the seed has a step 1");
    let mut lines = seed[step..].split_inclusive('\n');
    lines
        .by_ref()
        .find(|l| l.trim_end() == "```")
        .expect("step 1 opens a code block");
    lines.take_while(|l| l.trim_end() != "```").collect()
}

#[test]
fn the_seed_handler_is_the_seeds_step_1_byte_for_byte() {
    let code = seed_step_1_code(&seed());
    assert!(
        code.starts_with("import json\nimport boto3\n") && code.ends_with("    }\n"),
        "not the seed's handler block: {code:?}"
    );
    let path = nimbus_guests::workspace_root().join("guests/python/seed-handler/app.py");
    let sample = std::fs::read_to_string(&path).expect("guests/python/seed-handler/app.py");
    assert_eq!(
        sample, code,
        "guests/python/seed-handler/app.py must be the seed's code exactly"
    );
}

/// The event the object trigger delivers for `key` in `demo`'s `uploads`
/// (the fields of `nimbus-triggers`' object event).
fn object_created(key: &str, size: u64, etag: &str) -> Event {
    let time = "2026-01-02T03:04:05.678Z";
    let data = json!({
        "container": "uploads", "key": key, "size": size,
        "content_type": "image/jpeg", "etag": etag, "time": time,
    });
    let mut e = Event::new(
        "nimbus.object.created",
        "/storage/v1/demo/uploads",
        serde_json::to_vec(&data).expect("json"),
    )
    .content_type("application/json")
    .subject(key)
    .attribute("container", "uploads")
    .attribute("key", key)
    .attribute("size", size.to_string())
    .attribute("etag", etag)
    .attribute("depth", "0")
    .attribute("objectcontenttype", "image/jpeg");
    e.id = format!("object-{etag}");
    e.time = Some(time.into());
    e
}

/// Polls `f` every 50 ms for up to 60 s (triggers retry with backoff; a
/// Python instance in a debug build on a busy machine takes a while).
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    server: &NimbusServe,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stdout(inv: &Value) -> &str {
    inv["logs"]["stdout"].as_str().unwrap_or_default()
}

fn by_id<'a>(records: &'a [UsageRecord], id: &str) -> &'a UsageRecord {
    records
        .iter()
        .find(|r| r.invocation_id.to_string() == id)
        .unwrap_or_else(|| panic!("no usage record {id} in {records:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_handler_runs_unchanged_on_uploads_under_nimbus_serve() {
    let component = sample("seed-handler");

    // In process first: this deploy also puts the compiled component in
    // the cache `nimbus serve` loads from (it compiles before it listens,
    // which could outlast its start-up wait in a debug build).
    let t = data_host(|b| b);
    t.host
        .add_tenant("demo", Limits::default())
        .expect("tenant");
    let spec = containers(&["uploads"]);
    t.host
        .deploy_with("demo", "seed", &std::fs::read(&component).unwrap(), spec)
        .await
        .unwrap_or_else(|e| panic!("deploy the seed handler: {e}"));
    // Its result, JSON-serialized as Lambda returns it; the key as S3
    // encodes it in the notification.
    let done = t
        .host
        .invoke(
            "demo",
            "seed",
            object_created("2026/my photo.jpg", 10, "01a2b3"),
        )
        .await
        .unwrap_or_else(|e| panic!("the seed handler: {e}"));
    assert_eq!(
        done.response.content_type.as_deref(),
        Some("application/json")
    );
    let result: Value = serde_json::from_slice(&done.response.data).expect("a JSON result");
    assert_eq!(result["statusCode"], 200, "{result}");
    // `body` is the handler's `json.dumps('图片处理完成!')`.
    let body = result["body"].as_str().expect("a str body");
    assert_eq!(
        serde_json::from_str::<String>(body).expect("JSON text"),
        "图片处理完成!"
    );
    assert_eq!(
        String::from_utf8_lossy(&done.logs.stdout),
        "开始处理文件: 2026/my+photo.jpg 来自桶: uploads\n"
    );
    drop(t);

    let dir = ServeDir::new(&format!(
        r#"
ledger = "usage.jsonl"
data_dir = "data"
admin_keys = ["{ADMIN_KEY}"]

[tenants.demo]
api_keys = ["demo-key"]

[[functions]]
tenant = "demo"
name = "seed-handler"
component = {component:?}
blob_containers = ["uploads"]

[[object_triggers]]
tenant = "demo"
function = "seed-handler"
container = "uploads"
"#,
        component = component.display().to_string(),
    ));
    let server = dir.start();
    let demo = server.client().with_key("demo-key");
    let admin = server.client().with_key(ADMIN_KEY);
    demo.put("/storage/v1/demo/uploads/photo.jpg")
        .header("content-type", "image/jpeg")
        .body(vec![0xffu8, 0xd8, 0xff, 0xe0, 1, 2, 3])
        .await
        .expect(200);

    let line = "开始处理文件: photo.jpg 来自桶: uploads\n";
    let inv = until("the seed handler's line in its logs", &server, || async {
        let r = admin
            .get("/admin/v1/tenants/demo/functions/seed-handler/logs")
            .await
            .expect(200);
        r.json()["invocations"]
            .as_array()?
            .iter()
            .find(|i| stdout(i) == line)
            .cloned()
    })
    .await;
    assert_eq!(inv["outcome"], "success", "{inv}");
    assert_eq!(inv["logs"]["stderr"], "", "{inv}");
    let id = inv["invocation_id"].as_str().expect("id").to_string();
    let records = dir.records();
    let rec = by_id(&records, &id);
    assert_eq!(rec.trigger, Trigger::Object, "{rec:?}");
    assert_eq!(rec.outcome, Outcome::Success, "{rec:?}");
    assert_eq!(rec.function, "seed-handler");
    assert!(rec.fuel_consumed > 0, "{rec:?}");
    assert_eq!(rec.denied_calls, 0, "{rec:?}");
    assert_eq!(records.len(), 1, "one upload, one invocation: {records:?}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_are_kept_in_blob_and_counted_in_kv_through_the_sdk() {
    let component = bytes("notes");
    let gw = GatewayHost::over(data_host(|b| b), Limits::default(), |b| {
        b.admin_key(ADMIN_KEY)
    })
    .await;
    let (acme, admin) = (&gw.acme, &gw.admin);
    let r = admin
        .put(&format!("{FUNCTIONS}/notes"))
        .header(
            GRANTS_HEADER,
            r#"{"blob_containers": ["notes"], "kv_stores": ["notes"], "topics": ["note-events"], "config": {"title": "My notes", "topic": "note-events"}}"#,
        )
        .timeout(DEPLOY_TIMEOUT)
        .body(component)
        .await
        .expect(201);
    assert_eq!(r.json()["kind"], "http+event", "{}", r.text());
    // Something the function may not read, in the same tenant.
    acme.put("/storage/v1/acme/private").await.expect(201);
    acme.put("/storage/v1/acme/private/secret.txt")
        .body("top secret")
        .await
        .expect(200);

    let first = acme
        .put("/acme/notes/notes/todo")
        .body("buy milk")
        .await
        .expect(201);
    assert_eq!(
        first.json(),
        json!({"name": "todo", "bytes": 8, "writes": 1})
    );
    let second = acme
        .put("/acme/notes/notes/todo")
        .body("buy milk and bread")
        .await
        .expect(200);
    assert_eq!(second.json()["writes"], 2);
    let got = acme.get("/acme/notes/notes/todo").await.expect(200);
    assert_eq!(got.text(), "buy milk and bread");
    assert_eq!(got.header("x-note-writes"), Some("2"));
    assert_eq!(
        got.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    acme.put("/acme/notes/notes/later")
        .body("call bob")
        .await
        .expect(201);
    let listed = acme.get("/acme/notes/notes").await.expect(200);
    assert_eq!(
        listed.json(),
        json!({"title": "My notes", "notes": ["later", "todo"]})
    );
    let missing = acme.get("/acme/notes/notes/nothing").await.expect(404);
    assert_eq!(missing.json()["error"], "no note 'nothing'");
    // What the function wrote is in the tenant's container.
    let stored = acme.get("/storage/v1/acme/notes/todo").await.expect(200);
    assert_eq!(stored.text(), "buy milk and bread");

    // An ungranted container: AccessDenied inside the guest, naming it.
    let denied = acme
        .post("/acme/notes/notes/stolen?from=private/secret.txt")
        .await
        .expect(403);
    let body = denied.json();
    assert_eq!(body["type"], "AccessDenied", "{body}");
    assert_eq!(
        body["error"],
        "blob container 'private' is not granted to this function"
    );
    assert!(!denied.text().contains("top secret"));
    acme.get("/acme/notes/notes/stolen").await.expect(404);

    // Every write was announced on the configured topic, as JSON.
    let announced = gw
        .host()
        .queue_store()
        .receive("acme", "note-events", 10, now_ms())
        .expect("the topic's queue");
    let bodies: Vec<Value> = announced
        .iter()
        .map(|d| serde_json::from_slice(&d.body).expect("JSON"))
        .collect();
    assert_eq!(
        bodies,
        [
            json!({"name": "todo", "bytes": 8, "writes": 1}),
            json!({"name": "todo", "bytes": 18, "writes": 2}),
            json!({"name": "later", "bytes": 8, "writes": 1}),
        ]
    );
    assert!(
        announced
            .iter()
            .all(|d| d.content_type.as_deref() == Some("application/json")),
        "{announced:?}"
    );
    assert_eq!(
        announced[0].metadata,
        [("note".to_string(), "todo".to_string())]
    );
    // nimbus.log entries are kept with their level and context.
    let logs = gw.host().invocation_logs(
        "acme",
        "notes",
        Some(first.invocation_id().parse().expect("uuid")),
    );
    let entry = &logs[0].logs.entries[0];
    assert_eq!(
        (entry.level, entry.context.as_str(), entry.message.as_str()),
        ("info", "notes", "stored todo (8 bytes, write 1)")
    );

    let records = gw.records();
    let put = by_id(&records, first.invocation_id());
    assert_eq!(put.outcome, Outcome::Success);
    assert_eq!(put.messages_published, 1, "{put:?}");
    assert_eq!(put.blob_bytes_written, 8, "{put:?}");
    assert!(put.kv_writes >= 1, "{put:?}");
    assert_eq!(put.request_bytes, 8, "{put:?}");
    let read = by_id(&records, got.invocation_id());
    assert_eq!(read.blob_bytes_read, 18, "{read:?}");
    assert!(read.kv_reads >= 1, "{read:?}");
    assert_eq!(read.kv_writes, 0, "{read:?}");
    assert_eq!(read.blob_bytes_written, 0, "{read:?}");
    let refused = by_id(&records, denied.invocation_id());
    assert!(refused.denied_calls > 0, "{refused:?}");
    assert_eq!(refused.blob_bytes_read, 0, "{refused:?}");
    for rec in &records {
        assert!(rec.fuel_consumed > 0, "{rec:?}");
        if rec.invocation_id != refused.invocation_id {
            assert_eq!(rec.denied_calls, 0, "{rec:?}");
        }
    }
    assert_eq!(
        crate::support::denied_calls(gw.host(), "acme", "notes"),
        refused.denied_calls as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_handler_gets_aws_shaped_events_and_its_context() {
    let component = bytes("lambda-events");
    let gw = GatewayHost::over(data_host(|b| b), Limits::default(), |b| {
        b.admin_key(ADMIN_KEY)
    })
    .await;
    let (acme, admin) = (&gw.acme, &gw.admin);
    let r = admin
        .put(&format!(
            "{FUNCTIONS}/lam?timeout_ms=20000&max_memory_bytes={}",
            96 << 20
        ))
        .timeout(DEPLOY_TIMEOUT)
        .body(component)
        .await
        .expect(201);
    assert_eq!(r.json()["kind"], "http+event", "{}", r.text());

    // HTTP: an API Gateway v2 event; a result without statusCode is a 200
    // with the result as JSON, as function URLs answer.
    let r = acme
        .post("/acme/lam/echo/path?a=1&b=x+y&a=2")
        .header("content-type", "application/json")
        .header("x-custom", "yes")
        .header("cookie", "c1=v1; c2=v2")
        .body(r#"{"hello":"world"}"#)
        .await
        .expect(200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let id = r.invocation_id().to_string();
    let echo = r.json();
    let event = &echo["event"];
    assert_eq!(event["version"], "2.0", "{echo:#}");
    assert_eq!(event["routeKey"], "$default");
    assert_eq!(event["rawPath"], "/acme/lam/echo/path");
    assert_eq!(event["rawQueryString"], "a=1&b=x+y&a=2");
    assert_eq!(
        event["queryStringParameters"],
        json!({"a": "1,2", "b": "x y"})
    );
    assert_eq!(event["headers"]["x-custom"], "yes");
    assert_eq!(event["headers"]["content-type"], "application/json");
    assert!(event["headers"].get("cookie").is_none(), "{event}");
    assert!(event["headers"].get("authorization").is_none(), "{event}");
    assert_eq!(event["cookies"], json!(["c1=v1", "c2=v2"]));
    assert_eq!(event["body"], r#"{"hello":"world"}"#);
    assert_eq!(event["isBase64Encoded"], false);
    let rc = &event["requestContext"];
    assert_eq!(rc["http"]["method"], "POST", "{rc}");
    assert_eq!(rc["http"]["path"], "/acme/lam/echo/path");
    assert_eq!(rc["accountId"], "acme");
    assert_eq!(rc["requestId"], id.as_str());
    assert!(rc["timeEpoch"].as_u64() > Some(1_700_000_000_000), "{rc}");
    let context = &echo["context"];
    assert_eq!(
        context,
        &json!({
            "aws_request_id": id,
            "function_name": "lam",
            "function_version": "1",
            "memory_limit_in_mb": "96",
            "invoked_function_arn": "arn:nimbus:lambda:nimbus:acme:function:lam",
            "log_group_name": "/nimbus/acme/lam",
            "remaining_ms": context["remaining_ms"],
        })
    );
    let remaining = context["remaining_ms"].as_u64().expect("a number");
    assert!(
        remaining > 0 && remaining <= 20_000,
        "get_remaining_time_in_millis() = {remaining} of a 20 s timeout"
    );
    assert_eq!(echo["env"]["AWS_LAMBDA_FUNCTION_NAME"], "lam");
    assert_eq!(echo["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "96");
    assert_eq!(echo["env"]["_HANDLER"], "app.lambda_handler");

    // A body that is not text arrives base64-encoded.
    let r = acme
        .post("/acme/lam/bin")
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 255, 1])
        .await
        .expect(200);
    let event = &r.json()["event"];
    assert_eq!(event["isBase64Encoded"], true, "{event}");
    assert_eq!(event["body"], "AP8B");

    // A full response: status, headers, cookies and body as returned.
    let r = acme.get("/acme/lam/status/201").await.expect(201);
    assert_eq!(r.text(), "made");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("x-handled-by"), Some("lam"));
    assert_eq!(r.header("set-cookie"), Some("seen=1; Path=/"));

    // An exception: 502, a guest error, the traceback in the logs.
    let r = acme.get("/acme/lam/boom").await.expect(502);
    let boom = r.invocation_id().to_string();
    let logs = gw
        .host()
        .invocation_logs("acme", "lam", Some(boom.parse().expect("uuid")));
    let stderr = String::from_utf8_lossy(&logs[0].logs.stderr).into_owned();
    assert!(
        stderr.starts_with("Traceback (most recent call last):\n")
            && stderr.ends_with("ValueError: no such thing as /acme/lam/boom\n"),
        "{stderr}"
    );
    let boom_record = by_id(&gw.records(), &boom).clone();
    assert_eq!(boom_record.outcome, Outcome::GuestError);
    assert_eq!(boom_record.denied_calls, 0, "a traceback opens no file");

    // Trigger events: S3, EventBridge, and anything else as a CloudEvent.
    let invoke = |event: Event| async {
        let done = gw
            .host()
            .invoke("acme", "lam", event)
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}"));
        assert_eq!(
            done.response.content_type.as_deref(),
            Some("application/json")
        );
        serde_json::from_slice::<Value>(&done.response.data).expect("JSON")
    };
    let s3 = invoke(object_created(
        "2026/my photo (1).jpg",
        12,
        "01a2b3c4d5e6f708",
    ))
    .await;
    let record = &s3["event"]["Records"][0];
    assert_eq!(record["eventSource"], "aws:s3", "{s3:#}");
    assert_eq!(record["eventVersion"], "2.1");
    assert_eq!(record["eventName"], "ObjectCreated:Put");
    assert_eq!(record["eventTime"], "2026-01-02T03:04:05.678Z");
    assert_eq!(record["awsRegion"], "nimbus");
    assert_eq!(record["s3"]["bucket"]["name"], "uploads");
    assert_eq!(record["s3"]["bucket"]["arn"], "arn:nimbus:s3:::uploads");
    let object = &record["s3"]["object"];
    assert_eq!(
        object["key"], "2026/my+photo+%281%29.jpg",
        "as S3 encodes it"
    );
    assert_eq!(object["size"], 12);
    assert_eq!(object["eTag"], "01a2b3c4d5e6f708");
    assert_eq!(object["sequencer"], "01A2B3C4D5E6F708");

    let mut tick = Event::new(
        "nimbus.schedule.tick",
        "/schedules/acme/lam",
        br#"{"scheduled_time":"2026-03-04T05:06:00.000Z","cron":"0 * * * * *","timezone":"UTC"}"#
            .to_vec(),
    )
    .content_type("application/json");
    tick.time = Some("2026-03-04T05:06:00.000Z".into());
    let tick_id = tick.id.clone();
    let scheduled = invoke(tick).await;
    assert_eq!(
        scheduled["event"],
        json!({
            "version": "0", "id": tick_id, "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "acme", "time": "2026-03-04T05:06:00Z",
            "region": "nimbus", "resources": ["arn:nimbus:events:nimbus:acme:rule/lam"],
            "detail": {},
        })
    );
    let other = invoke(
        Event::new("test.event", "/tests", b"plain text".to_vec()).attribute("color", "blue"),
    )
    .await;
    assert_eq!(other["event"]["type"], "test.event", "{other}");
    assert_eq!(other["event"]["source"], "/tests");
    assert_eq!(other["event"]["data"], "plain text");
    assert_eq!(other["event"]["color"], "blue");
    assert_eq!(other["event"]["specversion"], "1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_batch_item_failure_retries_only_that_message() {
    let th = test_host(|b| b);
    let host = &th.host;
    host.add_tenant("q", Limits::default()).expect("tenant");
    host.deploy("q", "sqs", &bytes("lambda-events"))
        .await
        .unwrap_or_else(|e| panic!("deploy lambda-events: {e}"));
    let triggers = Triggers::new(
        host.clone(),
        TriggerOptions {
            poll_interval: Duration::from_millis(10),
            ..TriggerOptions::default()
        },
    )
    .expect("triggers");
    triggers
        .add_queue_trigger(QueueTrigger {
            tenant: "q".into(),
            function: "sqs".into(),
            queue: "jobs".into(),
            batch_size: 3,
            config: QueueConfig {
                visibility_timeout: Duration::from_secs(60),
                max_receive_count: 3,
                backoff_base: Duration::from_millis(10),
                backoff_max: Duration::from_millis(40),
                ..QueueConfig::default()
            },
        })
        .expect("queue trigger");
    let queues = host.queue_store();
    let ids: Vec<String> = ["first", "fail-once please", "third"]
        .iter()
        .map(|body| {
            let mut msg = OutgoingMessage::new(*body);
            msg.metadata = vec![("origin".into(), "test".into())];
            queues
                .send("q", "jobs", msg, now_ms())
                .expect("send")
                .to_string()
        })
        .collect();
    triggers.start();
    eventually("every message done", || {
        let st = queues.stats("q", "jobs", now_ms()).ok()?;
        let runs = th.records().len();
        (st.visible + st.in_flight + st.delayed == 0 && runs >= 4).then_some(())
    })
    .await;
    triggers.shutdown().await;

    let logs = host.invocation_logs("q", "sqs", None);
    let lines: Vec<String> = logs
        .iter()
        .map(|l| String::from_utf8_lossy(&l.logs.stdout).into_owned())
        .collect();
    let runs_of = |id: &str| lines.iter().filter(|l| l.contains(id)).count();
    assert_eq!(runs_of(&ids[0]), 1, "{lines:#?}");
    assert_eq!(runs_of(&ids[1]), 2, "{lines:#?}");
    assert_eq!(runs_of(&ids[2]), 1, "{lines:#?}");
    for (n, id) in [(1, &ids[1]), (2, &ids[1]), (1, &ids[0])] {
        let want = format!("receive {n} source aws:sqs");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(id.as_str()) && l.contains(&want)),
            "{id} {want}: {lines:#?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("body 'fail-once please' receive 2")),
        "{lines:#?}"
    );
    // The record carries the body's MD5 (of "first") and the metadata as
    // message attributes.
    assert!(
        lines.iter().any(|l| l.contains(&ids[0])
            && l.contains("md5 8b04d5e3775d298e78455efc5ca404d5 attributes ['origin']")),
        "{lines:#?}"
    );
    assert_eq!(queues.dead_letters("q", "jobs", 10).unwrap().len(), 0);
    let records = th.records();
    assert_eq!(records.len(), 4, "three messages, one retry: {records:?}");
    assert!(records.iter().all(|r| r.trigger == Trigger::Queue));
    let failed: Vec<&UsageRecord> = records
        .iter()
        .filter(|r| r.outcome == Outcome::GuestError)
        .collect();
    assert_eq!(failed.len(), 1, "{records:?}");
    let failed_logs = logs
        .iter()
        .find(|l| l.invocation_id == failed[0].invocation_id)
        .expect("the failed run's logs");
    assert!(
        String::from_utf8_lossy(&failed_logs.logs.stdout).contains(&ids[1]),
        "the failed run is the named message's first: {failed_logs:?}"
    );
    assert_eq!(
        metric(
            host,
            "nimbus_queue_retries_total{tenant=\"q\",queue=\"jobs\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_s3_calls_work_on_granted_buckets_with_botocore_errors() {
    let component = bytes("s3-client");
    let gw = GatewayHost::over(data_host(|b| b), Limits::default(), |b| {
        b.admin_key(ADMIN_KEY)
    })
    .await;
    let (acme, admin) = (&gw.acme, &gw.admin);
    admin
        .put(&format!("{FUNCTIONS}/s3"))
        .header(GRANTS_HEADER, r#"{"blob_containers": ["files"]}"#)
        .timeout(DEPLOY_TIMEOUT)
        .body(component)
        .await
        .expect(201);
    acme.put("/storage/v1/acme/private").await.expect(201);

    let r = acme
        .post("/acme/s3/run")
        .body(r#"{"bucket": "files", "ungranted": "private"}"#)
        .await
        .expect(200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let seen = r.json();
    // md5("hello"), quoted as S3 gives an ETag.
    let hello = "\"5d41402abc4b2a76b9719d911017c592\"";
    assert_eq!(seen["put"], hello, "{seen:#}");
    let get = &seen["get"];
    assert_eq!(
        (&get["body"], &get["length"], &get["etag"], &get["status"]),
        (&json!("hello"), &json!(5), &json!(hello), &json!(200)),
        "{get}"
    );
    assert!(get["last_modified_year"].as_i64() >= Some(2025), "{get}");
    assert_eq!(
        seen["range"],
        json!({"body": "ell", "content_range": "bytes 1-3/5"})
    );
    assert_eq!(seen["head"]["length"], 11, "{seen:#}");
    // md5("two, as str")
    assert_eq!(seen["head"]["etag"], "\"17af692f6eb2ec7ecfb29ca9195d1bc3\"");
    assert_eq!(
        seen["list"],
        json!({"keys": ["a/one.txt", "a/two.txt"], "sizes": [5, 11], "count": 2, "truncated": false})
    );
    assert_eq!(
        seen["pages"],
        json!({"first": ["a/one.txt", "a/two.txt"], "first_truncated": true, "rest": ["b/three.txt"], "rest_truncated": false})
    );
    assert_eq!(seen["prefixes"], json!(["a/", "b/"]));
    assert_eq!(seen["empty_has_contents"], false);
    assert_eq!(
        seen["copy"],
        json!({"etag": hello, "body": "hello", "body2": "three, from a file"})
    );
    assert_eq!(seen["delete"], 204);
    let gone = &seen["get_deleted"];
    assert_eq!(
        gone["class"], "NoSuchKey",
        "client.exceptions.NoSuchKey: {gone}"
    );
    assert_eq!(gone["code"], "NoSuchKey");
    assert_eq!(gone["status"], 404);
    assert_eq!(
        gone["str"],
        "An error occurred (NoSuchKey) when calling the GetObject operation: The specified key does not exist."
    );
    assert_eq!(
        seen["head_deleted"],
        json!({"class": "ClientError", "code": "404", "message": "Not Found", "status": 404,
               "operation": "HeadObject", "str": "An error occurred (404) when calling the HeadObject operation: Not Found"})
    );
    for op in ["ungranted_get", "ungranted_put"] {
        let denied = &seen[op];
        assert_eq!(denied["code"], "AccessDenied", "{op}: {denied}");
        assert_eq!(denied["status"], 403);
        assert!(
            denied["message"]
                .as_str()
                .unwrap_or_default()
                .contains("'private' is not granted"),
            "{op}: {denied}"
        );
    }
    let dynamo = seen["dynamodb"].as_str().unwrap_or_default();
    assert!(
        dynamo.contains("boto3.client('dynamodb')") && dynamo.contains("get_object"),
        "{dynamo}"
    );

    // The calls reached the tenant's real container.
    for (key, body) in [
        ("a/two.txt", "two, as str"),
        ("b/three.txt", "three, from a file"),
        ("c/copy.txt", "hello"),
        ("c/copy2.txt", "three, from a file"),
    ] {
        let got = acme
            .get(&format!("/storage/v1/acme/files/{key}"))
            .await
            .expect(200);
        assert_eq!(got.text(), body, "{key}");
    }
    acme.get("/storage/v1/acme/files/a/one.txt")
        .await
        .expect(404);
    acme.get("/storage/v1/acme/private/x").await.expect(404);

    let records = gw.records();
    let rec = by_id(&records, r.invocation_id());
    assert_eq!(rec.outcome, Outcome::Success);
    assert_eq!(rec.denied_calls, 2, "the two calls on 'private': {rec:?}");
    assert!(
        rec.blob_bytes_written > 0 && rec.blob_bytes_read > 0,
        "{rec:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_limits_hold_and_denials_stay_inside_the_guest() {
    let th = test_host(|b| b);
    let host = &th.host;
    host.add_tenant("acme", Limits::default()).expect("tenant");
    host.add_tenant("beta", Limits::default()).expect("tenant");
    let timeout = Duration::from_secs(5);
    let memory = 96u64 << 20;
    let limits = FunctionLimits {
        // Enough fuel that the deadline, not fuel, ends the spin.
        fuel: Some(10_000_000_000_000),
        max_memory_bytes: Some(memory),
        timeout: Some(timeout),
        ..FunctionLimits::default()
    };
    host.deploy_with(
        "acme",
        "limits",
        &bytes("limits"),
        FunctionConfig::from(limits),
    )
    .await
    .unwrap_or_else(|e| panic!("deploy limits: {e}"));
    deploy(host, "beta", "echo", "echo").await;
    deploy_with(host, "beta", "other", "echo", FunctionConfig::default()).await;
    let beta_still_answers = || async {
        let done = call(host, "beta", "echo", "still here")
            .await
            .expect("beta's function is unaffected");
        assert_eq!(done.response.data, b"still here");
    };

    // A spin loop: stopped at the deadline, billed for the fuel it burnt.
    let started = Instant::now();
    match call(host, "acme", "limits", "spin").await {
        Err(Error::Timeout { report, .. }) => {
            assert_eq!(report.usage.outcome, Outcome::Timeout);
            assert!(
                report.usage.fuel_consumed > 1_000_000_000,
                "{:?}",
                report.usage
            );
        }
        other => panic!("spin: expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < timeout * 4, "{:?}", started.elapsed());
    beta_still_answers().await;

    // A list that grows without end: stopped at the memory limit.
    match call(host, "acme", "limits", "grow").await {
        Err(Error::MemoryLimitExceeded { report, .. }) => {
            assert_eq!(report.usage.outcome, Outcome::MemoryLimit);
            assert!(
                report.usage.peak_memory_bytes <= memory,
                "{:?}",
                report.usage
            );
            assert!(report.usage.fuel_consumed > 0);
            let stderr = String::from_utf8_lossy(&report.logs.stderr);
            assert!(stderr.contains("MemoryError"), "{stderr}");
            assert_eq!(report.usage.denied_calls, 0, "{:?}", report.usage);
        }
        other => panic!("grow: expected the memory limit, got {other:?}"),
    }
    beta_still_answers().await;

    // An exception: a guest error "Type: message", the traceback in the
    // logs, nothing of the runtime's internals.
    match call(host, "acme", "limits", "raise").await {
        Err(Error::Guest {
            error: GuestError::Failed(message),
            report,
        }) => {
            assert_eq!(message, "RuntimeError: limits: raised on purpose");
            assert_eq!(report.usage.outcome, Outcome::GuestError);
            assert!(report.usage.fuel_consumed > 0);
            let stderr = String::from_utf8_lossy(&report.logs.stderr);
            assert!(
                stderr.starts_with("Traceback (most recent call last):\n"),
                "{stderr}"
            );
            assert!(
                stderr.ends_with("RuntimeError: limits: raised on purpose\n"),
                "{stderr}"
            );
            // The source line is quoted from what the build read: no file
            // is opened at run time (which would count as denied).
            assert!(
                stderr.contains("app.py\", line 26, in handle\n    raise RuntimeError(\"limits: raised on purpose\")\n"),
                "{stderr}"
            );
            assert_eq!(report.usage.denied_calls, 0, "{:?}", report.usage);
            for internal in [
                "wasm",
                "wasmtime",
                "panicked",
                "unreachable",
                "componentize",
            ] {
                assert!(!stderr.contains(internal), "{internal:?} in {stderr}");
                assert!(!message.contains(internal), "{internal:?} in {message}");
            }
        }
        other => panic!("raise: expected a guest error, got {other:?}"),
    }

    // A file open without the directory grant: the guest's own
    // PermissionError, counted as denied.
    let done = call(host, "acme", "limits", "open /etc/passwd")
        .await
        .expect("the function handles its error");
    let text = String::from_utf8_lossy(&done.response.data).into_owned();
    assert!(text.starts_with("PermissionError: "), "{text}");
    assert!(!text.contains("root:"), "{text}");
    assert!(done.usage.denied_calls >= 1, "{:?}", done.usage);

    // A socket connect: refused inside the guest, no connection made.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    for target in [format!("127.0.0.1:{port}"), "127.0.0.1:9".to_string()] {
        let done = call(host, "acme", "limits", &format!("connect {target}"))
            .await
            .expect("the function handles its error");
        let text = String::from_utf8_lossy(&done.response.data).into_owned();
        assert!(text.starts_with("PermissionError: "), "{target}: {text}");
        assert!(done.usage.denied_calls >= 1, "{:?}", done.usage);
    }
    assert!(
        listener.accept().is_err(),
        "the guest reached a host socket"
    );

    // The host and the other tenant never noticed.
    beta_still_answers().await;
    let done = call(host, "beta", "other", "fine").await.expect("beta");
    assert_eq!(done.usage.denied_calls, 0);
    let records = th.records();
    assert!(records.iter().all(|r| r.fuel_consumed > 0), "{records:?}");
    let beta: Vec<&UsageRecord> = records.iter().filter(|r| r.tenant == "beta").collect();
    assert!(
        beta.iter()
            .all(|r| r.outcome == Outcome::Success && r.denied_calls == 0),
        "{beta:?}"
    );
    assert!(
        crate::support::denied_calls(host, "acme", "limits") >= 3.0,
        "the open and both connects"
    );
    assert_eq!(crate::support::denied_calls(host, "beta", "echo"), 0.0);
}
