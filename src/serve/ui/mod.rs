//! The analysts' page (issue #15): `/` serves an HTML page, its module
//! script and its style sheet, all embedded in the binary (no build step,
//! nothing loaded from elsewhere); the page reads `/api/v1/ui/*`:
//!
//! - `attack`: the vendored ATT&CK table (tactics in matrix order,
//!   technique names and tactics);
//! - `matrix`: tags and distinct attackers per (tactic, technique) and per
//!   sub-technique, under every filter;
//! - `tags`: one cell's tags, newest first, paged, with their evidence;
//! - `attacker/{uuid}`: one attacker's techniques on a timeline;
//! - `rules`: every rule with its state, firings in the range, last load
//!   error, and the audit log (state changes go through the existing
//!   `POST/DELETE /api/v1/ttp/rules/{id}/state`);
//! - `rule-text/{sha256}`: the rule version that produced a tag;
//! - `events`: Server-Sent Events, one `change` whenever a writer commits
//!   new tags or the rule log moves ([`live`]).
//!
//! Filters (query parameters, all optional): `since`, `until` (RFC 3339, a
//! date or an age such as `24h`), `min_confidence`, `attacker`, `identity`,
//! `session`, `decky`, `rule`; `tags` also takes `technique` (a technique
//! or sub-technique id), `tactic`, `offset` and `limit` (at most 200).

mod live;

use super::api::blocking;
use super::{detail, AppState};
use crate::query::{api_time, Cell, QueryError, TagFilter, TagRow, Window};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Most tags one page of a drill-down lists.
const MAX_PAGE: u32 = 200;

/// The data routes (under `/api/v1`, behind authentication).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui/attack", get(attack))
        .route("/ui/matrix", get(matrix))
        .route("/ui/tags", get(tags))
        .route("/ui/attacker/{uuid}", get(attacker))
        .route("/ui/rules", get(rules))
        .route("/ui/rule-text/{sha256}", get(rule_text))
        .route("/ui/events", get(live::events))
}

/// The page and its assets (public: they hold no data).
pub(super) fn pages() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/ui/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/ui/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE_CSS)),
        )
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // Nothing from elsewhere: scripts, styles, data all from here.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// A 400 naming the parameter at fault.
fn bad(why: String) -> Response {
    detail(StatusCode::BAD_REQUEST, why)
}

/// The filters common to every data route, checked: a bad value is said
/// with its parameter's name.
fn filter(q: &HashMap<String, String>) -> Result<TagFilter, String> {
    let text = |k: &str| {
        q.get(k)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    let min_confidence = match text("min_confidence") {
        None => None,
        Some(v) => match v.parse::<f64>() {
            Ok(c) if (0.0..=1.0).contains(&c) => Some(c),
            _ => {
                return Err(format!(
                    "min_confidence must be a number from 0 to 1, not {v:?}"
                ))
            }
        },
    };
    let window = Window::parse_as(
        ["since", "until"],
        text("since").as_deref(),
        text("until").as_deref(),
        min_confidence,
        time::OffsetDateTime::now_utc(),
    )
    .map_err(|e| e.to_string())?;
    let mut f = TagFilter {
        attacker: text("attacker"),
        identity: text("identity"),
        session: text("session"),
        decky: text("decky"),
        rule_id: text("rule"),
        tactic: text("tactic"),
        window,
        ..TagFilter::default()
    };
    if let Some(t) = text("technique") {
        if t.contains('.') {
            f.sub_technique = Some(t);
        } else {
            f.technique = Some(t);
        }
    }
    Ok(f)
}

fn number(q: &HashMap<String, String>, key: &str, default: u32, max: u32) -> Result<u32, String> {
    match q.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!(
                "{key} must be a whole number from 0 to {max}, not {v:?}"
            )),
        },
    }
}

