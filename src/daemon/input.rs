//! Live input for `ttp run`: stdin until EOF, or a file followed like
//! `tail -F` (surviving truncation and rotation).
//!
//! An input thread reads raw chunks and hands them over a channel, so that
//! everything read from the source is in the tagging loop's hands at once:
//! on shutdown the loop drains the channel and loses nothing that was read.
//! [`ChunkReader`] turns the channel back into a `BufRead` that reports
//! `WouldBlock` when the source is idle (the loop flushes then).

use super::follow::{follow, Chunk, ChunkAt, CHUNK};
use crate::position::InputPosition;
use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where events come from.
#[derive(Debug, Clone)]
pub enum Source {
    Stdin,
    Follow(PathBuf),
}

/// The input thread's side: chunks read, and the error that ended it.
pub struct Input {
    pub chunks: Receiver<Chunk>,
    pub failure: InputFailure,
}

/// The error that stopped the input thread, if one did.
#[derive(Clone, Default)]
pub struct InputFailure(Arc<Mutex<Option<io::Error>>>);

impl InputFailure {
    /// Takes the error (once).
    pub fn take(&self) -> Option<io::Error> {
        self.0.lock().ok().and_then(|mut f| f.take())
    }

    fn set(&self, e: io::Error) {
        if let Ok(mut f) = self.0.lock() {
            *f = Some(e);
        }
    }
}

/// What `--events PATH` names, checked before reading starts so that a
/// mistake is an error at once rather than a daemon that reads nothing.
enum FileKind {
    /// A regular file (or one not created yet): followed like `tail -F`.
    Regular,
    /// A FIFO or a character device: read as a stream, to its end.
    Stream,
}

fn file_kind(path: &Path) -> io::Result<FileKind> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FileKind::Regular),
        Err(e) => return Err(e),
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a directory, not an events file", path.display()),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() || ft.is_char_device() || ft.is_socket() {
            return Ok(FileKind::Stream);
        }
    }
    // Readable? (The thread opens it again; this reports permissions now.)
    File::open(path)?;
    Ok(FileKind::Regular)
}

/// Starts the input thread. A source that cannot be read at all (a
/// directory, a file without read permission) is an error here.
/// A followed file resumes from `resume` (see [`super::follow`]).
pub fn start(
    source: Source,
    shutdown: Arc<AtomicBool>,
    resume: Option<InputPosition>,
) -> io::Result<Input> {
    let kind = match &source {
        Source::Stdin => FileKind::Stream,
        Source::Follow(path) => file_kind(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?,
    };
    // Everything in the channel is tagged at shutdown: a few chunks (2 MiB)
    // decouple reading from tagging without making a shutdown wait long.
    let (tx, rx) = mpsc::sync_channel::<Chunk>(8);
    let failure = InputFailure::default();
    let failed = failure.clone();
    std::thread::Builder::new()
        .name("ttp-input".into())
        .spawn(move || {
            let result = match (&source, kind) {
                (Source::Stdin, _) => pump(io::stdin().lock(), &tx, &shutdown),
                (Source::Follow(path), FileKind::Stream) => {
                    File::open(path).and_then(|f| pump(f, &tx, &shutdown))
                }
                (Source::Follow(path), FileKind::Regular) => follow(path, &tx, &shutdown, resume),
            };
            if let Err(e) = result {
                let e = match &source {
                    Source::Follow(path) => {
                        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    }
                    Source::Stdin => io::Error::new(e.kind(), format!("stdin: {e}")),
                };
                tracing::error!("reading events: {e}");
                failed.set(e);
            }
        })?;
    Ok(Input {
        chunks: rx,
        failure,
    })
}

/// Reads a stream (stdin, a FIFO) chunk by chunk until EOF, or until
/// `shutdown`: every chunk read is handed over, and none is read after the
/// flag is seen, so a producer that never pauses cannot hold a shutdown up.
fn pump(mut r: impl Read, tx: &SyncSender<Chunk>, shutdown: &AtomicBool) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        if shutdown.load(Ordering::Relaxed) {
            return Ok(());
        }
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = Chunk {
            data: buf[..n].to_vec(),
            at: None,
        };
        if tx.send(chunk).is_err() {
            return Ok(());
        }
    }
}

