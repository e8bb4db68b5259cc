//! The single tag writer: a thread owning the connection, fed by a bounded
//! channel; tags (with the read position and the correlation windows) in
//! batched transactions.

use super::batch::Batch;
use super::partition::{Maintenance, Partitions};
use super::schema::{open, Flavor};
use super::{file_identity, write_with_retry, StoreError, StoreOptions};
use crate::catalog::{self, SyncReport};
use crate::correlate::durable::{self, WindowDelta};
use crate::position::InputPosition;
use crate::rule::Rule;
use crate::ruleset::Change;
use crate::tag::Tag;
use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use uuid::Uuid;

/// Where tags go: DECNET's `ttp_tag`, or our own file's live partition
/// (with the closed partitions to ask before a UUID counts as new).
#[derive(Debug, Clone)]
pub struct TagTable {
    flavor: Flavor,
    parts: Option<Partitions>,
}

impl TagTable {
    /// Looks at the file (its flavour, and in our own file the partitions).
    pub fn load(conn: &Connection) -> rusqlite::Result<TagTable> {
        let flavor = Flavor::of(conn)?;
        let parts = match flavor {
            Flavor::Own => Some(Partitions::load(conn)?),
            Flavor::Decnet => None,
        };
        Ok(TagTable { flavor, parts })
    }

    #[cfg(test)]
    pub(super) fn with_partitions(parts: Partitions) -> TagTable {
        TagTable {
            flavor: Flavor::Own,
            parts: Some(parts),
        }
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The table the planner statistics follow.
    fn stats_table(&self) -> &str {
        self.parts.as_ref().map_or("ttp_tag", |p| p.live())
    }
}

/// Inserts tags in one transaction; returns the tags that were new.
pub fn insert_tags<'a>(conn: &Connection, tags: &'a [Tag]) -> rusqlite::Result<Vec<&'a Tag>> {
    insert_tags_at(conn, &TagTable::load(conn)?, tags, &Checkpoint::default())
}

/// What is committed with a batch of tags: the read position reached once
/// the events behind them were tagged, and the correlation windows as they
/// stood then.
#[derive(Debug, Default)]
pub struct Checkpoint {
    pub position: Option<InputPosition>,
    /// In the order taken (a later delta overrides an earlier one).
    pub windows: Vec<WindowDelta>,
}

impl Checkpoint {
    fn is_empty(&self) -> bool {
        self.position.is_none() && self.windows.is_empty()
    }
}

/// Saves correlation window changes inside the caller's transaction; a
/// reset that dropped saved windows goes to the audit log.
pub fn save_windows(conn: &Connection, deltas: &[WindowDelta]) -> rusqlite::Result<()> {
    for delta in deltas {
        for (rule_id, detail) in durable::save(conn, delta)? {
            catalog::log_event(conn, Some(&rule_id), None, catalog::Action::State, &detail)?;
        }
    }
    Ok(())
}

/// Inserts tags and, in the same transaction, the checkpoint reached once
/// the events behind them were tagged. In DECNET's database a tag's
/// `rule_sha256` goes to our own `ttp_tag_rule_sha256` (DECNET's `ttp_tag`
/// has no such column).
pub fn insert_tags_at<'a>(
    conn: &Connection,
    table: &TagTable,
    tags: &'a [Tag],
    checkpoint: &Checkpoint,
) -> rusqlite::Result<Vec<&'a Tag>> {
    let tx = write_transaction(conn)?;
    if let Some(p) = &checkpoint.position {
        crate::position::save(&tx, p)?;
    }
    save_windows(&tx, &checkpoint.windows)?;
    let new = insert_rows(&tx, table, tags)?;
    tx.commit()?;
    Ok(new)
}

/// A transaction that takes the write lock at once (waiting for it as the
/// busy timeout allows). A deferred one would read first (the partition
/// catalogue's version) and could then not upgrade to writing once another
/// process has written meanwhile: SQLite answers that at once, without
/// waiting.
pub fn write_transaction(conn: &Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
}

