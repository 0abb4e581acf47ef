//! Following a ledger as it is written, across rotations: what the cluster's
//! usage stream publisher and the usage rollups read, each from a cursor of
//! its own.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::names::{self, Family, FileName};

/// Where a tail has read up to: a file (its stem, the same once the file is
/// compressed; empty for a single-file ledger) and a byte offset in its
/// uncompressed contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailCursor {
    pub file: String,
    pub offset: u64,
}

impl TailCursor {
    /// `"<file> <offset>"`, or a bare offset (a single file's cursor, as
    /// written before ledgers rotated).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        match text.rsplit_once(' ') {
            Some((file, offset)) => Some(Self {
                file: file.to_string(),
                offset: offset.parse().ok()?,
            }),
            None => Some(Self {
                file: String::new(),
                offset: text.parse().ok()?,
            }),
        }
    }

    pub fn to_text(&self) -> String {
        if self.file.is_empty() {
            self.offset.to_string()
        } else {
            format!("{} {}", self.file, self.offset)
        }
    }
}

/// Complete lines read from one file.
#[derive(Debug)]
pub struct Chunk {
    /// Whole lines, each ending in `\n`.
    pub lines: Vec<u8>,
    /// Where `lines` starts (the cursor that was asked for, or the start of
    /// the file after it).
    pub start: TailCursor,
    /// Where the next read starts.
    pub next: TailCursor,
    /// What is left to read after `next`, as far as the files' sizes tell.
    pub lag_bytes: u64,
}

/// A ledger to follow: a directory of rotated files, or one file.
#[derive(Debug, Clone)]
pub struct LedgerTail {
    path: PathBuf,
    dir: bool,
    family: Family,
}

impl LedgerTail {
    /// `path` is a ledger directory when it is one (or does not exist yet
    /// and has no `.jsonl` extension), else a single file.
    pub fn new(path: &Path) -> Self {
        let dir = path.is_dir() || (!path.exists() && !is_jsonl(path));
        Self {
            path: path.to_path_buf(),
            dir,
            family: Family::Usage,
        }
    }

