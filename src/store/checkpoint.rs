//! WAL checkpoints off the writer's path.
//!
//! With SQLite's automatic checkpoints the transaction that crosses the
//! threshold copies the whole WAL into the database file and syncs it
//! before its commit returns: every few seconds of steady ingest one
//! commit takes hundreds of milliseconds, which is the tail of the bus
//! worker's publish → commit latency. Here the writer's connection only
//! reports the WAL's size after each commit (SQLite's WAL hook, which also
//! switches its automatic checkpoints off), and a thread of its own runs a
//! `PASSIVE` checkpoint on its own connection when the WAL has grown past
//! the threshold: it copies what no reader still needs while the writer
//! goes on appending, and never takes the writer's lock.
//!
//! The WAL starts over from its beginning only when a writer begins a
//! transaction with every frame copied; a busy writer has always appended
//! more by the time the thread finishes (the WAL grew to 760 MB in 8 s with
//! every checkpoint "complete"), and a `RESTART` from the thread loses the
//! race for the lock to a writer that commits back to back. So once the
//! thread has copied the bulk, the writer, between two transactions, runs
//! a passive checkpoint of its own for the few frames written since
//! ([`Checkpointer::after_commit`]): it never waits for anyone, and its
//! next transaction starts the WAL over. Durability is unchanged (WAL,
//! `synchronous=NORMAL`): committed transactions are in the WAL either way.

use super::{StoreError, StoreOptions};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// WAL pages (4 KiB) before a checkpoint: 40 MB, the threshold the writer
/// used to set for SQLite's own checkpoints.
pub(super) const CHECKPOINT_PAGES: i64 = 10_000;

/// The checkpoint thread; stopped (after a last checkpoint) when dropped.
pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Set by the thread after a pass: the writer copies the rest.
    finish: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Hooks the writer's connection and starts the thread. When the
    /// thread's connection cannot be opened, SQLite's own checkpoints stay
    /// on (logged) and `None` is returned.
    pub(super) fn start(
        writer: &mut Connection,
        path: &Path,
        opts: &StoreOptions,
        threshold: i64,
    ) -> Option<Checkpointer> {
        let conn = match open(path, opts) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(db = %path.display(), "checkpoints stay on the writer's path: {e}");
                return None;
            }
        };
        let pages = Arc::new(AtomicI64::new(0));
        let seen = pages.clone();
        let hooked = writer.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, n| {
            seen.store(i64::from(n), Ordering::Relaxed);
            Ok(())
        }));
        if let Err(e) = hooked {
            tracing::warn!(db = %path.display(), "checkpoints stay on the writer's path: {e}");
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let finish = Arc::new(AtomicBool::new(false));
        let (flag, wanted) = (stop.clone(), finish.clone());
        let db = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("ttp-checkpoint".into())
            .spawn(move || run(&conn, &pages, threshold, &flag, &wanted, &db));
        match thread {
            Ok(t) => Some(Checkpointer {
                stop,
                thread: Some(t),
                finish,
            }),
            Err(e) => {
                // Without the thread, SQLite's own checkpoints come back.
                let _ = writer
                    .wal_hook(None::<fn(&mut rusqlite::hooks::Wal, i32) -> rusqlite::Result<()>>);
                let _ = writer.execute_batch("PRAGMA wal_autocheckpoint = 10000");
                tracing::warn!(db = %path.display(), "checkpoints stay on the writer's path: {e}");
                None
            }
        }
    }
}

impl Checkpointer {
    /// Called by the writer between two transactions: after a pass of the
    /// thread, a passive checkpoint of the frames written since, so that
    /// the writer's next transaction starts the WAL over.
    pub(super) fn after_commit(&self, writer: &Connection) {
        if self.finish.swap(false, Ordering::Relaxed) {
            match checkpoint(writer) {
                Ok((log, done)) => tracing::debug!(log, done, "checkpoint finished by the writer"),
                Err(e) => tracing::debug!("checkpoint by the writer: {e}"),
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open(path: &Path, opts: &StoreOptions) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|c| c.busy_timeout(opts.busy_timeout).map(|()| c))
    .map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(conn)
}

fn run(
    conn: &Connection,
    pages: &AtomicI64,
    threshold: i64,
    stop: &AtomicBool,
    finish: &AtomicBool,
    db: &str,
) {
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        let n = pages.load(Ordering::Relaxed);
        if n < threshold {
            continue;
        }
        match checkpoint(conn) {
            Ok((log, done)) => {
                tracing::debug!(db, log, done, "checkpoint");
                finish.store(true, Ordering::Relaxed);
                // Until the writer's next commit says otherwise.
                pages.store(0, Ordering::Relaxed);
                if log > 16 * threshold && done < log && !warned {
                    warned = true;
                    tracing::warn!(
                        db,
                        wal_pages = log,
                        "the WAL keeps growing: a reader holds an old snapshot, so checkpoints cannot finish"
                    );
                }
            }
            Err(e) => tracing::warn!(db, "checkpoint failed: {e}"),
        }
    }
}

/// A passive checkpoint: (frames in the WAL, frames copied).
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_never_checkpoints_and_the_thread_does() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("c.db");
        let mut conn = super::super::open(&path, &StoreOptions::default()).unwrap();
        let cp = Checkpointer::start(&mut conn, &path, &StoreOptions::default(), 100).unwrap();
        let wal = path.with_extension("db-wal");
        let big = "x".repeat(3000);
        // About 60 MB of pages through the WAL in 100 transactions, back
        // to back: a checkpoint thread alone never gets the WAL restarted
        // under such a writer; with the writer finishing each pass it does.
        for i in 0..100 {
            conn.execute_batch("BEGIN").unwrap();
            for j in 0..200 {
                conn.execute(
                    "INSERT INTO ttp_rule_event (at, action, detail) VALUES (?1, 'state', ?2)",
                    rusqlite::params![format!("{i}-{j}"), big],
                )
                .unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
            cp.after_commit(&conn);
        }
        // The thread checkpoints behind the writer, so the WAL is reused
        // from its start instead of holding every page written (60 MB).
        let size = std::fs::metadata(&wal).unwrap().len();
        assert!(size < 30_000_000, "the WAL holds {size} bytes");
        drop(cp);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM ttp_rule_event", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20_000);
    }
}