/// Inserts tags inside the caller's transaction (which must have taken the
/// write lock: [`write_transaction`]); returns the new ones.
pub fn insert_rows<'a>(
    tx: &Connection,
    table: &TagTable,
    tags: &'a [Tag],
) -> rusqlite::Result<Vec<&'a Tag>> {
    let flavor = table.flavor;
    // Inserted in UUID order: consecutive rows then land on neighbouring
    // pages of the primary-key index (UUIDs are random, so arrival order
    // scatters them over the whole index); the new tags are returned in
    // the order they came.
    let mut order: Vec<usize> = (0..tags.len()).collect();
    order.sort_by_key(|&i| tags[i].uuid);
    let mut fresh = vec![false; tags.len()];
    // Another process writing the same file may have closed a partition
    // since the writer read them: then they are read again for this batch.
    let reread;
    let parts = match &table.parts {
        Some(p) if !p.is_current(tx)? => {
            reread = Partitions::load(tx)?;
            Some(&reread)
        }
        other => other.as_ref(),
    };
    {
        let own_sql;
        let mut stmt = tx.prepare_cached(match parts {
            Some(parts) => {
                own_sql = format!(
                    "INSERT INTO {} (uuid, source_kind, source_id, attacker_uuid, identity_uuid, \
                     session_id, decky_id, tactic, technique_id, sub_technique_id, confidence, rule_id, \
                     rule_version, evidence, attack_release, mitre_url, created_at, rule_sha256) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
                     ON CONFLICT(uuid) DO NOTHING",
                    parts.live()
                );
                &own_sql
            }
            None => {
                "INSERT INTO ttp_tag (uuid, source_kind, source_id, attacker_uuid, identity_uuid, \
                 session_id, decky_id, tactic, technique_id, sub_technique_id, confidence, rule_id, \
                 rule_version, evidence, attack_release, mitre_url, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
                 ON CONFLICT(uuid) DO NOTHING"
            }
        })?;
        let mut sha = match flavor {
            Flavor::Own => None,
            Flavor::Decnet => Some(tx.prepare_cached(
                "INSERT INTO ttp_tag_rule_sha256 (uuid, rule_sha256) VALUES (?1, ?2) \
                 ON CONFLICT(uuid) DO NOTHING",
            )?),
        };
        for &i in &order {
            let t = &tags[i];
            let mut uuid = Uuid::encode_buffer();
            let uuid: &str = t.uuid.hyphenated().encode_lower(&mut uuid);
            if let Some(parts) = parts {
                if parts.stored_elsewhere(tx, &t.uuid, uuid)? {
                    continue;
                }
            }
            // Stored exactly as DECNET stores it: `json.dumps(evidence)`.
            let evidence = crate::pyjson::dumps_object(t.evidence.iter());
            let columns = params![
                uuid,
                t.source_kind,
                t.source_id,
                t.attacker_uuid,
                t.identity_uuid,
                t.session_id,
                t.decky_id,
                t.tactic,
                t.technique_id,
                t.sub_technique_id,
                t.confidence,
                t.rule_id,
                t.rule_version,
                evidence,
                t.attack_release,
                t.mitre_url,
                t.created_at,
                t.rule_sha256,
            ];
            let inserted = match &mut sha {
                None => stmt.execute(columns),
                Some(_) => stmt.execute(&columns[..17]),
            };
            // One bad row (a CHECK constraint) loses that row only, never
            // the rest of the batch (DECNET loses the batch: README, Q14).
            let n = match inserted {
                Ok(n) => n,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) =>
                {
                    tracing::warn!(
                        rule = %crate::text::line(&t.rule_id),
                        source_id = %crate::text::line(&t.source_id),
                        "a tag breaks a constraint of ttp_tag and is not stored: {e}"
                    );
                    0
                }
                Err(e) => return Err(e),
            };
            if n > 0 {
                if let Some(sha) = &mut sha {
                    sha.execute(params![uuid, t.rule_sha256])?;
                }
                fresh[i] = true;
            }
        }
    }
    let new: Vec<&Tag> = tags
        .iter()
        .zip(&fresh)
        .filter_map(|(t, &f)| f.then_some(t))
        .collect();
    if flavor == Flavor::Own {
        super::totals::add(tx, &new)?;
    }
    Ok(new)
}

/// Totals from the writer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub new: u64,
    pub already_present: u64,
    pub transactions: u64,
}

