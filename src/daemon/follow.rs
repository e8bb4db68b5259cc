//! Following an events file like `tail -F`, from where the last run
//! stopped: appends are read as they come, a truncated file is read again
//! from its start, a rotated file is finished before its successor is
//! opened, and every chunk says which file and offset it came from, so that
//! the read position can be committed with the tags (`crate::position`).
//!
//! On start with a stored position: the same file (device, inode and first
//! bytes) resumes at the stored offset; a file rotated away while the
//! daemon was down is found by its identity beside the path and finished
//! first, as log shippers do; otherwise the file is read from its start.

use crate::position::{FileId, InputPosition, FINGERPRINT_BYTES};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

/// Bytes read at a time.
pub const CHUNK: usize = 256 * 1024;
/// How often a followed file is checked for growth, truncation or rotation.
const POLL: Duration = Duration::from_millis(25);
/// Bytes remembered from the end of what was read.
const TAIL: usize = 64;

/// Bytes read from the source, and where in which file they start (none
/// for a stream: stdin, a FIFO).
#[derive(Debug)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub at: Option<ChunkAt>,
}

/// Where a chunk of a followed file starts.
#[derive(Debug, Clone)]
pub struct ChunkAt {
    pub source: Arc<str>,
    pub file: Arc<FileId>,
    pub start: u64,
}

impl ChunkAt {
    /// The position `consumed` bytes into the chunk.
    pub fn position(&self, consumed: usize) -> InputPosition {
        InputPosition {
            source: self.source.clone(),
            file: self.file.clone(),
            offset: self.start + consumed as u64,
        }
    }
}

