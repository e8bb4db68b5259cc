//! `ttp worker`: DECNET's TTP worker on DECNET's service bus.
//!
//! Threads: tokio (current-thread) runs the bus client on the main thread;
//! the tagging thread takes received events from a bounded queue in
//! batches, builds and tags their TaggerEvents (hot-reloaded snapshot, rule
//! state applied), has the writer store the batch in one transaction with
//! any batches queued behind it (one bad row never loses the others), and
//! hands the announcements of newly stored tags back to the bus client;
//! the reload and state threads are those of `ttp run`. SIGTERM or a
//! `stop` on `system.ttp.control` stops reading; what was taken off the
//! socket is tagged and committed first.

use super::decnet_db::DecnetDb;
use super::{announcement_frames, events, Lookup};
use crate::bus::client::{self, ClientConfig, ClientState};
use crate::bus::{Envelope, Frame};
use crate::daemon::watch::WatchOptions;
use crate::engine::Engine;
use crate::rule::parse::LoadOptions;
use crate::run::{RunError, TagOptions};
use crate::store::{self, Flavor, TagTable, WriterHandle};
use crate::tag::Tag;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch as tokio_watch};

/// The nine topics DECNET's worker subscribes to (§2.3), and its control.
pub const TOPICS: [&str; 9] = [
    "attacker.session.ended",
    "attacker.observed",
    "attacker.intel.enriched",
    "attacker.fingerprinted",
    "identity.formed",
    "identity.merged",
    "credential.reuse.detected",
    "email.received",
    "canary.>",
];
pub const CONTROL_TOPIC: &str = "system.ttp.control";

/// Settings of `ttp worker`.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub rules: PathBuf,
    pub db: PathBuf,
    pub bus: PathBuf,
    pub tag: TagOptions,
    pub load: LoadOptions,
    pub watch: WatchOptions,
    /// Received events waiting for the tagger; reading pauses when full.
    pub queue: usize,
    /// Most bus events tagged as one batch.
    pub batch: usize,
    pub heartbeat: Duration,
    pub max_backoff: Duration,
    pub state_poll: Duration,
    /// Counters shared with an HTTP server (`--serve`).
    pub live: Option<Arc<crate::live::Live>>,
}

impl WorkerOptions {
    pub fn new(rules: PathBuf, db: PathBuf, bus: PathBuf) -> WorkerOptions {
        let mut tag = TagOptions::default();
        tag.store.wait_when_unwritable = true;
        WorkerOptions {
            rules,
            db,
            bus,
            tag,
            load: LoadOptions::default(),
            watch: WatchOptions::default(),
            queue: 4096,
            batch: 4096,
            heartbeat: Duration::from_secs(30),
            max_backoff: Duration::from_secs(5),
            state_poll: Duration::from_millis(25),
            live: None,
        }
    }
}

/// What a worker run did.
#[derive(Debug, Default, Clone)]
pub struct WorkerSummary {
    pub bus_events: u64,
    pub dropped: BTreeMap<String, u64>,
    pub tagger_events: u64,
    pub tags: u64,
    pub below_floor: u64,
    pub new: u64,
    pub messages: u64,
    pub connections: usize,
    pub correlation: crate::correlate::stage::CorrelationStats,
}

impl WorkerSummary {
    pub fn render(&self) -> String {
        let dropped: Vec<String> = self
            .dropped
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let correlation = crate::run::correlation_line(&self.correlation)
            .map(|l| format!("\n{l}"))
            .unwrap_or_default();
        format!(
            "bus events: {} received, {} dropped{}\ntagger events: {}\ntags: {} emitted, {} new, {} below the floor\nmessages published: {}\nbus connections: {}{correlation}",
            self.bus_events,
            self.dropped.values().sum::<u64>(),
            if dropped.is_empty() {
                String::new()
            } else {
                format!(" ({})", dropped.join(", "))
            },
            self.tagger_events,
            self.tags,
            self.new,
            self.below_floor,
            self.messages,
            self.connections
        )
    }
}