/// Called with each tag the writer newly inserted.
pub type NewTagSink = Box<dyn FnMut(&Tag) + Send>;

enum Msg {
    Tags(Vec<Tag>),
    /// The read position after the events whose tags were sent before it
    /// (if the events have one), and the correlation windows then.
    Checkpoint(Option<InputPosition>, WindowDelta),
    Changes(Vec<Change>),
    Sync(
        Vec<Arc<Rule>>,
        PathBuf,
        SyncSender<Result<SyncReport, StoreError>>,
    ),
    ExpireStates(i64),
    Flush(SyncSender<()>),
    /// Work of the caller's on the writer's connection (one transaction);
    /// the caller waits for the result.
    Run(Job, SyncSender<Result<(), StoreError>>),
    /// Rows of the caller's, stored without waiting: the batches queued
    /// one after another share a transaction ([`super::batch`]).
    Store(Box<dyn Batch>),
}

/// A piece of work run on the writer's connection; retried as a whole when
/// the database is locked or full (so it must be its own transaction).
type Job = Box<dyn FnMut(&Connection, &TagTable) -> rusqlite::Result<()> + Send>;

/// Rows buffered before a transaction is committed regardless of input.
const BATCH_ROWS: usize = 10_000;

/// The one writer of a process: a thread owning the connection, fed by a
/// channel. Tags are inserted in batched transactions; rule changes, the
/// start-up rule sync and state expiry go through it too, in order.
pub struct TagWriter {
    handle: WriterHandle,
    join: JoinHandle<Result<WriteStats, StoreError>>,
}

/// A way to send work to the writer; cheap to clone, one per thread.
#[derive(Clone)]
pub struct WriterHandle {
    tx: SyncSender<Msg>,
}

impl TagWriter {
    /// Opens the database (in the caller's thread, so errors surface at
    /// once) and starts the writer thread.
    pub fn start(
        path: &Path,
        opts: &StoreOptions,
        sink: Option<NewTagSink>,
    ) -> Result<TagWriter, StoreError> {
        let mut conn = open(path, opts)?;
        // A lookup statement per closed partition besides the inserts: more
        // than rusqlite's default 16, which then prepares them again and
        // again.
        conn.set_prepared_statement_cache_capacity(256);
        let checkpointer = super::checkpoint::Checkpointer::start(
            &mut conn,
            path,
            opts,
            super::checkpoint::CHECKPOINT_PAGES,
        );
        // A few batches in flight: enough to overlap matching and writing,
        // few enough to bound memory (a batch holds thousands of tags).
        let (tx, rx) = mpsc::sync_channel::<Msg>(4);
        let path = path.to_path_buf();
        let opts = opts.clone();
        let join = std::thread::Builder::new()
            .name("ttp-writer".into())
            .spawn(move || {
                let stats = writer_loop(conn, rx, sink, &path, &opts, checkpointer.as_ref());
                drop(checkpointer);
                stats
            })
            .map_err(|_| StoreError::WriterGone)?;
        Ok(TagWriter {
            handle: WriterHandle { tx },
            join,
        })
    }

    /// Whether the writer thread has stopped (on an error: `finish` says
    /// which).
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Another handle for another thread.
    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Commits everything queued and stops the writer. Every other handle
    /// must have been dropped (the writer runs until the last one is).
    pub fn finish(self) -> Result<WriteStats, StoreError> {
        let TagWriter { handle, join } = self;
        drop(handle);
        join.join().unwrap_or(Err(StoreError::WriterGone))
    }
}

impl std::ops::Deref for TagWriter {
    type Target = WriterHandle;
    fn deref(&self) -> &WriterHandle {
        &self.handle
    }
}

impl WriterHandle {
    fn send_msg(&self, msg: Msg) -> Result<(), StoreError> {
        self.tx.send(msg).map_err(|_| StoreError::WriterGone)
    }

    /// Queues tags for writing (blocks when the writer is behind).
    pub fn send(&self, tags: Vec<Tag>) -> Result<(), StoreError> {
        if tags.is_empty() {
            return Ok(());
        }
        self.send_msg(Msg::Tags(tags))
    }

