//! Reading ledgers back: a directory of rotated files (plain or gzipped), a
//! single file, or any set of them, each record once.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::names::{self, Family};
use crate::usage::UsageRecord;

/// Why a ledger could not be read. A malformed record is never skipped:
/// billing from a ledger with a hole in it would be wrong without saying so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("{}: line {line}: {message}", file.display())]
    Malformed {
        file: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{}: {message}", file.display())]
    Io { file: PathBuf, message: String },
}

fn io_error(file: &Path, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Io {
        file: file.to_path_buf(),
        message: e.to_string(),
    }
}

/// One storage sample: what a tenant held when sampled, standing for the
/// whole interval before it (`interval_s`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageSample {
    pub tenant: String,
    /// RFC 3339, UTC.
    pub sampled_at: String,
    pub interval_s: u64,
    pub kv_bytes: u64,
    pub blob_bytes: u64,
}

/// A file of a [`LedgerSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerFile {
    pub path: PathBuf,
    pub bytes_on_disk: u64,
}

/// A final line cut short: a write the process died in the middle of, so a
/// record never acknowledged to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornLine {
    pub file: PathBuf,
    pub line: u64,
}

/// A set of ledger files to read, in order: each directory's
/// `nimbus-usage-*.jsonl[.gz]` files by day and sequence (a file and its
/// compressed copy once), and each file named as given.
#[derive(Debug, Clone)]
pub struct LedgerSource {
    usage: Vec<LedgerFile>,
    storage: Vec<LedgerFile>,
}

impl LedgerSource {
    pub fn open(paths: &[PathBuf]) -> Result<Self, LedgerError> {
        let mut usage = Vec::new();
        let mut storage = Vec::new();
        for path in paths {
            let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
            if meta.is_dir() {
                usage.extend(dir_files(path, Family::Usage)?);
                storage.extend(dir_files(path, Family::Storage)?);
            } else {
                let file = LedgerFile {
                    path: path.clone(),
                    bytes_on_disk: meta.len(),
                };
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                match names::FileName::parse(name) {
                    Some((n, _)) if n.family == Family::Storage => storage.push(file),
                    _ => usage.push(file),
                }
            }
        }
        Ok(Self { usage, storage })
    }

    /// The usage files, in reading order.
    pub fn files(&self) -> &[LedgerFile] {
        &self.usage
    }

    /// On-disk bytes of the usage files: what [`LedgerRecords::bytes_read`]
    /// counts up to.
    pub fn total_bytes(&self) -> u64 {
        self.usage.iter().map(|f| f.bytes_on_disk).sum()
    }

    /// Every usage record once, de-duplicated by invocation id.
    pub fn records(&self) -> LedgerRecords {
        Lines::new(self.usage.clone(), |r: &UsageRecord| {
            r.invocation_id.as_u128()
        })
    }

    /// Every storage sample once (by tenant and time).
    pub fn storage_samples(&self) -> Lines<StorageSample> {
        Lines::new(self.storage.clone(), |s: &StorageSample| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&(&s.tenant, &s.sampled_at), &mut h);
            u128::from(std::hash::Hasher::finish(&h))
        })
    }
}

/// A directory's files of one family: the plain file where it and its
/// compressed copy both exist (the copy is complete only once renamed, and
/// then equal; the plain file is what a writer may still be appending to).
fn dir_files(dir: &Path, family: Family) -> Result<Vec<LedgerFile>, LedgerError> {
    let listed = names::list(dir, family).map_err(|e| io_error(dir, e))?;
    let mut files: Vec<LedgerFile> = Vec::new();
    let mut last: Option<names::FileName> = None;
    for (name, compressed) in listed {
        // Sorted: for one stem the plain form (false) comes first.
        if last.as_ref() == Some(&name) {
            continue;
        }
        let path = dir.join(if compressed {
            name.compressed()
        } else {
            name.plain()
        });
        // A file compressed since it was listed counts by its copy.
        let bytes_on_disk = std::fs::metadata(&path)
            .or_else(|_| std::fs::metadata(gz_sibling(&path)))
            .map_err(|e| io_error(&path, e))?
            .len();
        files.push(LedgerFile {
            path,
            bytes_on_disk,
        });
        last = Some(name);
    }
    Ok(files)
}

fn gz_sibling(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".gz");
    PathBuf::from(name)
}

