use std::path::Path;

use super::*;

fn put(b: &FsBlobs, t: &str, c: &str, n: &str, data: &[u8]) -> ObjectMeta {
    let mut s = b.spool(t).unwrap();
    s.write(data).unwrap();
    b.commit(s, c, n, Some("text/plain".into()), WriteOptions::default())
        .unwrap()
}

fn get(b: &FsBlobs, t: &str, c: &str, n: &str) -> Vec<u8> {
    let mut r = b.open(t, c, n, 0, u64::MAX).unwrap();
    let mut out = Vec::new();
    loop {
        let chunk = r.read(7).unwrap();
        if chunk.is_empty() {
            return out;
        }
        out.extend(chunk);
    }
}

fn files(root: &Path, tenant: &str) -> usize {
    std::fs::read_dir(root.join("data").join(tenant))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn round_trip_ranges_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBlobs::open(dir.path()).unwrap();
    b.create_container("a", "pics").unwrap();
    let m1 = put(&b, "a", "pics", "x/y.txt", b"hello world");
    assert_eq!(m1.size, 11);
    assert_eq!(get(&b, "a", "pics", "x/y.txt"), b"hello world");
    let mut r = b.open("a", "pics", "x/y.txt", 6, 8).unwrap();
    assert_eq!(r.read(100).unwrap(), b"wor");
    assert!(b.open("a", "pics", "x/y.txt", 11, 20).is_err());
    let m2 = put(&b, "a", "pics", "x/y.txt", b"bye");
    assert_ne!(m1.etag, m2.etag);
    assert_eq!(get(&b, "a", "pics", "x/y.txt"), b"bye");
    assert_eq!(b.stored_bytes("a").unwrap(), 3);
    // The replaced version's file is gone.
    assert_eq!(files(dir.path(), "a"), 1);
}

#[test]
fn reader_keeps_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBlobs::open(dir.path()).unwrap();
    b.create_container("a", "c").unwrap();
    put(&b, "a", "c", "k", b"first");
    let mut r = b.open("a", "c", "k", 0, u64::MAX).unwrap();
    assert!(b.delete("a", "c", "k").unwrap());
    assert_eq!(r.read(100).unwrap(), b"first");
    assert!(!b.delete("a", "c", "k").unwrap());
    assert!(matches!(
        b.open("a", "c", "k", 0, 1),
        Err(BlobError::NoSuchObject { .. })
    ));
}

#[test]
fn tenants_and_containers_are_separate() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBlobs::open(dir.path()).unwrap();
    b.create_container("a", "bc").unwrap();
    b.create_container("ab", "c").unwrap();
    put(&b, "a", "bc", "k", b"tenant a");
    assert!(b.head("ab", "c", "k").unwrap().is_none());
    assert!(b.list("ab", "c", "", None, 10).unwrap().is_empty());
    assert!(matches!(
        b.open("b", "bc", "k", 0, 1),
        Err(BlobError::NoSuchContainer(_))
    ));
    assert!(b.spool("../a").is_err());
    assert!(check_container_name("../x").is_err());
    assert!(check_container_name("Up").is_err());
    assert_eq!(b.containers("a").unwrap().len(), 1);
    assert_eq!(b.containers("ab").unwrap()[0].name, "c");
}

#[test]
fn listing_pages_and_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBlobs::open(dir.path()).unwrap();
    b.create_container("a", "c").unwrap();
    for n in ["a/1", "a/2", "a/3", "b/1", "ab"] {
        put(&b, "a", "c", n, n.as_bytes());
    }
    let names = |v: Vec<ObjectMeta>| v.into_iter().map(|m| m.name).collect::<Vec<_>>();
    assert_eq!(
        names(b.list("a", "c", "a/", None, 10).unwrap()),
        ["a/1", "a/2", "a/3"]
    );
    assert_eq!(
        names(b.list("a", "c", "a/", Some("a/1"), 1).unwrap()),
        ["a/2"]
    );
    assert_eq!(
        names(b.list("a", "c", "", Some("a/3"), 10).unwrap()),
        ["ab", "b/1"]
    );
}

#[test]
fn quota_and_size_limit_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBlobs::open_with_limit(dir.path(), 10).unwrap();
    b.create_container("a", "c").unwrap();
    let mut s = b.spool("a").unwrap();
    assert!(matches!(
        s.write(&[0; 11]),
        Err(BlobError::TooLarge { limit: 10 })
    ));
    drop(s);
    let mut s = b.spool("a").unwrap();
    s.write(&[1; 8]).unwrap();
    let opts = WriteOptions {
        quota: Some(5),
        event_depth: Some(0),
    };
    assert!(matches!(
        b.commit(s, "c", "k", None, opts),
        Err(BlobError::QuotaExceeded { .. })
    ));
    assert!(b.head("a", "c", "k").unwrap().is_none());
    assert!(b.pending_events(10).unwrap().is_empty());
    assert_eq!(files(dir.path(), "a"), 0);
    assert_eq!(b.stored_bytes("a").unwrap(), 0);
}

