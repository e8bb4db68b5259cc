//! What the worker reads from DECNET's own tables: an attacker's UUID by
//! IP (`attackers`) and its threat-intel row (`attacker_intel`), typed as
//! DECNET's models type them (JSON columns parsed, BOOLEAN as true/false).

use super::{Lookup, INTEL_KEYS};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value};

/// DECNET's database, read on a connection of its own.
pub struct DecnetDb {
    conn: Connection,
}

/// The catch-up columns stored as JSON text.
const JSON_COLUMNS: [&str; 5] = [
    "abuseipdb_categories",
    "greynoise_tags",
    "threatfox_threat_types",
    "threatfox_ioc_types",
    "threatfox_malware_families",
];
/// The catch-up columns that are SQLAlchemy `Boolean`s (0/1 in SQLite).
const BOOL_COLUMNS: [&str; 2] = ["feodo_listed", "threatfox_listed"];

impl DecnetDb {
    pub fn new(conn: Connection) -> DecnetDb {
        DecnetDb { conn }
    }

    /// Whether a database has DECNET's `attackers` and `attacker_intel`
    /// tables (without them, IP resolution and the intel catch-up are off).
    pub fn has_tables(conn: &Connection) -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT count(*) = 2 FROM sqlite_master WHERE type = 'table' \
             AND name IN ('attackers', 'attacker_intel')",
            [],
            |r| r.get(0),
        )
    }
}

fn column(key: &str, v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) if BOOL_COLUMNS.contains(&key) => Value::Bool(i != 0),
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            if JSON_COLUMNS.contains(&key) {
                crate::pyjson::parse(t).unwrap_or(Value::Null)
            } else {
                Value::String(String::from_utf8_lossy(t).into_owned())
            }
        }
    }
}

impl Lookup for DecnetDb {
    fn attacker_by_ip(&self, ip: &str) -> Result<Option<String>, String> {
        self.conn
            .prepare_cached("SELECT uuid FROM attackers WHERE ip = ?1 LIMIT 1")
            .and_then(|mut s| s.query_row([ip], |r| r.get(0)).optional())
            .map_err(|e| e.to_string())
    }

    fn intel(&self, attacker_uuid: &str) -> Result<Option<Map<String, Value>>, String> {
        let sql = format!(
            "SELECT {} FROM attacker_intel WHERE attacker_uuid = ?1 LIMIT 1",
            INTEL_KEYS.join(", ")
        );
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_row([attacker_uuid], |r| {
                    let mut row = Map::new();
                    for (i, key) in INTEL_KEYS.iter().enumerate() {
                        row.insert((*key).to_string(), column(key, r.get_ref(i)?));
                    }
                    Ok(row)
                })
                .optional()
            })
            .map_err(|e| e.to_string())
    }
}
