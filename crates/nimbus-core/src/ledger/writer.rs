//! The rotating ledger: JSON lines appended to the day's file, a new file at
//! each UTC day and whenever one reaches its size limit, closed files
//! optionally compressed in the background.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

use super::names::{self, Family, FileName};
use crate::usage::{UsageRecord, UsageSink};

/// How a [`RotatingLedger`] rotates.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// A file that would pass this size with the next record is closed and
    /// the record starts the next file (a single larger record still gets a
    /// file of its own).
    pub max_file_bytes: u64,
    /// Gzip each file once closed (`.jsonl.gz`), in the background.
    pub compress: bool,
    /// `fdatasync` after every record (power-loss durability, at a disk
    /// flush per invocation).
    pub sync_each: bool,
    /// Files of days more than this many days before today (UTC) are
    /// deleted, at start and at each day's rotation; `None` keeps every
    /// file (the default: the ledger is what bills are made from).
    pub retain_days: Option<u32>,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_file_bytes: 128 << 20,
            compress: false,
            sync_each: false,
            retain_days: None,
        }
    }
}

/// The default usage sink of `nimbus serve`: `nimbus-usage-YYYY-MM-DD.jsonl`
/// files in one directory, rotated by UTC day and by size.
///
/// The crash guarantee is [`crate::JsonLinesLedger`]'s: each record is one
/// `write` on an `O_APPEND` file, made before the invocation's result is
/// returned, and rotation happens under the same lock, so no record is
/// written twice or lost across files. A file whose last write was torn (the
/// process died mid-record) is never appended to again: the next start opens
/// the next file, so the torn line stays the file's final one, which readers
/// report and skip.
#[derive(Debug)]
pub struct RotatingLedger {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    family: Family,
    rotation: Rotation,
    active: Mutex<Active>,
}

#[derive(Debug)]
struct Active {
    file: File,
    name: FileName,
    day: u64,
    bytes: u64,
}

impl RotatingLedger {
    /// Opens the ledger directory (created if needed): appends to today's
    /// latest file if it ended cleanly, else starts the next one. Closed
    /// files left uncompressed by an earlier run are compressed now when
    /// compression is on.
    pub fn open(dir: impl AsRef<Path>, rotation: Rotation) -> std::io::Result<Self> {
        Self::open_family(dir.as_ref(), Family::Usage, rotation)
    }

    pub(crate) fn open_family(
        dir: &Path,
        family: Family,
        rotation: Rotation,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let now = SystemTime::now();
        let (day, text) = names::utc_day(now);
        let existing = names::list(dir, family)?;
        let latest_today = existing
            .iter()
            .filter(|(n, _)| n.day == text)
            .map(|(n, _)| n.seq)
            .max();
        let name = match latest_today {
            None => FileName::new(family, &text, 0),
            Some(seq) => {
                let name = FileName::new(family, &text, seq);
                // A compressed file is closed for good, and so is one whose
                // last write was torn.
                let plain = existing.iter().any(|(n, c)| *n == name && !c);
                let gz = existing.iter().any(|(n, c)| *n == name && *c);
                if plain && !gz && ends_cleanly(&dir.join(name.plain()))? {
                    name
                } else {
                    FileName::new(family, &text, seq + 1)
                }
            }
        };
        let (file, bytes) = open_append(&dir.join(name.plain()))?;
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            family,
            rotation,
            active: Mutex::new(Active {
                file,
                name: name.clone(),
                day,
                bytes,
            }),
        });
        inner.expire(now);
        if inner.rotation.compress {
            let closed: Vec<FileName> = existing
                .into_iter()
                .filter(|(n, compressed)| !compressed && *n != name)
                .map(|(n, _)| n)
                .collect();
            if !closed.is_empty() {
                let dir = inner.dir.clone();
                std::thread::spawn(move || {
                    for n in closed {
                        compress_closed(&dir, &n);
                    }
                });
            }
        }
        Ok(Self { inner })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The file records are appended to now.
    pub fn active_path(&self) -> PathBuf {
        let active = self
            .inner
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.dir.join(active.name.plain())
    }

    /// Appends one JSON line (the serialized `value`).
    pub(crate) fn append<T: Serialize>(&self, value: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(value)?;
        line.push(b'\n');
        let today = names::day_number(SystemTime::now());
        let mut active = self
            .inner
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let full = active.bytes > 0
            && active.bytes + line.len() as u64 > self.inner.rotation.max_file_bytes;
        if today != active.day || full {
            self.inner.rotate(&mut active, today)?;
        }
        active.file.write_all(&line)?;
        active.bytes += line.len() as u64;
        if self.inner.rotation.sync_each {
            active.file.sync_data()?;
        }
        Ok(())
    }
}

