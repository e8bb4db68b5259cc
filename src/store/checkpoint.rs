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
//! more by the time the thread finishes its pass (the WAL grew to 760 MB
//! in 8 s with every checkpoint "complete"), and a `RESTART` from the
//! thread loses the race for the lock to a writer that commits back to
//! back. So the writer, between two transactions, runs a passive
//! checkpoint of its own for the frames the thread's pass did not copy
//! ([`Checkpointer::after_commit`]), unless its WAL has started over
//! meanwhile: it never waits for anyone, and its next transaction starts
//! the WAL over.
//!
//! That checkpoint's syncs (of the WAL, then of the database) are on the
//! writer's path, and they cost what is left to copy. Handing over right
//! after the bulk pass left it the frames of the whole pass: at a steady
//! 5,000 bus events/s, every 0.4 s, it stalled the worker's pipeline
//! 30–45 ms (the p99 of publish → commit). So the thread first catches up:
//! short passes over what the writer appends, until one finds nothing new,
//! and the writer's own checkpoint is of a transaction or two
//! (p99 8–10 ms at the same rate). A writer that streams (more than a share
//! of the threshold appended during a pass) gets the hand-over at once.
//! Durability is unchanged (WAL, `synchronous=NORMAL`): committed
//! transactions are in the WAL either way.

use super::{StoreError, StoreOptions};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// WAL pages (4 KiB) before a checkpoint: 40 MB, the threshold the writer
/// used to set for SQLite's own checkpoints.
pub(super) const CHECKPOINT_PAGES: i64 = 10_000;

/// How long, after its bulk pass, the thread goes on copying what the
/// writer appends (passes [`CATCH_UP_PAUSE`] apart) for the WAL to start
/// over, before it hands over to the writer.
const CATCH_UP_FOR: Duration = Duration::from_millis(100);

/// The thread catches up only while fewer than its threshold's
/// `1 / CATCH_UP_SHARE` frames are left to copy: more, and the writer is
/// streaming (it would never let the thread finish).
const CATCH_UP_SHARE: i64 = 4;

/// The pause between two catch-up passes: room for the writer to commit.
const CATCH_UP_PAUSE: Duration = Duration::from_micros(500);

/// What the writer's connection and the thread share.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Frames in the WAL after the writer's last commit (SQLite's WAL
    /// hook).
    frames: AtomicI64,
    /// Set by the thread when it hands over: the WAL's frames then. The
    /// writer copies the rest, unless its WAL has started over since.
    handed: AtomicI64,
    outcomes: Outcomes,
}

/// How the checkpoints ended (counted for the tests).
#[derive(Debug, Default)]
struct Outcomes {
    /// The thread's, handed over to the writer.
    handed_over: AtomicI64,
    /// The writer's own (on its path).
    by_writer: AtomicI64,
}

