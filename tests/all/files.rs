//! The tenant directory grant: `/data` in the guest is the tenant's own
//! directory; no path, `..` or symlink reaches another tenant's files.

use nimbus_core::{Error, FunctionConfig, Host, Limits};

use crate::support::{data_host, deploy_refused, deploy_with, directory, event, test_host};

async fn run(host: &Host, tenant: &str, command: &str) -> Result<String, String> {
    match host
        .invoke(tenant, "files", event(command.as_bytes()))
        .await
    {
        Ok(done) => Ok(String::from_utf8_lossy(&done.response.data).into_owned()),
        Err(Error::Guest { error, .. }) => Err(error.to_string()),
        Err(e) => panic!("{tenant} `{command}`: expected success or a guest error, got {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_sees_only_its_own_directory() {
    let t = data_host(|b| b);
    let (host, dir) = (&t.host, &t.dir);
    for tenant in ["a", "b"] {
        host.add_tenant(tenant, Limits::default()).expect("tenant");
        deploy_with(host, tenant, "files", "files", directory()).await;
    }

    assert_eq!(
        run(host, "a", "write notes.txt hello from a").await,
        Ok("ok".into())
    );
    assert_eq!(
        run(host, "a", "read notes.txt").await,
        Ok("hello from a".into())
    );
    let on_disk = dir.path().join("data/files/a/notes.txt");
    assert_eq!(
        std::fs::read_to_string(&on_disk).expect("host file"),
        "hello from a"
    );

    assert_eq!(run(host, "b", "list").await, Ok(String::new()));
    for attack in [
        "read notes.txt",
        "read ../a/notes.txt",
        "read ../../files/a/notes.txt",
        "read /../a/notes.txt",
        "read ./../a/notes.txt",
        "write ../a/notes.txt overwritten by b",
    ] {
        let r = run(host, "b", attack).await;
        assert!(r.is_err(), "b `{attack}` succeeded: {r:?}");
    }
    // A symlink planted in b's directory pointing at a's is not followed out.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(
            dir.path().join("data/files/a"),
            dir.path().join("data/files/b/link"),
        )
        .expect("symlink");
        let r = run(host, "b", "read link/notes.txt").await;
        assert!(
            r.is_err(),
            "followed a symlink out of the tenant directory: {r:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&on_disk).expect("host file"),
        "hello from a",
        "a's file is untouched"
    );
}

#[tokio::test]
async fn without_the_directory_grant_there_are_no_files() {
    let t = data_host(|b| b);
    t.host.add_tenant("t", Limits::default()).expect("tenant");
    // Standard toolchains always import wasi:filesystem: deploy accepts it,
    // and the guest simply has no directory to open.
    deploy_with(&t.host, "t", "files", "files", FunctionConfig::default()).await;
    // Each attempt reaches the host (the root is a preopen of its own),
    // fails inside the guest with access denied, and is counted.
    for command in ["read notes.txt", "write notes.txt x", "list"] {
        match t.host.invoke("t", "files", event(command.as_bytes())).await {
            Err(Error::Guest { error, report }) => {
                let m = error.to_string().to_lowercase();
                assert!(m.contains("/data"), "`{command}`: {m}");
                assert!(m.contains("permission denied"), "`{command}`: {m}");
                assert_eq!(report.usage.denied_calls, 1, "`{command}`");
            }
            other => panic!("`{command}`: expected a guest error, got {other:?}"),
        }
    }
    assert!(
        !t.dir.path().join("data/files/t").exists(),
        "no tenant directory is created without the grant"
    );

    // And a host without a data directory cannot grant one.
    let bare = test_host(|b| b);
    bare.host
        .add_tenant("t", Limits::default())
        .expect("tenant");
    let m = deploy_refused(&bare.host, "t", "files", "files", directory()).await;
    assert!(m.contains("no data_dir"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_denied_inside_the_guest_and_counted() {
    let t = data_host(|b| b);
    t.host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_with(&t.host, "t", "files", "files", FunctionConfig::default()).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");

    match t
        .host
        .invoke("t", "files", event(format!("connect {addr}").as_bytes()))
        .await
    {
        Err(Error::Guest { error, report }) => {
            let m = error.to_string().to_lowercase();
            assert!(m.contains("denied") || m.contains("permission"), "{m}");
            assert_eq!(report.usage.denied_calls, 1);
        }
        Ok(done) => panic!("the guest connected: {:?}", done.response),
        Err(e) => panic!("expected a guest error, got {e}"),
    }
    assert!(
        listener.accept().is_err(),
        "the listener was reached from the guest"
    );
    // The host and the function keep serving.
    assert!(run(&t.host, "t", "list").await.is_err());
}

#[tokio::test]
async fn exit_ends_the_invocation_with_its_status_recorded() {
    let t = data_host(|b| b);
    t.host.add_tenant("t", Limits::default()).expect("tenant");
    deploy_with(&t.host, "t", "files", "files", FunctionConfig::default()).await;

    let done = t
        .host
        .invoke("t", "files", event(b"exit 0"))
        .await
        .expect("exit 0 is a success");
    assert_eq!(done.response.data, b"");
    assert_eq!(done.usage.exit_code, Some(0));
    assert_eq!(done.usage.outcome, nimbus_core::Outcome::Success);

    // WASI 0.2's `exit` carries success or failure, so any failing status
    // arrives as 1.
    match t.host.invoke("t", "files", event(b"exit 3")).await {
        Err(Error::Guest { error, report }) => {
            assert!(
                error.to_string().contains("exited with status 1"),
                "{error}"
            );
            assert_eq!(report.usage.exit_code, Some(1));
            assert_eq!(report.usage.outcome, nimbus_core::Outcome::GuestError);
        }
        other => panic!("expected a guest error, got {other:?}"),
    }
    let records = t.records();
    let codes: Vec<_> = records.iter().map(|r| r.exit_code).collect();
    assert_eq!(codes, [Some(0), Some(1)], "the ledger records the status");
}