async fn attack() -> Response {
    let table = crate::attack::Attack::embedded();
    let tactics: Vec<Value> = table
        .tactics()
        .iter()
        .map(|t| json!({"id": t.id, "name": t.name, "shortname": t.shortname}))
        .collect();
    let techniques: Vec<Value> = table
        .techniques()
        .iter()
        .filter(|t| !t.revoked && !t.deprecated)
        .map(|t| json!({"id": t.id, "name": t.name, "tactics": t.tactics}))
        .collect();
    Json(json!({
        "release": crate::attack::TABLE_RELEASE,
        "tactics": tactics,
        "techniques": techniques,
    }))
    .into_response()
}

fn cell_json(c: &Cell) -> Value {
    json!({
        "tactic": c.tactic, "technique_id": c.technique_id,
        "sub_technique_id": c.sub_technique_id, "tags": c.tags, "attackers": c.attackers,
    })
}

async fn matrix(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let f = match filter(&q) {
        Ok(f) => f,
        Err(why) => return bad(why),
    };
    match blocking(&state, move |r| r.matrix(&f)).await {
        Ok(m) => Json(json!({
            "techniques": m.techniques.iter().map(cell_json).collect::<Vec<_>>(),
            "sub_techniques": m.sub_techniques.iter().map(cell_json).collect::<Vec<_>>(),
            "tags": m.tags,
            "attackers": m.attackers,
        }))
        .into_response(),
        Err(e) => e,
    }
}

fn tag_json(t: &TagRow, utc: bool) -> Value {
    json!({
        "uuid": t.uuid, "created_at": api_time(&t.created_at, utc),
        "source_kind": t.source_kind, "source_id": t.source_id,
        "attacker_uuid": t.attacker_uuid, "identity_uuid": t.identity_uuid,
        "session_id": t.session_id, "decky_id": t.decky_id,
        "tactic": t.tactic, "technique_id": t.technique_id, "sub_technique_id": t.sub_technique_id,
        "confidence": t.confidence, "rule_id": t.rule_id, "rule_version": t.rule_version,
        "rule_sha256": t.rule_sha256, "evidence": t.evidence,
    })
}