    /// The storage samples of a ledger directory
    /// (`nimbus-storage-*.jsonl`).
    pub fn storage(dir: &Path) -> Self {
        Self {
            path: dir.to_path_buf(),
            dir: true,
            family: Family::Storage,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Up to about `max` bytes of complete lines after `from`; `None` when
    /// there is nothing complete to read yet. A closed file's torn final
    /// line (never acknowledged) is passed over.
    pub fn read(&self, from: &TailCursor, max: usize) -> std::io::Result<Option<Chunk>> {
        if !self.dir {
            let got = match read_file(&self.path, false, from.offset, max) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                other => other?,
            };
            return Ok(got.map(|(lines, len)| {
                let next = TailCursor {
                    file: String::new(),
                    offset: from.offset + lines.len() as u64,
                };
                Chunk {
                    lag_bytes: len.saturating_sub(next.offset),
                    lines,
                    start: from.clone(),
                    next,
                }
            }));
        }
        let files = match names::list(&self.path, self.family) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut stems: Vec<(FileName, bool)> = Vec::new();
        for (name, compressed) in files {
            match stems.last_mut() {
                // The plain file wins over its compressed copy.
                Some((last, _)) if *last == name => {}
                _ => stems.push((name, compressed)),
            }
        }
        let wanted = FileName::parse_stem(&from.file);
        let mut cursor = from.clone();
        // The cursor's file, or (gone, or never set) the first one after it.
        let mut i = match &wanted {
            Some(w) => match stems.iter().position(|(n, _)| n >= w) {
                Some(i) => {
                    if stems[i].0 != *w {
                        cursor = TailCursor {
                            file: stems[i].0.stem(),
                            offset: 0,
                        };
                    }
                    i
                }
                None => return Ok(None),
            },
            None => {
                let Some((first, _)) = stems.first() else {
                    return Ok(None);
                };
                cursor = TailCursor {
                    file: first.stem(),
                    offset: 0,
                };
                0
            }
        };
        loop {
            let (name, compressed) = &stems[i];
            let path = self.path.join(if *compressed {
                name.compressed()
            } else {
                name.plain()
            });
            // Listed before reading: if a later file exists, this one was
            // closed before the read below, so its end is final.
            let later = i + 1 < stems.len();
            let got = match read_file(&path, *compressed, cursor.offset, max) {
                // Compressed since it was listed: the copy is in place
                // before the original goes.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !compressed => {
                    match read_file(&self.path.join(name.compressed()), true, cursor.offset, max) {
                        // Removed by retention: nothing left to read there.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        other => other?,
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                other => other?,
            };
            if let Some((lines, len)) = got {
                let next = TailCursor {
                    file: cursor.file.clone(),
                    offset: cursor.offset + lines.len() as u64,
                };
                let rest: u64 = stems[i + 1..]
                    .iter()
                    .filter_map(|(n, c)| {
                        let p = self.path.join(if *c { n.compressed() } else { n.plain() });
                        std::fs::metadata(p).ok().map(|m| m.len())
                    })
                    .sum();
                return Ok(Some(Chunk {
                    lag_bytes: len.saturating_sub(next.offset) + rest,
                    lines,
                    start: cursor,
                    next,
                }));
            }
            if !later {
                return Ok(None);
            }
            i += 1;
            cursor = TailCursor {
                file: stems[i].0.stem(),
                offset: 0,
            };
        }
    }
}

fn is_jsonl(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".jsonl") || name.ends_with(".jsonl.gz")
}

/// Complete lines from `offset` (at most about `max` bytes, at least one
/// whole line), with the file's uncompressed length as far as known.
fn read_file(
    path: &Path,
    compressed: bool,
    offset: u64,
    max: usize,
) -> std::io::Result<Option<(Vec<u8>, u64)>> {
    let file = File::open(path)?;
    let mut reader: Box<dyn Read> = if compressed {
        let mut d = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
        std::io::copy(&mut (&mut d).take(offset), &mut std::io::sink())?;
        Box::new(d)
    } else {
        let len = file.metadata()?.len();
        if len <= offset {
            return Ok(None);
        }
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        Box::new(file)
    };
    let mut buf = Vec::new();
    let mut block = vec![0u8; max.clamp(4096, 4 << 20)];
    loop {
        let n = reader.read(&mut block)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&block[..n]);
        if buf.len() >= max && buf.contains(&b'\n') {
            break;
        }
    }
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return Ok(None);
    };
    let total = offset + buf.len() as u64;
    buf.truncate(end + 1);
    Ok(Some((buf, total)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{RotatingLedger, Rotation};
    use crate::usage::{Outcome, UsageRecord, UsageSink};
    use uuid::Uuid;

    fn ids(lines: &[u8]) -> Vec<Uuid> {
        lines
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_slice::<UsageRecord>(l)
                    .unwrap()
                    .invocation_id
            })
            .collect()
    }

    #[test]
    fn a_tail_follows_rotation_and_compression_without_loss_or_repeat() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let ledger = RotatingLedger::open(
                dir.path(),
                Rotation {
                    max_file_bytes: 2000,
                    compress,
                    ..Rotation::default()
                },
            )
            .unwrap();
            let tail = LedgerTail::new(dir.path());
            let mut cursor = TailCursor::default();
            let mut written = Vec::new();
            let mut seen = Vec::new();
            for round in 0..30 {
                for _ in 0..round % 4 {
                    let r = UsageRecord::new(Uuid::now_v7(), "t", "f", Outcome::Success);
                    ledger.record(&r).unwrap();
                    written.push(r.invocation_id);
                }
                while let Some(chunk) = tail.read(&cursor, 700).unwrap() {
                    seen.extend(ids(&chunk.lines));
                    cursor = chunk.next;
                }
            }
            assert_eq!(seen, written, "compress: {compress}");
            assert!(TailCursor::parse(&cursor.to_text()) == Some(cursor.clone()));
        }
    }
}
