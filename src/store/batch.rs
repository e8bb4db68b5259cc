//! Batches of rows a caller hands to the writer without waiting (the bus
//! worker's tags and announcements): the batches queued one after another
//! are stored in one transaction.
//!
//! Why: every commit costs the writer more than its rows. SQLite's B-tree
//! balancing renumbers pages through the pending-byte page (page 262,145
//! with 4 KiB pages), which leaves the page cache's highest page number
//! there; the commit then drops the cached pages past the end of the file
//! by scanning the cache's whole hash table (`pcache1TruncateUnsafe`), and
//! writes every page the transaction dirtied to the WAL. With one commit
//! per small batch that scan was 29 % of the worker's writer
//! (`docs/performance.md`). A writer that falls behind now commits what
//! queued up meanwhile in one go; one that keeps up still commits each
//! batch as it comes.

use super::writer::TagTable;
use super::{write_with_retry, StoreError, StoreOptions};
use rusqlite::Connection;
use std::path::Path;

/// Rows stored by the writer inside its transaction, then told that they
/// were committed.
pub trait Batch: Send {
    /// Stores the rows inside the writer's transaction (which holds the
    /// write lock). Run again from the start, in a new transaction, when
    /// the database was locked or full or a batch stored with it failed.
    fn write(&mut self, conn: &Connection, table: &TagTable) -> rusqlite::Result<()>;

    /// Rows the batch stores (bounds how many batches share a transaction).
    fn rows(&self) -> usize;

    /// Called once, after the commit that holds the batch; never when the
    /// batch could not be stored.
    fn committed(self: Box<Self>);
}

/// Stores `batches` in one transaction and tells each that it is
/// committed, in order. When that transaction fails (other than by a lock
/// or a full disk, which are waited out), each batch is stored again in its
/// own, so one bad batch never costs the others; its error is logged.
/// Returns the number of transactions committed.
pub(super) fn store(
    conn: &Connection,
    table: &TagTable,
    path: &Path,
    opts: &StoreOptions,
    mut batches: Vec<Box<dyn Batch>>,
) -> u64 {
    match write_together(conn, table, path, opts, &mut batches) {
        Ok(()) => {
            for batch in batches {
                batch.committed();
            }
            1
        }
        Err(e) if batches.len() == 1 => {
            report(&e);
            0
        }
        Err(_) => {
            let mut committed = 0;
            for mut batch in batches {
                match write_together(conn, table, path, opts, std::slice::from_mut(&mut batch)) {
                    Ok(()) => {
                        batch.committed();
                        committed += 1;
                    }
                    Err(e) => report(&e),
                }
            }
            committed
        }
    }
}

/// Writes `batches` in one transaction (waiting out a lock or a full
/// disk).
fn write_together(
    conn: &Connection,
    table: &TagTable,
    path: &Path,
    opts: &StoreOptions,
    batches: &mut [Box<dyn Batch>],
) -> Result<(), StoreError> {
    write_with_retry(path, opts, "a batch", || {
        let tx = super::write_transaction(conn)?;
        for batch in batches.iter_mut() {
            batch.write(&tx, table)?;
        }
        tx.commit()
    })
}

fn report(e: &StoreError) {
    tracing::error!("storing a batch failed: {e}; it is not stored");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{TagWriter, WriterHandle};
    use std::sync::mpsc;

    /// A batch of one row in a table of its own; a name starting with
    /// `bad` makes its write fail.
    struct Row {
        name: &'static str,
        done: mpsc::Sender<&'static str>,
        saw_autocommit: bool,
    }

    impl Batch for Row {
        fn write(&mut self, conn: &Connection, _: &TagTable) -> rusqlite::Result<()> {
            self.saw_autocommit = conn.is_autocommit();
            let table = if self.name.starts_with("bad") {
                "no_such_table"
            } else {
                "rows"
            };
            conn.execute(
                &format!("INSERT INTO {table}(name) VALUES (?1)"),
                [self.name],
            )?;
            Ok(())
        }
        fn rows(&self) -> usize {
            1
        }
        fn committed(self: Box<Self>) {
            assert!(!self.saw_autocommit, "written outside a transaction");
            let _ = self.done.send(self.name);
        }
    }

    /// A writer on a fresh file with a `rows` table, held busy by a job
    /// until the returned sender is used, so that what is sent meanwhile
    /// queues up.
    fn held_writer(dir: &Path) -> (TagWriter, mpsc::SyncSender<()>, std::thread::JoinHandle<()>) {
        let path = dir.join("t.db");
        let writer = TagWriter::start(&path, &StoreOptions::default(), None).unwrap();
        writer
            .run(|conn, _| conn.execute_batch("CREATE TABLE rows(name TEXT)"))
            .unwrap();
        let (release, wait) = mpsc::sync_channel::<()>(1);
        let (started_tx, started) = mpsc::sync_channel::<()>(1);
        let handle: WriterHandle = writer.handle();
        let holder = std::thread::spawn(move || {
            handle
                .run(move |_, _| {
                    let _ = started_tx.try_send(());
                    let _ = wait.recv();
                    Ok(())
                })
                .unwrap();
        });
        started.recv().unwrap();
        (writer, release, holder)
    }

    fn stored(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut st = conn
            .prepare("SELECT name FROM rows ORDER BY rowid")
            .unwrap();
        let names = st.query_map([], |r| r.get(0)).unwrap();
        names.collect::<Result<_, _>>().unwrap()
    }

    /// Rows named `names`, each a batch, queued while the writer is held
    /// busy, then stored: the transactions committed, the batches told in
    /// order, the rows stored.
    fn store_queued(names: &[&'static str]) -> (u64, Vec<&'static str>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let (writer, release, holder) = held_writer(dir.path());
        let (done, told) = mpsc::channel();
        for &name in names {
            let row = Row {
                name,
                done: done.clone(),
                saw_autocommit: true,
            };
            writer.store(Box::new(row)).unwrap();
        }
        release.send(()).unwrap();
        holder.join().unwrap();
        let stats = writer.finish().unwrap();
        let told = told.try_iter().collect();
        (stats.transactions, told, stored(&dir.path().join("t.db")))
    }

    #[test]
    fn batches_queued_together_share_one_commit() {
        let (transactions, told, rows) = store_queued(&["a", "b", "c"]);
        assert_eq!(transactions, 1, "three queued batches, one commit");
        assert_eq!(told, ["a", "b", "c"]);
        assert_eq!(rows, ["a", "b", "c"]);
    }

    #[test]
    fn a_failing_batch_costs_only_itself() {
        let (transactions, told, rows) = store_queued(&["a", "bad", "c"]);
        // The shared transaction failed; each batch was then stored alone.
        assert_eq!(transactions, 2);
        assert_eq!(told, ["a", "c"]);
        assert_eq!(rows, ["a", "c"]);
    }

    #[test]
    fn a_batch_alone_is_committed_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = TagWriter::start(&path, &StoreOptions::default(), None).unwrap();
        writer
            .run(|conn, _| conn.execute_batch("CREATE TABLE rows(name TEXT)"))
            .unwrap();
        let (done, told) = mpsc::channel();
        let row = Row {
            name: "a",
            done,
            saw_autocommit: true,
        };
        writer.store(Box::new(row)).unwrap();
        // Told without anything else sent: the writer does not wait for
        // company.
        assert_eq!(
            told.recv_timeout(std::time::Duration::from_secs(30)),
            Ok("a")
        );
        assert_eq!(stored(&path), ["a"]);
        assert_eq!(writer.finish().unwrap().transactions, 1);
    }
}