impl Inner {
    fn rotate(&self, active: &mut Active, today: u64) -> std::io::Result<()> {
        let next = if today == active.day {
            FileName::new(self.family, &active.name.day, active.name.seq + 1)
        } else {
            let (_, text) = names::utc_day(SystemTime::now());
            FileName::new(self.family, &text, 0)
        };
        let new_day = next.seq == 0;
        let (file, bytes) = open_append(&self.dir.join(next.plain()))?;
        // The closed file's records were each written before their results
        // returned; syncing it here only bounds what power loss can take.
        let _ = active.file.sync_data();
        let closed = std::mem::replace(&mut active.name, next);
        active.file = file;
        active.bytes = bytes;
        active.day = today;
        if self.rotation.compress {
            let dir = self.dir.clone();
            std::thread::spawn(move || compress_closed(&dir, &closed));
        }
        if new_day {
            self.expire(SystemTime::now());
        }
        Ok(())
    }

    /// Deletes the files of days past the retention.
    fn expire(&self, now: SystemTime) {
        let Some(days) = self.rotation.retain_days else {
            return;
        };
        let cutoff = now
            .checked_sub(std::time::Duration::from_secs(u64::from(days) * 86_400))
            .unwrap_or(std::time::UNIX_EPOCH);
        let (_, oldest_kept) = names::utc_day(cutoff);
        let Ok(files) = names::list(&self.dir, self.family) else {
            return;
        };
        for (name, compressed) in files {
            if name.day < oldest_kept {
                let path = self.dir.join(if compressed {
                    name.compressed()
                } else {
                    name.plain()
                });
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(file = %path.display(), "ledger: past its retention, deleted")
                    }
                    Err(e) => {
                        tracing::warn!(file = %path.display(), "ledger: past its retention, not deleted: {e}")
                    }
                }
            }
        }
    }
}

impl UsageSink for RotatingLedger {
    fn record(&self, record: &UsageRecord) -> std::io::Result<()> {
        self.append(record)
    }
}

fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let bytes = file.metadata()?.len();
    Ok((file, bytes))
}

/// Whether a file is empty or ends with a newline (its last record whole).
fn ends_cleanly(path: &Path) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// Gzips a closed file: the copy is written and synced under a temporary
/// name, renamed into place, and only then is the original removed. A crash
/// between leaves both, which readers count once (records are de-duplicated
/// by invocation id, and a tail prefers the plain file).
fn compress_closed(dir: &Path, name: &FileName) {
    if let Err(e) = try_compress(dir, name) {
        tracing::warn!(file = %dir.join(name.plain()).display(), "ledger: compressing a closed file failed (it stays uncompressed): {e}");
    }
}