/// No DECNET tables: no IP resolution, no intel catch-up.
struct NoTables;

impl Lookup for NoTables {
    fn attacker_by_ip(&self, _: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
    fn intel(&self, _: &str) -> Result<Option<Map<String, Value>>, String> {
        Ok(None)
    }
}

/// Runs the worker until SIGTERM (`shutdown`) or a `stop` control message.
pub fn run(options: &WorkerOptions, shutdown: Arc<AtomicBool>) -> Result<WorkerSummary, RunError> {
    let crate::daemon::Started {
        loaded,
        engine,
        writer,
        background,
    } = crate::daemon::start(
        &options.rules,
        &options.db,
        &options.tag,
        options.load,
        &options.watch,
        options.state_poll,
        None,
    )?;
    let sqlite = |e| store::StoreError::Sqlite {
        path: options.db.clone(),
        source: e,
    };
    let reader = store::read_connection(&options.db, &options.tag.store).map_err(sqlite)?;
    let lookup: Box<dyn Lookup + Send> = if DecnetDb::has_tables(&reader).map_err(sqlite)? {
        tracing::info!(
            "DECNET's tables found: attacker_ip resolution and the intel catch-up are on"
        );
        Box::new(DecnetDb::new(reader))
    } else {
        tracing::warn!(
            "{} has no DECNET attacker tables: events without an attacker or identity UUID are \
             dropped (no attacker_ip resolution) and there is no intel catch-up",
            options.db.display()
        );
        Box::new(NoTables)
    };
    tracing::info!(rules = loaded.rules.len(), bus = %options.bus.display(), "worker starting");

    let state = Arc::new(ClientState::default());
    // Stored and announced by the writer's jobs.
    let counts = Arc::new(Counts {
        live: options.live.clone(),
        ..Counts::default()
    });
    let (incoming_tx, incoming_rx) = mpsc::channel::<Envelope>(options.queue.max(1));
    let (outgoing_tx, outgoing_rx) = mpsc::channel::<Frame>(1024);
    let tagger = {
        let (engine, writer, state, shutdown) = (
            engine.clone(),
            writer.handle(),
            state.clone(),
            shutdown.clone(),
        );
        let (floor, batch) = (options.tag.floor, options.batch.max(1));
        let checkpoint_every = options.tag.checkpoint_every;
        let counts = counts.clone();
        std::thread::Builder::new()
            .name("ttp-tagger".into())
            .spawn(move || {
                tag_loop(
                    incoming_rx,
                    outgoing_tx,
                    &engine,
                    &writer,
                    lookup.as_ref(),
                    &state,
                    floor,
                    batch,
                    checkpoint_every,
                    &shutdown,
                    &counts,
                )
            })?
    };
    let mut subscriptions: Vec<String> = TOPICS.iter().map(|t| t.to_string()).collect();
    subscriptions.push(CONTROL_TOPIC.into());
    let config = ClientConfig {
        socket: options.bus.clone(),
        name: "ttp".into(),
        subscriptions,
        heartbeat: options.heartbeat,
        max_backoff: options.max_backoff,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = tokio_watch::channel(false);
    runtime.block_on(async {
        let watcher = {
            let shutdown = shutdown.clone();
            let (live, state, reloads) = (options.live.clone(), state.clone(), background.stats());
            if let Some(live) = &live {
                live.has_bus.store(true, Ordering::Relaxed);
            }
            tokio::spawn(async move {
                while !shutdown.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if let Some(live) = &live {
                        use crate::live::Live;
                        Live::set(
                            &live.queue_depth,
                            state.queue_depth.load(Ordering::Relaxed) as u64,
                        );
                        live.bus_connected
                            .store(state.connected.load(Ordering::Relaxed), Ordering::Relaxed);
                        Live::set(&live.reloads, reloads.reloads.load(Ordering::Relaxed));
                        Live::set(
                            &live.reload_rejections,
                            reloads.rejected.load(Ordering::Relaxed),
                        );
                    }
                }
                tracing::info!(
                    "stopping: no more events are read; what was received is tagged and committed"
                );
                let _ = stop_tx.send(true);
                // Keep the sender alive until the client is done.
                std::future::pending::<()>().await;
            })
        };
        client::run(config, state.clone(), incoming_tx, outgoing_rx, stop_rx).await;
        watcher.abort();
    });
    let summary = tagger.join().unwrap_or_default();
    background.stop();
    writer.finish()?;
    Ok(WorkerSummary {
        connections: state.connections.load(Ordering::Relaxed),
        new: counts.new.load(Ordering::Relaxed),
        messages: counts.messages.load(Ordering::Relaxed),
        ..summary
    })
}

/// Counters the writer's jobs keep.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    new: std::sync::atomic::AtomicU64,
    messages: std::sync::atomic::AtomicU64,
    live: Option<Arc<crate::live::Live>>,
}