/// At shutdown, how long to wait for the input thread's last chunk.
const DRAIN_WAIT: Duration = Duration::from_millis(100);

/// The tagging loop's side of the input channel.
pub struct ChunkReader {
    rx: Receiver<Chunk>,
    chunk: Vec<u8>,
    at: Option<ChunkAt>,
    offset: usize,
    idle: Duration,
    shutdown: Arc<AtomicBool>,
    draining: bool,
}

impl ChunkReader {
    /// `idle`: how long to wait for input before reporting `WouldBlock`.
    pub fn new(rx: Receiver<Chunk>, idle: Duration, shutdown: Arc<AtomicBool>) -> ChunkReader {
        ChunkReader {
            rx,
            chunk: Vec::new(),
            at: None,
            offset: 0,
            idle,
            shutdown,
            draining: false,
        }
    }

    /// Where the next unread byte is in the followed file (none for a
    /// stream): everything before it has been handed to the reader.
    pub fn position(&self) -> Option<InputPosition> {
        self.at.as_ref().map(|at| at.position(self.offset))
    }

    fn take(&mut self, c: Chunk) {
        self.chunk = c.data;
        self.at = c.at;
        self.offset = 0;
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.offset >= self.chunk.len() {
            if self.draining || self.shutdown.load(Ordering::Relaxed) {
                // Stop: hand over what was already read, then end. The input
                // thread reads nothing more once it sees the flag; the short
                // wait lets it hand over a chunk it was reading then (a
                // thread blocked on an idle source holds nothing).
                self.draining = true;
                match self.rx.recv_timeout(DRAIN_WAIT) {
                    Ok(c) => {
                        self.take(c);
                        continue;
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                        return Ok(&[])
                    }
                }
            }
            match self.rx.recv_timeout(self.idle) {
                Ok(c) => self.take(c),
                Err(RecvTimeoutError::Timeout) => return Err(io::ErrorKind::WouldBlock.into()),
                Err(RecvTimeoutError::Disconnected) => return Ok(&[]),
            }
        }
        Ok(&self.chunk[self.offset..])
    }

    fn consume(&mut self, n: usize) {
        self.offset = (self.offset + n).min(self.chunk.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect_lines(rx: Receiver<Chunk>, want: usize) -> Vec<String> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut r = ChunkReader::new(rx, Duration::from_millis(20), stop);
        let mut lines = Vec::new();
        let mut buf = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while lines.len() < want && std::time::Instant::now() < deadline {
            match r.read_line(&mut buf) {
                Ok(0) => break,
                Ok(_) if buf.ends_with('\n') => {
                    lines.push(std::mem::take(&mut buf).trim().to_string())
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        lines
    }

    #[test]
    fn follows_appends_truncation_and_rotation() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "one\n").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let rx = start(Source::Follow(path.clone()), stop.clone(), None)
            .unwrap()
            .chunks;
        let writer = std::thread::spawn({
            let path = path.clone();
            move || {
                std::thread::sleep(Duration::from_millis(150));
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap()
                    .write_all(b"two\n")
                    .unwrap();
                std::thread::sleep(Duration::from_millis(150));
                // Truncate in place, then write a shorter content.
                std::fs::write(&path, "3\n").unwrap();
                std::thread::sleep(Duration::from_millis(150));
                // Rotate: move away and create a new file.
                std::fs::rename(&path, path.with_extension("1")).unwrap();
                std::fs::write(&path, "four\n").unwrap();
            }
        });
        let lines = collect_lines(rx, 4);
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert_eq!(lines, vec!["one", "two", "3", "four"]);
    }

    #[test]
    fn shutdown_drains_what_was_read() {
        let (tx, rx) = mpsc::sync_channel(8);
        for data in [&b"a\nb"[..], b"\nc\n"] {
            tx.send(Chunk {
                data: data.to_vec(),
                at: None,
            })
            .unwrap();
        }
        let stop = Arc::new(AtomicBool::new(true));
        let mut r = ChunkReader::new(rx, Duration::from_millis(10), stop);
        let mut all = String::new();
        r.read_to_string(&mut all).unwrap();
        assert_eq!(all, "a\nb\nc\n");
        drop(tx);
    }
}