/// The checkpoint thread; stopped and joined when dropped (the last
/// checkpoint is SQLite's own, when the writer's connection closes).
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
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
        let shared = Arc::new(Shared::default());
        let seen = shared.clone();
        let hooked = writer.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, n| {
            seen.frames.store(i64::from(n), Ordering::Relaxed);
            Ok(())
        }));
        if let Err(e) = hooked {
            tracing::warn!(db = %path.display(), "checkpoints stay on the writer's path: {e}");
            return None;
        }
        let db = path.display().to_string();
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ttp-checkpoint".into())
            .spawn(move || run(&conn, &theirs, threshold, &db));
        match thread {
            Ok(t) => Some(Checkpointer {
                shared,
                thread: Some(t),
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

    /// Called by the writer between two transactions: when the thread
    /// handed over and the WAL has not started over since, a passive
    /// checkpoint of the frames written since its pass, so that the
    /// writer's next transaction starts the WAL over.
    pub(super) fn after_commit(&self, writer: &Connection) {
        let handed = self.shared.handed.swap(0, Ordering::Relaxed);
        if handed == 0 || self.shared.frames.load(Ordering::Relaxed) < handed {
            return;
        }
        self.shared
            .outcomes
            .by_writer
            .fetch_add(1, Ordering::Relaxed);
        match checkpoint(writer) {
            Ok((log, done)) => tracing::debug!(log, done, "checkpoint finished by the writer"),
            Err(e) => tracing::debug!("checkpoint by the writer: {e}"),
        }
    }

    #[cfg(test)]
    fn outcomes(&self) -> &Outcomes {
        &self.shared.outcomes
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
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

fn run(conn: &Connection, shared: &Shared, threshold: i64, db: &str) {
    let mut warned = false;
    // The WAL's frames when the last pass ended: the next waits for the
    // writer to commit again.
    let mut passed_at = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        let n = shared.frames.load(Ordering::Relaxed);
        // Not while the writer has yet to take a hand-over: its own
        // checkpoint would find the lock taken, or this one nothing to do.
        if n < threshold || n == passed_at || shared.handed.load(Ordering::Relaxed) != 0 {
            continue;
        }
        match checkpoint(conn) {
            Ok((log, done)) => {
                tracing::debug!(db, log, done, "checkpoint");
                let caught_up = catch_up(conn, log, threshold / CATCH_UP_SHARE);
                let handed = match caught_up {
                    CatchUp::StartedOver => 0,
                    CatchUp::Copied { log } | CatchUp::Behind { log } => log,
                };
                passed_at = shared.frames.load(Ordering::Relaxed);
                if handed > 0 {
                    tracing::debug!(
                        db,
                        frames = handed,
                        ?caught_up,
                        "checkpoint handed over to the writer"
                    );
                    shared.outcomes.handed_over.fetch_add(1, Ordering::Relaxed);
                    shared.handed.store(handed, Ordering::Relaxed);
                }
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

/// How the thread's catch-up ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CatchUp {
    /// The WAL started over: nothing is left.
    StartedOver,
    /// A pass found nothing appended since the previous one: the WAL's
    /// `log` frames are all copied.
    Copied { log: i64 },
    /// The writer appended faster than the passes copied; the last pass
    /// began at frame `log`.
    Behind { log: i64 },
}

/// After a bulk pass over the WAL's first `log` frames (a passive pass
/// copies what was committed when it began; the writer goes on
/// appending): short passes over what the writer appended meanwhile,
/// until the WAL starts over or a pass finds nothing new (the writer's own
/// checkpoint, if it is still needed, is then of a transaction or two, and
/// its syncs are short), or until [`CATCH_UP_FOR`] has passed or a pass
/// finds more than `most` new frames (the writer streams).
fn catch_up(conn: &Connection, log: i64, most: i64) -> CatchUp {
    let highest = log;
    let mut seen = log;
    let until = Instant::now() + CATCH_UP_FOR;
    while Instant::now() < until {
        std::thread::sleep(CATCH_UP_PAUSE);
        match checkpoint(conn) {
            // SQLite answers -1 for both when the checkpoint could not run
            // (the writer's own holds the lock).
            Ok((l, _)) if l < 0 => {}
            Ok((l, _)) if l < highest => return CatchUp::StartedOver,
            Ok((l, d)) if l == seen && d >= l => return CatchUp::Copied { log: l },
            Ok((l, _)) if l - seen > most => return CatchUp::Behind { log: l },
            Ok((l, _)) => seen = l,
            Err(e) => {
                tracing::debug!("catch-up checkpoint: {e}");
                break;
            }
        }
    }
    CatchUp::Behind { log: seen }
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

    /// A writer's connection to a new file in `dir`, hooked to a
    /// checkpoint thread with the given threshold.
    fn started(dir: &Path, threshold: i64) -> (std::path::PathBuf, Connection, Checkpointer) {
        let path = dir.join("c.db");
        let mut conn = super::super::open(&path, &StoreOptions::default()).unwrap();
        let cp =
            Checkpointer::start(&mut conn, &path, &StoreOptions::default(), threshold).unwrap();
        (path, conn, cp)
    }

    #[test]
    fn the_writer_never_checkpoints_and_the_thread_does() {
        let dir = tempfile::TempDir::new().unwrap();
        let (path, conn, cp) = started(dir.path(), 100);
        let wal = path.with_extension("db-wal");
        // About 60 MB of pages through the WAL in 100 transactions, back
        // to back: a checkpoint thread alone never gets the WAL restarted
        // under such a writer; with the writer finishing each pass it does.
        for i in 0..100 {
            burst(&conn, &i.to_string(), 200);
            cp.after_commit(&conn);
        }
        // The thread checkpoints behind the writer, so the WAL is reused
        // from its start instead of holding every page written (60 MB).
        assert!(cp.outcomes().by_writer.load(Ordering::Relaxed) > 0);
        let size = std::fs::metadata(&wal).unwrap().len();
        assert!(size < 30_000_000, "the WAL holds {size} bytes");
        drop(cp);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM ttp_rule_event", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20_000);
    }

    /// `rows` rows of 3,000 bytes in one transaction.
    fn burst(conn: &Connection, tag: &str, rows: usize) {
        let big = "x".repeat(3000);
        conn.execute_batch("BEGIN").unwrap();
        for j in 0..rows {
            conn.execute(
                "INSERT INTO ttp_rule_event (at, action, detail) VALUES (?1, 'state', ?2)",
                rusqlite::params![format!("{tag}-{j}"), big],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }

    #[test]
    fn the_catch_up_copies_what_was_appended_during_the_pass() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("c.db");
        let mut writer = super::super::open(&path, &StoreOptions::default()).unwrap();
        // Frames in the WAL after each of the writer's commits (the hook
        // also stops SQLite's own checkpoints).
        let frames = Arc::new(AtomicI64::new(0));
        let seen = frames.clone();
        writer
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, n| {
                seen.store(i64::from(n), Ordering::Relaxed);
                Ok(())
            }))
            .unwrap();
        let frames = || frames.load(Ordering::Relaxed);
        let thread = open(&path, &StoreOptions::default()).unwrap();
        burst(&writer, "b", 300);
        // A transaction under way while the bulk pass runs, committed
        // after it: the pass copies only what was committed when it began.
        writer.execute_batch("BEGIN").unwrap();
        writer
            .execute(
                "INSERT INTO ttp_rule_event (at, action, detail) VALUES ('during', 'state', ?1)",
                ["y".repeat(30_000)],
            )
            .unwrap();
        let (log, done) = checkpoint(&thread).unwrap();
        assert_eq!((log, done), (frames(), frames()));
        writer.execute_batch("COMMIT").unwrap();
        assert!(frames() > log);
        // The catch-up copies it, and the idle writer appends nothing new.
        assert_eq!(
            catch_up(&thread, log, 1000),
            CatchUp::Copied { log: frames() }
        );
        // So the writer's next transaction starts the WAL over.
        burst(&writer, "next", 1);
        assert!(frames() < log, "the WAL started over: {} frames", frames());
        // A pass that finds more new frames than allowed is behind.
        let before = frames();
        burst(&writer, "more", 20);
        assert_eq!(
            catch_up(&thread, before, 0),
            CatchUp::Behind { log: frames() }
        );
    }

    #[test]
    fn a_wal_started_over_after_a_hand_over_costs_the_writer_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let (_, conn, cp) = started(dir.path(), 100);
        // A burst, then nothing: the thread copies every frame, but the
        // WAL cannot start over before the writer's next transaction, so
        // the thread hands over.
        burst(&conn, "b", 200);
        cp.after_commit(&conn);
        let deadline = Instant::now() + Duration::from_secs(20);
        while cp.outcomes().handed_over.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(cp.outcomes().handed_over.load(Ordering::Relaxed), 1);
        // The next transaction starts the WAL over: nothing is left for
        // the writer to copy, and it does not checkpoint.
        burst(&conn, "s", 1);
        cp.after_commit(&conn);
        assert!(cp.shared.frames.load(Ordering::Relaxed) < 100);
        assert_eq!(cp.outcomes().by_writer.load(Ordering::Relaxed), 0);
    }
}