fn try_compress(dir: &Path, name: &FileName) -> std::io::Result<()> {
    let plain = dir.join(name.plain());
    let target = dir.join(name.compressed());
    let tmp = dir.join(format!("{}.tmp", name.compressed()));
    let mut input = match File::open(&plain) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let out = File::create(&tmp)?;
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut input, &mut encoder)?;
    let out = encoder.finish()?;
    out.sync_all()?;
    std::fs::rename(&tmp, &target)?;
    File::open(dir)?.sync_all()?;
    std::fs::remove_file(&plain)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Outcome;
    use uuid::Uuid;

    fn record(n: u64) -> UsageRecord {
        UsageRecord {
            fuel_consumed: n,
            started_at: "2026-12-01T00:00:00.000000Z".into(),
            ..UsageRecord::new(Uuid::now_v7(), "t", "f", Outcome::Success)
        }
    }

    #[test]
    fn a_full_file_is_closed_and_the_next_one_started() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_file_bytes: 1000,
            ..Rotation::default()
        };
        let ledger = RotatingLedger::open(dir.path(), rotation).unwrap();
        for n in 0..20 {
            ledger.record(&record(n)).unwrap();
        }
        let files = names::list(dir.path(), Family::Usage).unwrap();
        assert!(files.len() > 3, "{files:?}");
        for (name, _) in &files {
            let len = std::fs::metadata(dir.path().join(name.plain()))
                .unwrap()
                .len();
            assert!(len <= 1000, "{} is {len} bytes", name.plain());
        }
        assert_eq!(files[0].0.seq, 0);
        assert_eq!(files[1].0.seq, 1);
    }

    #[test]
    fn a_torn_file_is_not_appended_to_again() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = RotatingLedger::open(dir.path(), Rotation::default()).unwrap();
        ledger.record(&record(1)).unwrap();
        let first = ledger.active_path();
        drop(ledger);
        // Reopened after a clean stop: the same file.
        let ledger = RotatingLedger::open(dir.path(), Rotation::default()).unwrap();
        assert_eq!(ledger.active_path(), first);
        drop(ledger);
        OpenOptions::new()
            .append(true)
            .open(&first)
            .unwrap()
            .write_all(b"{\"invocation_id\":\"01")
            .unwrap();
        let ledger = RotatingLedger::open(dir.path(), Rotation::default()).unwrap();
        assert_ne!(ledger.active_path(), first);
        ledger.record(&record(2)).unwrap();
        assert!(std::fs::read_to_string(&first).unwrap().ends_with("\"01"));
    }

    #[test]
    fn files_past_the_retention_are_deleted_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (_, today) = names::utc_day(SystemTime::now());
        for name in [
            "nimbus-usage-2020-01-01.jsonl",
            "nimbus-usage-2020-01-02.1.jsonl.gz",
            "nimbus-storage-2020-01-01.jsonl",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let kept = dir.path().join(format!("nimbus-usage-{today}.jsonl"));
        std::fs::write(&kept, "").unwrap();
        let keep_all = RotatingLedger::open(dir.path(), Rotation::default()).unwrap();
        drop(keep_all);
        assert_eq!(names::list(dir.path(), Family::Usage).unwrap().len(), 3);
        let rotation = Rotation {
            retain_days: Some(30),
            ..Rotation::default()
        };
        let _ledger = RotatingLedger::open(dir.path(), rotation).unwrap();
        let left: Vec<_> = names::list(dir.path(), Family::Usage).unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].0.day, today);
        // Another family is another sink's to expire.
        assert!(dir.path().join("nimbus-storage-2020-01-01.jsonl").exists());
    }

    #[test]
    fn closed_files_are_compressed_and_the_original_removed() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_file_bytes: 600,
            compress: true,
            ..Rotation::default()
        };
        let ledger = RotatingLedger::open(dir.path(), rotation).unwrap();
        for n in 0..6 {
            ledger.record(&record(n)).unwrap();
        }
        let active = ledger.active_path();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let files = names::list(dir.path(), Family::Usage).unwrap();
            let plain: Vec<_> = files.iter().filter(|(_, c)| !c).collect();
            if plain.len() == 1 && files.len() > 1 {
                assert_eq!(dir.path().join(plain[0].0.plain()), active);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{files:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
