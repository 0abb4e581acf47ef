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
async fn a_component_using_files_needs_the_directory_grant() {
    let t = data_host(|b| b);
    t.host.add_tenant("t", Limits::default()).expect("tenant");
    let ungranted = FunctionConfig::default();
    let m = deploy_refused(&t.host, "t", "files", "files", ungranted).await;
    assert!(
        m.contains("wasi:filesystem/") && m.contains("not granted a directory"),
        "{m}"
    );

    // And a host without a data directory cannot grant one.
    let bare = test_host(|b| b);
    bare.host
        .add_tenant("t", Limits::default())
        .expect("tenant");
    let m = deploy_refused(&bare.host, "t", "files", "files", directory()).await;
    assert!(m.contains("no data_dir"), "{m}");
}
