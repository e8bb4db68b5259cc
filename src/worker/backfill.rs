//! `ttp backfill`: DECNET's `ttp-backfill` (worker-and-api spec §2.10).
//! Replays the commands stored on `attackers` rows and the stored canary
//! triggers through the tagger and the insert path, with the operators'
//! rule state; never publishes, no intel catch-up, no IPv6 update.
//!
//! One fix, visible in the README's deviations (§5 Q16): a stored command's
//! text is also read from `command`, the key DECNET's profiler writes, so
//! the command backfill finds real data (DECNET's reads only `command_text`
//! and `text`, and finds nothing).

use super::py_str;
use crate::engine::Engine;
use crate::event::TaggerEvent;
use crate::lifters::py::truthy;
use crate::store::WriterHandle;
use crate::tag::Tag;
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::time::Instant;

/// Which stored history to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Command,
    Canary,
    All,
}

impl Source {
    pub fn parse(s: &str) -> Option<Source> {
        Some(match s {
            "command" => Source::Command,
            "canary" => Source::Canary,
            "all" => Source::All,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Command => "command",
            Source::Canary => "canary",
            Source::All => "all",
        }
    }
}

/// Settings of a backfill.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub since_days: u32,
    pub source: Source,
    pub dry_run: bool,
    pub batch_size: usize,
    pub floor: f64,
}

/// Errors of a backfill.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("reading DECNET's tables: {0}")]
    Read(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the database has no DECNET `{0}` table: there is no stored history to replay")]
    NoTable(&'static str),
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// Tags accumulated and stored whenever a batch is full.
struct Flusher<'a> {
    engine: &'a Engine,
    writer: &'a WriterHandle,
    options: &'a BackfillOptions,
    pending: Vec<Tag>,
    inserted: u64,
    scratch: Vec<Tag>,
}

impl Flusher<'_> {
    fn tag(&mut self, ev: &TaggerEvent) -> Result<(), BackfillError> {
        self.scratch.clear();
        self.engine.tag_event(ev, &mut self.scratch);
        let floor = self.options.floor;
        self.pending
            .extend(self.scratch.drain(..).filter(|t| t.confidence >= floor));
        if self.pending.len() >= self.options.batch_size {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BackfillError> {
        let tags = std::mem::take(&mut self.pending);
        if tags.is_empty() || self.options.dry_run {
            return Ok(());
        }
        let new = self.writer.run(move |conn, table| {
            crate::store::insert_tags_at(conn, table, &tags, &Default::default())
                .map(|n| n.len() as u64)
        })?;
        self.inserted += new;
        Ok(())
    }
}

fn has_table(conn: &rusqlite::Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get(0),
    )
}

/// Runs a backfill; returns DECNET's report lines.
pub fn run(
    reader: &rusqlite::Connection,
    engine: &Engine,
    writer: &WriterHandle,
    options: &BackfillOptions,
) -> Result<Vec<String>, BackfillError> {
    let now = time::OffsetDateTime::now_utc();
    let cutoff = now - time::Duration::days(i64::from(options.since_days));
    let cutoff_text = crate::timefmt::format(cutoff);
    let iso = cutoff
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00"
        ))
        .unwrap_or_default();
    // As DECNET prints it (trailing space included).
    let mut lines = vec![format!(
        "TTP backfill since={iso} source={} dry_run={} ",
        options.source.as_str(),
        py_bool(options.dry_run),
    )];
    let mut flusher = Flusher {
        engine,
        writer,
        options,
        pending: Vec::new(),
        inserted: 0,
        scratch: Vec::new(),
    };
    if matches!(options.source, Source::Command | Source::All) {
        if !has_table(reader, "attackers")? {
            return Err(BackfillError::NoTable("attackers"));
        }
        let started = Instant::now();
        let (rows, commands) = commands(reader, &cutoff_text, &mut flusher)?;
        flusher.flush()?;
        let mut line = String::new();
        let _ = write!(
            line,
            "source=command rows={rows} commands={commands} inserted={} dry_run={} elapsed_s={:.2}",
            flusher.inserted,
            py_bool(options.dry_run),
            started.elapsed().as_secs_f64()
        );
        lines.push(line);
    }
    if matches!(options.source, Source::Canary | Source::All) {
        if !has_table(reader, "canary_triggers")? {
            return Err(BackfillError::NoTable("canary_triggers"));
        }
        let started = Instant::now();
        flusher.inserted = 0;
        let rows = canaries(reader, &cutoff_text, &mut flusher)?;
        flusher.flush()?;
        lines.push(format!(
            "source=canary rows={rows} inserted={} dry_run={} elapsed_s={:.2}",
            flusher.inserted,
            py_bool(options.dry_run),
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(lines)
}

fn opt_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        other => Some(py_str(other)),
    }
}