#[test]
fn events_persist_with_the_write_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = FsBlobs::open(dir.path()).unwrap();
        b.create_container("a", "up").unwrap();
        let mut s = b.spool("a").unwrap();
        s.write(b"img").unwrap();
        b.commit(
            s,
            "up",
            "p.png",
            Some("image/png".into()),
            WriteOptions {
                quota: None,
                event_depth: Some(2),
            },
        )
        .unwrap();
        put(&b, "a", "up", "quiet", b"no event");
        // An uncommitted spool left behind by a "crash".
        let mut s = b.spool("a").unwrap();
        s.write(b"partial").unwrap();
        std::mem::forget(s);
        assert_eq!(files(dir.path(), "a"), 3);
    }
    std::fs::create_dir_all(dir.path().join("data/lost+found")).unwrap();
    let b = FsBlobs::open(dir.path()).unwrap();
    assert_eq!(files(dir.path(), "a"), 2, "the orphan was swept");
    let ev = b.pending_events(10).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].key, "p.png");
    assert_eq!(ev[0].size, 3);
    assert_eq!(ev[0].depth, 2);
    assert_eq!(ev[0].content_type.as_deref(), Some("image/png"));
    b.ack_event(ev[0].seq).unwrap();
    assert!(b.pending_events(10).unwrap().is_empty());
    assert_eq!(get(&b, "a", "up", "p.png"), b"img");
}

#[test]
fn copy_rename_and_delete_container() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBlobs::open(dir.path()).unwrap();
    b.create_container("a", "c1").unwrap();
    b.create_container("a", "c2").unwrap();
    put(&b, "a", "c1", "k", b"data");
    copy_object(&b, "a", ("c1", "k"), ("c2", "k2"), WriteOptions::default()).unwrap();
    assert_eq!(get(&b, "a", "c2", "k2"), b"data");
    b.rename("a", ("c2", "k2"), ("c1", "moved"), WriteOptions::default())
        .unwrap();
    assert!(b.head("a", "c2", "k2").unwrap().is_none());
    assert_eq!(get(&b, "a", "c1", "moved"), b"data");
    assert_eq!(b.stored_bytes("a").unwrap(), 8);
    assert!(matches!(
        b.create_container("a", "c1"),
        Err(BlobError::ContainerExists(_))
    ));
    b.delete_container("a", "c1").unwrap();
    assert_eq!(b.stored_bytes("a").unwrap(), 0);
    assert_eq!(files(dir.path(), "a"), 0);
    assert!(b.container("a", "c1").unwrap().is_none());
}

#[test]
fn delete_tenant_removes_all_its_data_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBlobs::open(dir.path()).unwrap();
    let evented = WriteOptions {
        quota: None,
        event_depth: Some(0),
    };
    // `a` with two containers; `ab` and `b` sit next to `a`'s key range.
    for (t, c) in [("a", "c1"), ("a", "c2"), ("ab", "c1"), ("b", "c1")] {
        b.create_container(t, c).unwrap();
        put(&b, t, c, "k", t.as_bytes());
        let mut s = b.spool(t).unwrap();
        s.write(b"event").unwrap();
        b.commit(s, c, "e", None, evented).unwrap();
    }
    put(&b, "a", "c2", "k2", b"more");
    let kept =
        |b: &FsBlobs| ["ab", "b"].map(|t| (b.stored_bytes(t).unwrap(), files(dir.path(), t)));
    let before = kept(&b);

    assert_eq!(b.delete_tenant("a").unwrap(), 5);
    assert!(b.containers("a").unwrap().is_empty());
    assert!(b.container("a", "c1").unwrap().is_none());
    assert!(b.head("a", "c2", "k2").unwrap().is_none());
    assert_eq!(b.stored_bytes("a").unwrap(), 0);
    assert_eq!(files(dir.path(), "a"), 0);
    let tenants = |b: &FsBlobs| {
        let ev = b.pending_events(100).unwrap();
        ev.into_iter().map(|e| e.tenant).collect::<Vec<_>>()
    };
    assert_eq!(tenants(&b), ["ab", "b"]);
    for t in ["ab", "b"] {
        assert_eq!(get(&b, t, "c1", "k"), t.as_bytes());
    }
    assert_eq!(kept(&b), before);

    // Nothing comes back at reopen; nothing is left to delete.
    drop(b);
    let b = FsBlobs::open(dir.path()).unwrap();
    assert!(b.containers("a").unwrap().is_empty());
    assert_eq!(tenants(&b), ["ab", "b"]);
    assert_eq!(kept(&b), before);
    assert_eq!(b.delete_tenant("a").unwrap(), 0);
    assert!(b.delete_tenant("../ab").is_err());
}

#[test]
fn a_write_in_flight_cannot_resurrect_a_deleted_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBlobs::open(dir.path()).unwrap();
    b.create_container("a", "c").unwrap();
    let mut s = b.spool("a").unwrap();
    s.write(b"late").unwrap();
    b.delete_tenant("a").unwrap();
    let opts = WriteOptions {
        quota: None,
        event_depth: Some(0),
    };
    assert!(matches!(
        b.commit(s, "c", "k", None, opts),
        Err(BlobError::NoSuchContainer(_))
    ));
    assert!(b.containers("a").unwrap().is_empty());
    assert!(b.pending_events(10).unwrap().is_empty());
    assert_eq!(b.stored_bytes("a").unwrap(), 0);
    assert_eq!(files(dir.path(), "a"), 0, "the spool's file went with it");
    // The tenant can start again, from nothing.
    b.create_container("a", "c").unwrap();
    put(&b, "a", "c", "k", b"new");
    assert_eq!(b.stored_bytes("a").unwrap(), 3);
}