    /// Queues the read position reached and the correlation windows'
    /// changes: committed with the tags sent before them, never before.
    pub fn send_checkpoint(
        &self,
        position: Option<InputPosition>,
        windows: WindowDelta,
    ) -> Result<(), StoreError> {
        if position.is_none() && windows.is_empty() {
            return Ok(());
        }
        self.send_msg(Msg::Checkpoint(position, windows))
    }

    /// Queues the changes of a reload for the rule catalog.
    pub fn send_changes(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.send_msg(Msg::Changes(changes))
    }

    /// Asks the writer to delete states expired at `now` (and log them).
    pub fn expire_states(&self, now: i64) -> Result<(), StoreError> {
        self.send_msg(Msg::ExpireStates(now))
    }

    /// Records the serving rules of `rules_dir` at start-up and waits for
    /// the result.
    pub fn sync_rules(
        &self,
        rules: Vec<Arc<Rule>>,
        rules_dir: &Path,
    ) -> Result<SyncReport, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send_msg(Msg::Sync(rules, rules_dir.to_path_buf(), reply))?;
        answer.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Runs `f` on the writer's connection, after everything queued before
    /// it, and returns its result. `f` must make its own transaction; it is
    /// run again from the start when the database is locked or full.
    pub fn run<T: Send + 'static>(
        &self,
        mut f: impl FnMut(&Connection, &TagTable) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (value_tx, value_rx) = mpsc::sync_channel(1);
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn, table| {
            let v = f(conn, table)?;
            let _ = value_tx.try_send(v);
            Ok(())
        });
        self.send_msg(Msg::Run(job, done_tx))?;
        done_rx.recv().map_err(|_| StoreError::WriterGone)??;
        value_rx.recv().map_err(|_| StoreError::WriterGone)
    }

    /// Queues a batch to be stored after everything queued before it,
    /// without waiting for it (the bounded channel holds the caller back
    /// when the writer is behind). Batches queued one after another share a
    /// transaction; each is told once it is committed ([`Batch`]), and a
    /// failure is logged.
    pub fn store(&self, batch: Box<dyn Batch>) -> Result<(), StoreError> {
        self.send_msg(Msg::Store(batch))
    }

    /// Waits until everything queued so far is committed.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = mpsc::sync_channel(1);
        self.send_msg(Msg::Flush(reply))?;
        done.recv().map_err(|_| StoreError::WriterGone)
    }
}