async fn tags(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (mut f, limit, offset) = match (
        filter(&q),
        number(&q, "limit", 25, MAX_PAGE),
        number(&q, "offset", 0, u32::MAX),
    ) {
        (Ok(f), Ok(l), Ok(o)) => (f, l, o),
        (Err(why), ..) | (_, Err(why), _) | (.., Err(why)) => return bad(why),
    };
    f.limit = Some(limit.max(1));
    f.offset = Some(offset);
    let utc = state.opts.utc;
    match blocking(&state, move |r| Ok((r.count_tags(&f)?, r.tags(&f)?))).await {
        Ok((total, rows)) => Json(json!({
            "total": total,
            "offset": offset,
            "tags": rows.iter().map(|t| tag_json(t, utc)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => e,
    }
}

async fn attacker(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let f = match filter(&q) {
        Ok(f) => f,
        Err(why) => return bad(why),
    };
    let utc = state.opts.utc;
    let id = uuid.clone();
    match blocking(&state, move |r| r.timeline(&id, &f.window)).await {
        Ok(rows) => Json(json!({
            "attacker_uuid": uuid,
            "techniques": rows.iter().map(|t| json!({
                "tactic": t.tactic, "technique_id": t.technique_id,
                "sub_technique_id": t.sub_technique_id, "tags": t.tags,
                "first_seen": api_time(&t.first_seen, utc), "last_seen": api_time(&t.last_seen, utc),
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => e,
    }
}

async fn rule_text(State(state): State<Arc<AppState>>, Path(sha): Path<String>) -> Response {
    let key = sha.clone();
    match blocking(&state, move |r| r.rule_text(&key)).await {
        Ok(Some(t)) => Json(json!(t)).into_response(),
        Ok(None) => detail(
            StatusCode::NOT_FOUND,
            format!(
                "no stored rule version has SHA-256 {}",
                crate::text::line(&sha)
            ),
        ),
        Err(e) => e,
    }
}

async fn rules(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let f = match filter(&q) {
        Ok(f) => f,
        Err(why) => return bad(why),
    };
    let utc = state.opts.utc;
    let st = state.clone();
    let done = blocking(&state, move |r| {
        let conn = r.conn();
        let sql = |e| QueryError::Sqlite {
            path: r.path().to_path_buf(),
            source: e,
        };
        let firings = r.firings(&f.window)?;
        // A DECNET database that no ttp process has written to has no rule
        // log: its rules are then listed without one.
        let logged = r.has_table("ttp_rule_event")?;
        let listed = if logged {
            crate::catalog::list_rules(conn).map_err(sql)?
        } else {
            // No rule log (DECNET's database that no ttp process wrote
            // to): the catalogue `GET /ttp/rules` lists, without errors.
            super::rules::catalogue(&st, conn)
                .map_err(QueryError::Catalogue)?
                .into_iter()
                .map(|e| crate::catalog::RuleRow {
                    rule_id: e.rule_id,
                    rule_version: e.rule_version,
                    source_path: e.source_path,
                    state: "enabled".into(),
                    confidence_max: None,
                    expires_at: None,
                    last_error: None,
                })
                .collect()
        };
        let states = if r.has_table("ttp_rule_state")? {
            crate::catalog::load_states(conn).map_err(sql)?
        } else {
            Vec::new()
        };
        let audit = if logged {
            let mut stmt = conn
                .prepare(
                    "SELECT at, rule_id, action, path, detail FROM ttp_rule_event \
                     ORDER BY id DESC LIMIT 100",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok(json!({
                        "at": api_time(&row.get::<_, String>(0)?, utc),
                        "rule_id": row.get::<_, Option<String>>(1)?,
                        "action": row.get::<_, String>(2)?,
                        "path": row.get::<_, Option<String>>(3)?,
                        "detail": row.get::<_, Option<String>>(4)?,
                    }))
                })
                .map_err(sql)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql)?
        } else {
            Vec::new()
        };
        Ok((firings, listed, states, audit, logged))
    })
    .await;
    let (firings, listed, states, audit, logged) = match done {
        Ok(v) => v,
        Err(e) => return e,
    };
    let now = crate::state::now_unix();
    let mut rows: Vec<Value> = listed
        .iter()
        .map(|r| {
            let fired = firings.iter().find(|f| f.rule_id == r.rule_id);
            let st = states
                .iter()
                .find(|s| s.rule_id == r.rule_id && !r.rule_id.is_empty() && !s.expired(now));
            json!({
                "rule_id": r.rule_id, "rule_version": r.rule_version, "source_path": r.source_path,
                "state": if r.state == "broken" { "broken" } else { st.map_or("enabled", |s| s.state.as_str()) },
                "confidence_max": st.and_then(|s| s.confidence_max),
                "expires_at": st.and_then(|s| s.expires_at).map(|e| api_time(&crate::timefmt::format_unix(e), utc)),
                "reason": st.and_then(|s| s.reason.clone()),
                "set_by": st.and_then(|s| s.set_by.clone()),
                "last_error": r.last_error,
                "tags": fired.map_or(0, |f| f.tags),
                "last_fired": fired.map(|f| api_time(&f.last, utc)),
            })
        })
        .collect();
    // Rules that fired but are not in the catalogue (tags from another
    // rule set): listed so that their counts are not lost.
    for f in &firings {
        if !listed.iter().any(|r| r.rule_id == f.rule_id) {
            rows.push(json!({
                "rule_id": f.rule_id, "rule_version": null, "source_path": null,
                "state": "not loaded", "confidence_max": null, "expires_at": null, "reason": null,
                "set_by": null, "last_error": null, "tags": f.tags,
                "last_fired": api_time(&f.last, utc),
            }));
        }
    }
    Json(json!({"rules": rows, "audit": audit, "rule_log": logged})).into_response()
}