/// §2.10 step 2: the commands stored on recent `attackers` rows.
fn commands(
    reader: &rusqlite::Connection,
    cutoff: &str,
    flusher: &mut Flusher,
) -> Result<(u64, u64), BackfillError> {
    let mut stmt = reader.prepare(
        "SELECT uuid, identity_id, commands FROM attackers WHERE last_seen >= ?1 ORDER BY last_seen, uuid",
    )?;
    let rows = stmt.query_map([cutoff], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let (mut seen_rows, mut seen_commands) = (0u64, 0u64);
    for row in rows {
        let (uuid, identity, stored) = row?;
        let Ok(Value::Array(list)) = crate::pyjson::parse(stored.unwrap_or_default().as_bytes())
        else {
            continue; // not JSON, or not a list: skipped and not counted
        };
        seen_rows += 1;
        let objects = list.iter().filter_map(Value::as_object);
        for (i, obj) in objects.enumerate() {
            seen_commands += 1;
            let get = |k: &str| obj.get(k).unwrap_or(&Value::Null);
            let text = ["command_text", "text", "command"]
                .iter()
                .map(|k| get(k))
                .find(|v| truthy(v));
            let Some(Value::String(text)) = text else {
                continue;
            };
            let source_id = ["id", "uuid", "command_id"]
                .iter()
                .map(|k| get(k))
                .find(|v| truthy(v))
                .map(py_str)
                .unwrap_or_else(|| format!("{uuid}#cmd{i}"));
            let decky = [get("decky_id"), get("decky")]
                .into_iter()
                .find(|v| truthy(v))
                .and_then(opt_text);
            let mut payload: Map<String, Value> = obj.clone();
            payload.insert("command_text".into(), Value::String(text.clone()));
            let ev = TaggerEvent {
                source_kind: "command".into(),
                source_id,
                attacker_uuid: Some(uuid.clone()),
                identity_uuid: identity.clone(),
                session_id: opt_text(get("session_id")),
                decky_id: decky,
                payload: payload.into_iter().collect(),
            };
            flusher.tag(&ev)?;
        }
    }
    Ok((seen_rows, seen_commands))
}

/// §2.10 step 3: recent canary triggers.
fn canaries(
    reader: &rusqlite::Connection,
    cutoff: &str,
    flusher: &mut Flusher,
) -> Result<u64, BackfillError> {
    let mut stmt = reader.prepare(
        "SELECT uuid, token_uuid, src_ip, user_agent, request_path, dns_qname, raw_headers, attacker_id \
         FROM canary_triggers WHERE occurred_at >= ?1 ORDER BY occurred_at, uuid",
    )?;
    let rows = stmt.query_map([cutoff], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, Option<String>>(7)?,
        ))
    })?;
    let mut seen = 0;
    for row in rows {
        let (uuid, token, src_ip, ua, path, qname, headers, attacker) = row?;
        seen += 1;
        // An unanchored trigger yields nothing (DECNET's lifter skips it).
        let Some(attacker) = attacker else { continue };
        let s = |v: Option<String>| v.map_or(Value::Null, Value::String);
        let mut payload = Map::new();
        payload.insert("token_uuid".into(), s(token));
        payload.insert("src_ip".into(), s(src_ip));
        payload.insert(
            "ua_signature".into(),
            Value::String(ua.clone().unwrap_or_default()),
        );
        payload.insert("user_agent".into(), s(ua));
        payload.insert("request_path".into(), s(path));
        payload.insert("dns_qname".into(), s(qname));
        payload.insert(
            "headers".into(),
            headers
                .and_then(|h| crate::pyjson::parse(h.as_bytes()).ok())
                .unwrap_or(Value::Null),
        );
        let ev = TaggerEvent {
            source_kind: "canary_fingerprint".into(),
            source_id: uuid,
            attacker_uuid: Some(attacker),
            identity_uuid: None,
            session_id: None,
            decky_id: None,
            payload: payload.into_iter().collect(),
        };
        flusher.tag(&ev)?;
    }
    Ok(seen)
}
