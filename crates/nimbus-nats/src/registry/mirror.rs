//! The node's own copy of the cluster registry, so a node can start while
//! NATS is unreachable and serve what it had: the bucket's records as this
//! node last saw them, with their revisions, in one JSON file under its
//! `data_dir`.
//!
//! It is rewritten after every load from NATS and whenever the watch has
//! caught up, so it trails the bucket by at most the changes the watch had
//! not delivered. A start from it is never wrong for long: the watch then
//! resumes from the copy's revision, and a bucket that keeps each key's
//! latest entry (deletes as markers) delivers every change made since.
//! Component bytes are not copied: a version whose artifact is in the
//! node's compile cache loads without them; any other waits for NATS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One key of the bucket: its revision and its JSON record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Entry {
    revision: u64,
    value: String,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Saved {
    /// The bucket's last revision that this copy includes.
    revision: u64,
    entries: BTreeMap<String, Entry>,
}

/// Records as `read_all` gives them: (key, revision, value if present).
pub(super) type Records = Vec<(String, u64, Option<Bytes>)>;

pub(super) struct Mirror {
    path: PathBuf,
    state: Mutex<Saved>,
}

impl Mirror {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            state: Mutex::default(),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The copy on disk, if there is one: (revision, records).
    pub(super) fn read(&self) -> Result<Option<(u64, Records)>, String> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        let saved: Saved = serde_json::from_slice(&text)
            .map_err(|e| format!("{}: not a registry copy: {e}", self.path.display()))?;
        let records = saved
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.revision, Some(Bytes::from(e.value.clone()))))
            .collect();
        let revision = saved.revision;
        *self.lock() = saved;
        Ok(Some((revision, records)))
    }

    /// Replaces the copy with what a load read from NATS, and saves it.
    pub(super) fn replace(&self, revision: u64, records: &Records) {
        let mut saved = Saved {
            revision,
            entries: BTreeMap::new(),
        };
        for (key, rev, value) in records {
            if let Some(entry) = entry(*rev, value.as_deref()) {
                saved.entries.insert(key.clone(), entry);
            }
        }
        *self.lock() = saved;
        self.save();
    }

    /// Takes one entry the watch delivered (`None`: the key was deleted);
    /// saves the copy when `caught_up`.
    pub(super) fn record(&self, key: &str, revision: u64, value: Option<&[u8]>, caught_up: bool) {
        {
            let mut saved = self.lock();
            if revision > saved.revision {
                saved.revision = revision;
            }
            let newer = saved.entries.get(key).is_none_or(|e| e.revision < revision);
            if newer {
                match entry(revision, value) {
                    Some(e) => saved.entries.insert(key.to_string(), e),
                    None => saved.entries.remove(key),
                };
            }
        }
        if caught_up {
            self.save();
        }
    }

    /// Writes the copy beside itself and renames it into place, so a crash
    /// leaves the old copy or the new one, never half of one. A copy that
    /// cannot be written costs only an offline start: warned, not fatal.
    fn save(&self) {
        let text = match serde_json::to_vec(&*self.lock()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("registry copy: {e}");
                return;
            }
        };
        let tmp = self.path.with_extension("json.tmp");
        let written = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, &text))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), "registry copy not saved: {e}");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Saved> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Records are JSON documents, so UTF-8; anything else is not one of ours
/// and is left out (`decode` would refuse it too).
fn entry(revision: u64, value: Option<&[u8]>) -> Option<Entry> {
    let value = std::str::from_utf8(value?).ok()?.to_string();
    Some(Entry { revision, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_round_trips_and_follows_the_watch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/registry-mirror.json");
        let mirror = Mirror::new(path.clone());
        assert_eq!(mirror.read().unwrap(), None);
        let records: Records = vec![
            ("t.a".into(), 3, Some(Bytes::from_static(b"{\"a\":1}"))),
            ("t.gone".into(), 4, None),
            ("t.bin".into(), 5, Some(Bytes::from_static(b"\xff"))),
        ];
        mirror.replace(7, &records);
        let again = Mirror::new(path.clone());
        let (revision, read) = again.read().unwrap().unwrap();
        assert_eq!(revision, 7);
        assert_eq!(
            read,
            vec![("t.a".to_string(), 3, Some(Bytes::from_static(b"{\"a\":1}")))]
        );

        // Newer entries replace, older ones do not, deletes remove; the
        // file changes only once the watch has caught up.
        again.record("t.a", 2, Some(b"{\"old\":1}"), false);
        again.record("t.b", 8, Some(b"{\"b\":1}"), false);
        assert_eq!(Mirror::new(path.clone()).read().unwrap().unwrap().0, 7);
        again.record("t.a", 9, None, true);
        let (revision, read) = Mirror::new(path.clone()).read().unwrap().unwrap();
        assert_eq!(revision, 9);
        assert_eq!(
            read,
            vec![("t.b".to_string(), 8, Some(Bytes::from_static(b"{\"b\":1}")))]
        );

        std::fs::write(&path, b"{not json").unwrap();
        let err = Mirror::new(path).read().unwrap_err();
        assert!(err.contains("not a registry copy"), "{err}");
    }
}