/// The tagging thread's loop (see the module notes).
#[allow(clippy::too_many_arguments)]
fn tag_loop(
    mut incoming: mpsc::Receiver<Envelope>,
    outgoing: mpsc::Sender<Frame>,
    engine: &Engine,
    writer: &WriterHandle,
    lookup: &dyn Lookup,
    state: &ClientState,
    floor: f64,
    batch: usize,
    checkpoint_every: std::time::Duration,
    shutdown: &AtomicBool,
    counts: &Arc<Counts>,
) -> WorkerSummary {
    let mut summary = WorkerSummary::default();
    let mut last_checkpoint = std::time::Instant::now();
    while let Some(first) = incoming.blocking_recv() {
        let mut envelopes = vec![first];
        while envelopes.len() < batch {
            match incoming.try_recv() {
                Ok(e) => envelopes.push(e),
                Err(_) => break,
            }
        }
        state
            .queue_depth
            .fetch_sub(envelopes.len(), Ordering::Relaxed);
        // Tag every bus event of the batch: its tags, in order.
        let mut per_event: Vec<Vec<Tag>> = Vec::with_capacity(envelopes.len());
        let mut scratch = Vec::new();
        for env in envelopes {
            summary.bus_events += 1;
            if env.topic == CONTROL_TOPIC {
                control(&env, shutdown);
                per_event.push(Vec::new());
                continue;
            }
            let evs = match events(&env.topic, &env.kind, env.payload, lookup) {
                Ok(evs) => evs,
                Err(d) => {
                    tracing::debug!(topic = %crate::text::line(&env.topic), "dropped: {d}");
                    let key = match d {
                        super::Dropped::NoAnchor | super::Dropped::UnknownIp(_) => "no_anchor",
                        super::Dropped::Lookup(_) => "lookup_failed",
                        super::Dropped::NoKind => "no_source_kind",
                        super::Dropped::NotAnObject => "bad_payload",
                    };
                    *summary.dropped.entry(key.into()).or_default() += 1;
                    per_event.push(Vec::new());
                    continue;
                }
            };
            let mut tags = Vec::new();
            for ev in &evs {
                summary.tagger_events += 1;
                scratch.clear();
                engine.tag_event(ev, &mut scratch);
                tags.append(&mut scratch);
            }
            summary.tags += tags.len() as u64;
            let before = tags.len();
            tags.retain(|t| t.confidence >= floor);
            summary.below_floor += (before - tags.len()) as u64;
            per_event.push(tags);
        }
        if let Some(live) = &counts.live {
            use crate::live::Live;
            Live::set(&live.events_read, summary.bus_events);
            Live::set(&live.events_rejected, summary.dropped.values().sum());
            Live::set(&live.tags_emitted, summary.tags);
            live.set_correlation(&engine.correlation_stats());
        }
        // The batch's tags in one list (moved, not copied), each bus event
        // keeping the range of its own.
        let mut ranges = Vec::with_capacity(per_event.len());
        let mut all: Vec<Tag> = Vec::new();
        for tags in per_event {
            ranges.push(all.len()..all.len() + tags.len());
            all.extend(tags);
        }
        // Every `checkpoint_every`: the windows as they stand after this
        // batch, committed with its tags.
        let windows = if last_checkpoint.elapsed() >= checkpoint_every {
            last_checkpoint = std::time::Instant::now();
            engine.take_window_delta()
        } else {
            Default::default()
        };
        if all.is_empty() {
            if let Err(e) = writer.send_checkpoint(None, windows) {
                tracing::error!("checkpointing correlation windows failed: {e}");
            }
            continue;
        }
        let windows = if windows.is_empty() {
            Vec::new()
        } else {
            vec![windows]
        };
        // Each bus event's announcements, built here while the writer
        // stores the previous batch (building them was a sixth of the
        // writer's time): sent as they are when every tag of the event is
        // newly stored, the usual case; built again from the new ones
        // otherwise.
        let prebuilt: Vec<Vec<Frame>> = ranges
            .iter()
            .map(|range| {
                let tags: Vec<&Tag> = all[range.clone()].iter().collect();
                announcement_frames(&tags)
            })
            .collect();
        // Stored, then announced, by the writer: the tagger goes on with the
        // next batch meanwhile (the writer's bounded channel holds it back
        // when SQLite is behind).
        let stored = Stored {
            all,
            ranges,
            prebuilt,
            windows,
            new: HashSet::new(),
            outgoing: outgoing.clone(),
            counts: counts.clone(),
        };
        if let Err(e) = writer.store(Box::new(stored)) {
            tracing::error!("storing tags failed: {e}; this batch is not announced");
        }
    }
    // The windows as they stand at the end.
    if let Err(e) = writer.send_checkpoint(None, engine.take_window_delta()) {
        tracing::error!("checkpointing correlation windows failed: {e}");
    }
    summary.correlation = engine.correlation_stats();
    summary
}