/// Opens a ledger file, or its compressed copy if the writer compressed it
/// (the copy is in place before the original is removed) since it was
/// listed.
fn open_or_compressed(path: &Path) -> std::io::Result<(File, PathBuf)> {
    match File::open(path) {
        Ok(f) => Ok((f, path.to_path_buf())),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && path.extension().is_some_and(|x| x == "jsonl") =>
        {
            let gz = gz_sibling(path);
            File::open(&gz).map(|f| (f, gz)).map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

/// The usage records of a [`LedgerSource`].
pub type LedgerRecords = Lines<UsageRecord>;

/// An iterator over the JSON lines of a set of files, each value once.
/// After an error it ends.
pub struct Lines<T> {
    files: std::vec::IntoIter<LedgerFile>,
    current: Option<(PathBuf, Box<dyn BufRead + Send>, u64)>,
    key: fn(&T) -> u128,
    seen: HashSet<u128>,
    read: Arc<AtomicU64>,
    done_bytes: u64,
    torn: Vec<TornLine>,
    duplicates: u64,
    failed: bool,
    buf: Vec<u8>,
    /// File and line of the value returned last.
    last: Option<(PathBuf, u64)>,
}

impl<T> std::fmt::Debug for Lines<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines")
            .field("done_bytes", &self.done_bytes)
            .field("duplicates", &self.duplicates)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> Lines<T> {
    fn new(files: Vec<LedgerFile>, key: fn(&T) -> u128) -> Self {
        Self {
            files: files.into_iter(),
            current: None,
            key,
            seen: HashSet::new(),
            read: Arc::new(AtomicU64::new(0)),
            done_bytes: 0,
            torn: Vec::new(),
            duplicates: 0,
            failed: false,
            buf: Vec::new(),
            last: None,
        }
    }

    /// On-disk bytes consumed so far (compressed bytes for `.gz` files).
    pub fn bytes_read(&self) -> u64 {
        self.done_bytes + self.read.load(Ordering::Relaxed)
    }

    /// Final lines cut short, skipped (so far).
    pub fn torn_tails(&self) -> &[TornLine] {
        &self.torn
    }

    /// The file and line of the value returned last, for errors about
    /// what a well-formed line holds (e.g. a time that does not parse).
    pub fn position(&self) -> Option<(&Path, u64)> {
        self.last.as_ref().map(|(p, l)| (p.as_path(), *l))
    }

    /// Values seen again (in another file, or the same), skipped.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    fn open_next(&mut self) -> Result<bool, LedgerError> {
        self.done_bytes += self.read.swap(0, Ordering::Relaxed);
        let Some(file) = self.files.next() else {
            return Ok(false);
        };
        let (f, path) = open_or_compressed(&file.path).map_err(|e| io_error(&file.path, e))?;
        let counted = Counted {
            inner: f,
            read: self.read.clone(),
        };
        let gz = path.extension().is_some_and(|e| e == "gz");
        let reader: Box<dyn BufRead + Send> = if gz {
            Box::new(BufReader::with_capacity(
                256 << 10,
                flate2::read::MultiGzDecoder::new(BufReader::new(counted)),
            ))
        } else {
            Box::new(BufReader::with_capacity(256 << 10, counted))
        };
        self.current = Some((file.path, reader, 0));
        Ok(true)
    }

    fn next_value(&mut self) -> Result<Option<T>, LedgerError> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let Some((path, reader, line_no)) = self.current.as_mut() else {
                continue;
            };
            self.buf.clear();
            let n = reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| io_error(path, e))?;
            if n == 0 {
                self.current = None;
                continue;
            }
            *line_no += 1;
            let whole = self.buf.ends_with(b"\n");
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<T>(&self.buf) {
                Ok(value) => {
                    if self.seen.insert((self.key)(&value)) {
                        self.last = Some((path.clone(), *line_no));
                        return Ok(Some(value));
                    }
                    self.duplicates += 1;
                }
                Err(_) if !whole => {
                    self.torn.push(TornLine {
                        file: path.clone(),
                        line: *line_no,
                    });
                    self.current = None;
                }
                Err(e) => {
                    return Err(LedgerError::Malformed {
                        file: path.clone(),
                        line: *line_no,
                        message: e.to_string(),
                    });
                }
            }
        }
    }
}

impl<T: DeserializeOwned> Iterator for Lines<T> {
    type Item = Result<T, LedgerError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_value() {
            Ok(v) => v.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
