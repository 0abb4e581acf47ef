use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

use super::*;
use crate::usage::{Outcome, UsageRecord, UsageSink};

fn record(fuel: u64) -> UsageRecord {
    UsageRecord {
        fuel_consumed: fuel,
        started_at: "2026-12-01T00:00:00.000000Z".into(),
        ..UsageRecord::new(Uuid::now_v7(), "t", "f", Outcome::Success)
    }
}

fn line(r: &UsageRecord) -> String {
    format!("{}\n", serde_json::to_string(r).unwrap())
}

#[test]
fn rotation_under_concurrent_writers_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rotation = Rotation {
        max_file_bytes: 4096,
        compress: true,
        ..Rotation::default()
    };
    let ledger = Arc::new(RotatingLedger::open(dir.path(), rotation).unwrap());
    let written: Vec<Uuid> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let ledger = ledger.clone();
                s.spawn(move || {
                    (0..250)
                        .map(|n| {
                            let r = record(n);
                            ledger.record(&r).unwrap();
                            r.invocation_id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let source = LedgerSource::open(&[dir.path().to_path_buf()]).unwrap();
    assert!(source.files().len() > 50, "{} files", source.files().len());
    let mut records = source.records();
    let read: Vec<Uuid> = records.by_ref().map(|r| r.unwrap().invocation_id).collect();
    assert_eq!(records.duplicates(), 0);
    assert_eq!(read.len(), 2000);
    let expected: HashSet<Uuid> = written.into_iter().collect();
    assert_eq!(read.into_iter().collect::<HashSet<_>>(), expected);
}

#[test]
fn records_in_several_files_are_read_once_and_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (record(1), record(2), record(3));
    let first = dir.path().join("nimbus-usage-2026-11-30.jsonl");
    let second = dir.path().join("nimbus-usage-2026-11-30.1.jsonl");
    std::fs::write(&first, line(&a) + &line(&b)).unwrap();
    // b again (an overlapping copy), then c, then a torn final line.
    std::fs::write(&second, line(&b) + &line(&c) + "{\"invocation_id\":\"01").unwrap();
    // The first file's compressed copy, left by an interrupted compression:
    // counted once, as the plain file.
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.path().join("nimbus-usage-2026-11-30.jsonl.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all((line(&a) + &line(&b)).as_bytes()).unwrap();
    gz.finish().unwrap();
    let source = LedgerSource::open(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(source.files().len(), 2);
    let mut records = source.records();
    let fuel: Vec<u64> = records.by_ref().map(|r| r.unwrap().fuel_consumed).collect();
    assert_eq!(fuel, [1, 2, 3]);
    assert_eq!(records.duplicates(), 1);
    assert_eq!(
        records.torn_tails(),
        [TornLine {
            file: second.clone(),
            line: 3
        }]
    );
    assert_eq!(records.bytes_read(), source.total_bytes());

    // The same files named one by one, plus a gzipped one on its own.
    let only_gz: PathBuf = dir.path().join("nimbus-usage-2026-11-30.jsonl.gz");
    let source = LedgerSource::open(&[only_gz, second.clone()]).unwrap();
    let n = source
        .records()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .len();
    assert_eq!(n, 3);

    std::fs::write(&second, line(&c) + "not json\n" + &line(&record(4))).unwrap();
    let source = LedgerSource::open(&[dir.path().to_path_buf()]).unwrap();
    let err = source
        .records()
        .find_map(Result::err)
        .expect("a malformed line is an error");
    match &err {
        LedgerError::Malformed { file, line, .. } => {
            assert_eq!((file, *line), (&second, 2));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("{}: line 2: ", second.display())),
        "{err}"
    );
}

#[test]
fn storage_samples_are_their_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageLedger::open(dir.path(), None).unwrap();
    let usage = RotatingLedger::open(dir.path(), Rotation::default()).unwrap();
    usage.record(&record(7)).unwrap();
    let sample = StorageSample {
        tenant: "t".into(),
        sampled_at: "2026-12-01T01:00:00Z".into(),
        interval_s: 3600,
        kv_bytes: 10,
        blob_bytes: 20,
    };
    storage.record(&sample).unwrap();
    let source = LedgerSource::open(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(source.records().count(), 1);
    let samples: Vec<_> = source.storage_samples().map(Result::unwrap).collect();
    assert_eq!(samples, [sample]);
}