/// A `system.ttp.control` message: `stop` stops the worker gracefully
/// (DECNET kills itself at once, dropping its queue: README, Q6); anything
/// else is ignored, as DECNET does.
fn control(env: &Envelope, shutdown: &AtomicBool) {
    let action = env.payload.get("action").and_then(Value::as_str);
    match action {
        Some("stop") => {
            let by = env
                .payload
                .get("requested_by")
                .map(super::py_str)
                .unwrap_or_default();
            tracing::warn!(requested_by = %crate::text::line(&by), "stop requested on {}", CONTROL_TOPIC);
            shutdown.store(true, Ordering::Relaxed);
        }
        _ => tracing::debug!(
            "control message ignored: {}",
            crate::text::line(&env.payload.to_string())
        ),
    }
}

/// A batch of bus events' tags on its way to the writer: stored in the
/// writer's transaction (with the batches queued beside it), then announced
/// once committed.
struct Stored {
    all: Vec<Tag>,
    /// Each bus event's tags in `all`.
    ranges: Vec<std::ops::Range<usize>>,
    /// Each bus event's announcements, built by the tagging thread.
    prebuilt: Vec<Vec<Frame>>,
    windows: Vec<crate::correlate::durable::WindowDelta>,
    /// The UUIDs the last write stored anew.
    new: HashSet<uuid::Uuid>,
    outgoing: mpsc::Sender<Frame>,
    counts: Arc<Counts>,
}

impl store::Batch for Stored {
    fn write(&mut self, conn: &rusqlite::Connection, table: &TagTable) -> rusqlite::Result<()> {
        self.new = store_batch(conn, table, &self.all, &self.windows)?;
        Ok(())
    }

    fn rows(&self) -> usize {
        self.all.len()
    }

    fn committed(self: Box<Self>) {
        let Stored {
            all,
            ranges,
            mut prebuilt,
            mut new,
            outgoing,
            counts,
            ..
        } = *self;
        counts.new.fetch_add(new.len() as u64, Ordering::Relaxed);
        if let Some(live) = &counts.live {
            live.tags_new.fetch_add(new.len() as u64, Ordering::Relaxed);
        }
        for (range, built) in ranges.iter().zip(prebuilt.iter_mut()) {
            // Announce each newly stored tag once, with its own bus event.
            let fresh: Vec<&Tag> = all[range.clone()]
                .iter()
                .filter(|t| new.remove(&t.uuid))
                .collect();
            if fresh.is_empty() {
                continue;
            }
            let frames = if fresh.len() == range.len() {
                std::mem::take(built)
            } else {
                announcement_frames(&fresh)
            };
            for frame in frames {
                counts.messages.fetch_add(1, Ordering::Relaxed);
                if let Err(unsent) = outgoing.blocking_send(frame) {
                    tracing::warn!(
                        "bus client gone: announcement of {} dropped",
                        crate::text::line(&unsent.0.arg)
                    );
                }
            }
        }
    }
}