/// The key a followed path's position is stored under.
pub fn source_key(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

#[cfg(unix)]
fn dev_ino(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn dev_ino(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// The first bytes of a file, without moving its read position.
fn head(file: &File) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; FINGERPRINT_BYTES];
    let mut n = 0;
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        while n < buf.len() {
            match file.read_at(&mut buf[n..], n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    buf.truncate(n);
    Ok(buf)
}

fn identify(file: &File) -> io::Result<FileId> {
    let (dev, ino) = dev_ino(&file.metadata()?);
    Ok(FileId {
        dev,
        ino,
        fingerprint: crate::tag::hex_lower(&head(file)?),
    })
}

fn open_when_present(path: &Path, shutdown: &AtomicBool) -> io::Result<Option<File>> {
    loop {
        match File::open(path) {
            Ok(f) => return Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if shutdown.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The file rotated away from `path` that `stored` names, if it is still
/// beside it (same directory, same device and inode, same first bytes).
fn find_predecessor(path: &Path, stored: &FileId) -> Option<File> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || dev_ino(&meta) != (stored.dev, stored.ino) {
            continue;
        }
        let file = File::open(entry.path()).ok()?;
        if stored.same_start(&head(&file).ok()?) {
            tracing::info!(
                file = %crate::text::line(&entry.path().display().to_string()),
                "finishing the events file rotated while stopped"
            );
            return Some(file);
        }
    }
    None
}

/// Reads an open file from `pos` until `stop` says so, sending chunks.
/// Returns `Ok(None)` when the receiver is gone.
struct Reader<'a> {
    tx: &'a SyncSender<Chunk>,
    source: Arc<str>,
    buf: Vec<u8>,
}

impl Reader<'_> {
    /// Sends what the file holds from its current position to its end.
    /// `id` is refreshed while the chunk lies within the fingerprinted head
    /// (a file that was empty when opened gets its fingerprint once written).
    fn drain(&mut self, file: &mut File, id: &mut Arc<FileId>, pos: &mut u64) -> io::Result<bool> {
        loop {
            let n = match file.read(&mut self.buf) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if (*pos as usize) < FINGERPRINT_BYTES && id.fingerprint.len() < 2 * FINGERPRINT_BYTES {
                *id = Arc::new(identify(file)?);
            }
            let chunk = Chunk {
                data: self.buf[..n].to_vec(),
                at: Some(ChunkAt {
                    source: self.source.clone(),
                    file: id.clone(),
                    start: *pos,
                }),
            };
            *pos += n as u64;
            if self.tx.send(chunk).is_err() {
                return Ok(false);
            }
            if n < self.buf.len() {
                return Ok(true);
            }
        }
    }
}

/// `tail -F` from `resume` (see the module notes).
pub fn follow(
    path: &Path,
    tx: &SyncSender<Chunk>,
    shutdown: &AtomicBool,
    resume: Option<InputPosition>,
) -> io::Result<()> {
    let mut reader = Reader {
        tx,
        source: source_key(path).into(),
        buf: vec![0u8; CHUNK],
    };
    let Some(mut file) = open_when_present(path, shutdown)? else {
        return Ok(());
    };
    let mut id = Arc::new(identify(&file)?);
    let mut pos: u64 = 0;
    if let Some(stored) = resume {
        let same = (stored.file.dev, stored.file.ino) == (id.dev, id.ino)
            && stored.file.same_start(&head(&file)?)
            && file.metadata()?.len() >= stored.offset;
        if same {
            file.seek(SeekFrom::Start(stored.offset))?;
            pos = stored.offset;
            tracing::info!(
                offset = pos,
                "resuming the events file where the last run stopped"
            );
        } else if let Some(mut old) = find_predecessor(path, &stored.file) {
            old.seek(SeekFrom::Start(stored.offset))?;
            let mut old_id = Arc::new(identify(&old)?);
            let mut old_pos = stored.offset;
            if !reader.drain(&mut old, &mut old_id, &mut old_pos)? {
                return Ok(());
            }
        } else {
            tracing::warn!(
                "the events file read before the restart is gone (rotated away and removed, or \
                 rewritten); reading the current file from its start"
            );
        }
    }
    // The last bytes read and the file's modification time then: a file
    // rewritten in place to the same length is noticed by comparing them.
    let mut tail: Vec<u8> = Vec::new();
    let mut seen_modified = None;
    loop {
        if shutdown.load(Ordering::Relaxed) {
            return Ok(());
        }
        let before = pos;
        if !reader.drain(&mut file, &mut id, &mut pos)? {
            return Ok(());
        }
        if pos > before {
            remember_tail(&mut file, pos, &mut tail)?;
            seen_modified = file.metadata().ok().and_then(|m| m.modified().ok());
            continue;
        }
        match std::fs::metadata(path) {
            Ok(m) if dev_ino(&m) != (id.dev, id.ino) => {
                // Rotated: finish the old file, then follow the new one.
                if !reader.drain(&mut file, &mut id, &mut pos)? {
                    return Ok(());
                }
                let Some(f) = open_when_present(path, shutdown)? else {
                    return Ok(());
                };
                tracing::info!("input file rotated; following the new file");
                file = f;
                id = Arc::new(identify(&file)?);
                pos = 0;
                tail.clear();
                continue;
            }
            Ok(m)
                if m.len() < pos
                    || (m.len() == pos && rewritten(&mut file, &m, pos, &tail, seen_modified)?) =>
            {
                tracing::info!("input file truncated; reading from the start");
                file.seek(SeekFrom::Start(0))?;
                pos = 0;
                tail.clear();
                continue;
            }
            _ => {}
        }
        std::thread::sleep(POLL);
    }
}

/// Keeps the last [`TAIL`] bytes before `pos`.
fn remember_tail(file: &mut File, pos: u64, tail: &mut Vec<u8>) -> io::Result<()> {
    let keep = pos.min(TAIL as u64);
    tail.resize(keep as usize, 0);
    file.seek(SeekFrom::Start(pos - keep))?;
    let ok = file.read_exact(tail).is_ok();
    file.seek(SeekFrom::Start(pos))?;
    if !ok {
        tail.clear();
    }
    Ok(())
}

/// Whether a file whose length equals what was read was rewritten in place:
/// modified since, and its last bytes differ from those read.
fn rewritten(
    file: &mut File,
    meta: &std::fs::Metadata,
    pos: u64,
    tail: &[u8],
    seen_modified: Option<std::time::SystemTime>,
) -> io::Result<bool> {
    if tail.is_empty() || meta.modified().ok() == seen_modified {
        return Ok(false);
    }
    let mut now = vec![0u8; tail.len()];
    file.seek(SeekFrom::Start(pos - tail.len() as u64))?;
    let same = file.read_exact(&mut now).is_ok() && now == tail;
    file.seek(SeekFrom::Start(pos))?;
    Ok(!same)
}