fn writer_loop(
    conn: Connection,
    rx: Receiver<Msg>,
    mut sink: Option<NewTagSink>,
    path: &Path,
    opts: &StoreOptions,
    checkpointer: Option<&super::checkpoint::Checkpointer>,
) -> Result<WriteStats, StoreError> {
    let mut stats = WriteStats::default();
    let mut pending: Vec<Tag> = Vec::new();
    let mut checkpoint = Checkpoint::default();
    let identity = file_identity(path);
    let mut table = TagTable::load(&conn).map_err(|e| StoreError::Sqlite {
        path: path.to_path_buf(),
        source: e,
    })?;
    if table.flavor == Flavor::Decnet {
        tracing::info!(db = %path.display(), "writing into DECNET's database: its tables are used as they are");
    }
    let mut planner = super::stats::PlannerStats::new(&conn, table.stats_table());
    let mut open = true;
    // A message taken off the channel while gathering batches, handled
    // next.
    let mut carried: Option<Msg> = None;
    while open || carried.is_some() {
        // Block for the first message, then drain what is queued; anything
        // other than tags (and checkpoints) first commits the tags before it
        // (order kept).
        let mut other: Option<Msg> = None;
        let mut take = |msg: Msg, pending: &mut Vec<Tag>| match msg {
            Msg::Tags(t) => {
                pending.extend(t);
                None
            }
            Msg::Checkpoint(p, w) => {
                if p.is_some() {
                    checkpoint.position = p;
                }
                if !w.is_empty() {
                    checkpoint.windows.push(w);
                }
                None
            }
            m => Some(m),
        };
        match carried.take().map_or_else(|| rx.recv(), Ok) {
            Ok(m) => other = take(m, &mut pending),
            Err(_) => open = false,
        }
        while open && other.is_none() && pending.len() < BATCH_ROWS {
            match rx.try_recv() {
                Ok(m) => other = take(m, &mut pending),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        if !pending.is_empty() || !checkpoint.is_empty() {
            let at = std::mem::take(&mut checkpoint);
            let new = write_with_retry(path, opts, "tags", || {
                insert_tags_at(&conn, &table, &pending, &at)
            })?;
            stats.transactions += 1;
            stats.new += new.len() as u64;
            stats.already_present += (pending.len() - new.len()) as u64;
            if let Some(sink) = sink.as_mut() {
                for t in new {
                    sink(t);
                }
            }
            pending.clear();
            // Deleted or replaced under us: later commits would vanish.
            if file_identity(path) != identity {
                tracing::error!(db = %path.display(), "the database file was deleted or replaced while in use");
                return Err(StoreError::Replaced {
                    path: path.to_path_buf(),
                });
            }
        }
        planner.refresh(&conn, path);
        if let Some(parts) = table.parts.as_mut() {
            maintain(&conn, parts, path, &mut planner);
        }
        if let Some(cp) = checkpointer {
            cp.after_commit(&conn);
        }
        match other {
            None | Some(Msg::Tags(_)) | Some(Msg::Checkpoint(..)) => {}
            Some(Msg::Changes(changes)) => {
                let warnings = write_with_retry(path, opts, "rule changes", || {
                    catalog::record_changes(&conn, &changes)
                })?;
                for w in warnings {
                    tracing::warn!("{}", crate::text::line(&w));
                }
            }
            Some(Msg::Sync(rules, dir, reply)) => {
                let _ = reply.send(write_with_retry(path, opts, "the rule catalogue", || {
                    catalog::sync_rules(&conn, &rules, &dir)
                }));
            }
            Some(Msg::ExpireStates(now)) => {
                let expired = write_with_retry(path, opts, "rule states", || {
                    catalog::expire_states(&conn, now)
                })?;
                for id in expired {
                    tracing::info!(rule_id = %crate::text::line(&id), "rule state expired; the rule is enabled again");
                }
            }
            Some(Msg::Flush(reply)) => {
                let _ = reply.send(());
            }
            Some(Msg::Run(mut job, done)) => {
                // A failure is the caller's to report; the writer goes on.
                let result = write_with_retry(path, opts, "a job", || job(&conn, &table));
                let _ = done.send(result);
            }
            Some(Msg::Store(first)) => {
                // With the batches queued right behind it, up to a
                // transaction's rows; the first other message is kept for
                // the next turn. No wait for more: one that comes alone is
                // committed alone.
                let mut rows = first.rows();
                let mut batches = vec![first];
                while rows < BATCH_ROWS && open {
                    match rx.try_recv() {
                        Ok(Msg::Store(b)) => {
                            rows += b.rows();
                            batches.push(b);
                        }
                        Ok(m) => {
                            carried = Some(m);
                            break;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => open = false,
                    }
                }
                stats.transactions += super::batch::store(&conn, &table, path, opts, batches);
            }
        }
    }
    Ok(stats)
}

/// One step of the partitions' upkeep between two transactions (see
/// [`Partitions::maintain`]); a failure (a lock, a full disk) is logged and
/// the step is tried again after the next commit.
fn maintain(
    conn: &Connection,
    parts: &mut Partitions,
    path: &Path,
    planner: &mut super::stats::PlannerStats,
) {
    let started = std::time::Instant::now();
    let result = parts.maintain(conn);
    // The live partition changed (closed here, or by another process).
    if planner.table() != parts.live() {
        planner.follow(conn, parts.live());
    }
    match result {
        Ok(Maintenance::Nothing) => {}
        Ok(Maintenance::Closed(name, rows)) => {
            tracing::info!(db = %path.display(), partition = %name, rows, ms = started.elapsed().as_millis() as u64, next = %parts.live(), "tag partition closed");
        }
        Ok(Maintenance::Indexed(name, index)) => {
            tracing::debug!(db = %path.display(), partition = %name, index = %index, ms = started.elapsed().as_millis() as u64, "index of a closed tag partition built");
        }
        Ok(Maintenance::Completed(name)) => {
            tracing::info!(db = %path.display(), partition = %name, "closed tag partition indexed and analysed");
        }
        Err(e) => {
            tracing::warn!(db = %path.display(), "tag partition upkeep postponed: {e}");
        }
    }
}