/// Stores a batch inside the writer's transaction: the tags (bad rows
/// skipped), the correlation windows as they stood after it, then DECNET's
/// IPv6 columns for attackers whose IPv6-leak tag is itself new (README,
/// Q18). Returns the UUIDs newly stored.
fn store_batch(
    conn: &rusqlite::Connection,
    table: &TagTable,
    tags: &[Tag],
    windows: &[crate::correlate::durable::WindowDelta],
) -> rusqlite::Result<HashSet<uuid::Uuid>> {
    let new: Vec<&Tag> = store::insert_rows(conn, table, tags)?;
    store::save_windows(conn, windows)?;
    if table.flavor() == Flavor::Decnet {
        let mut seen = HashSet::new();
        for t in new.iter().filter(|t| t.source_kind == "ipv6_leak") {
            let Some(attacker) = &t.attacker_uuid else {
                continue;
            };
            if seen.insert(attacker.clone()) {
                if let Err(e) = ipv6_denormalise(conn, t) {
                    tracing::warn!(
                        "IPv6 leak columns of attacker {}: {e}",
                        crate::text::line(attacker)
                    );
                }
            }
        }
    }
    Ok(new.iter().map(|t| t.uuid).collect())
}

/// §2.5 (i): the attacker's IPv6-leak columns, and the identity's list of
/// link-local interface ids.
fn ipv6_denormalise(conn: &rusqlite::Connection, tag: &Tag) -> rusqlite::Result<()> {
    let text = |k: &str| {
        tag.evidence
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let (addr, kind, oui) = (text("addr"), text("iid_kind"), text("mac_oui"));
    let now = crate::timefmt::now();
    conn.execute(
        "UPDATE attackers SET ipv6_leak_count = ipv6_leak_count + 1, last_ipv6_leak_at = ?2, \
         last_ipv6_link_local = ?3, last_ipv6_iid_kind = ?4, last_ipv6_mac_oui = ?5 WHERE uuid = ?1",
        rusqlite::params![tag.attacker_uuid, now, addr, kind, oui],
    )?;
    let (Some(identity), Some(addr)) = (&tag.identity_uuid, &addr) else {
        return Ok(());
    };
    let current: Option<Option<String>> = rusqlite::OptionalExtension::optional(conn.query_row(
        "SELECT ipv6_link_local_iids FROM attacker_identities WHERE uuid = ?1",
        [identity],
        |r| r.get(0),
    ))?;
    let Some(current) = current else {
        return Ok(());
    };
    let mut list = current
        .and_then(|t| serde_json::from_str::<Vec<Value>>(&t).ok())
        .unwrap_or_default();
    if list
        .iter()
        .any(|e| e.get("iid").and_then(Value::as_str) == Some(addr))
    {
        return Ok(());
    }
    let first_seen = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut entry = Map::new();
    entry.insert("iid".into(), Value::String(addr.clone()));
    entry.insert("oui".into(), Value::String(oui.unwrap_or_default()));
    entry.insert(
        "kind".into(),
        tag.evidence
            .get("iid_kind")
            .cloned()
            .unwrap_or_else(|| Value::String("unknown".into())),
    );
    entry.insert("first_seen".into(), Value::String(first_seen));
    list.push(Value::Object(entry));
    conn.execute(
        "UPDATE attacker_identities SET ipv6_link_local_iids = ?2 WHERE uuid = ?1",
        rusqlite::params![identity, crate::pyjson::dumps(&Value::Array(list))],
    )?;
    Ok(())
}
