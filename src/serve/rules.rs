//! The rule catalogue and rule state routes.
//!
//! Fixes DECNET's Q26 and Q27, visibly: a state set here is stored in
//! `ttp_rule_state` (the table `ttp run` and `ttp worker` apply), with the
//! caller as `set_by` and the time as `set_at`; an unknown rule id is a 404;
//! a confidence ceiling outside [0, 1] is a 400; and the catalogue lists
//! every rule that loads, whatever other files are broken.

use super::api::py_repr;
use super::auth::User;
use super::{detail, internal, AppState};
use crate::query::api_time;
use crate::state::{RuleState, StateKind};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ttp/rules", get(list))
        .route("/ttp/rules/{rule_id}/state", post(set).delete(revert))
}

/// One catalogue entry: id, version, name, description, file.
pub(super) struct Entry {
    pub(super) rule_id: String,
    pub(super) rule_version: i64,
    name: String,
    description: String,
    pub(super) source_path: String,
}

/// The catalogue: the rules directory given to `ttp serve` (broken files
/// skipped and logged), else the stored catalogue that `ttp run` /
/// `ttp worker` keep.
pub(super) fn catalogue(
    state: &AppState,
    conn: &rusqlite::Connection,
) -> Result<Vec<Entry>, String> {
    let opts = crate::rule::parse::LoadOptions::default();
    let mut out = Vec::new();
    if let Some(dir) = &state.opts.rules {
        let loaded = crate::rule::load::load_dir(dir, opts)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        for f in &loaded.broken_files {
            tracing::warn!(
                "GET /ttp/rules: {} does not load; listed without it",
                f.display()
            );
        }
        for r in &loaded.rules {
            out.push(Entry {
                rule_id: r.rule_id.clone(),
                rule_version: r.rule_version,
                name: r.name.clone(),
                description: r.description.clone(),
                source_path: r.source.path.display().to_string(),
            });
        }
    } else {
        let mut stmt = conn
            .prepare("SELECT rule_id, rule_version, source_path, yaml_content FROM ttp_rule")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(|e| e.to_string())?;
        for row in rows {
            let (rule_id, rule_version, path, yaml) = row.map_err(|e| e.to_string())?;
            let (rule, _) =
                crate::rule::parse::parse_rule(std::path::Path::new(&path), &yaml, opts);
            out.push(Entry {
                rule_id,
                rule_version,
                name: rule.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
                description: rule.map(|r| r.description).unwrap_or_default(),
                source_path: path,
            });
        }
    }
    out.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
    out.dedup_by(|a, b| a.rule_id == b.rule_id);
    Ok(out)
}

fn state_json(rule_id: &str, s: Option<&RuleState>, utc: bool) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("rule_id".into(), json!(rule_id));
    m.insert(
        "state".into(),
        json!(s.map_or("enabled", |s| s.state.as_str())),
    );
    m.insert(
        "confidence_max".into(),
        json!(s.and_then(|s| s.confidence_max)),
    );
    m.insert(
        "expires_at".into(),
        json!(s
            .and_then(|s| s.expires_at)
            .map(|e| api_time(&crate::timefmt::format_unix(e), utc))),
    );
    m.insert("reason".into(), json!(s.and_then(|s| s.reason.clone())));
    m.insert("set_by".into(), json!(s.and_then(|s| s.set_by.clone())));
    m.insert("set_at".into(), json!(s.map(|s| api_time(&s.set_at, utc))));
    m
}

async fn list(State(state): State<Arc<AppState>>) -> Response {
    let st = state.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, String> {
        let conn = st.conn().map_err(|e| e.to_string())?;
        let entries = catalogue(&st, &conn)?;
        let now = crate::state::now_unix();
        let states = crate::catalog::load_states(&conn).unwrap_or_default();
        Ok(entries
            .into_iter()
            .map(|e| {
                let s = states
                    .iter()
                    .find(|s| s.rule_id == e.rule_id && !s.expired(now));
                let mut m = serde_json::Map::new();
                m.insert("rule_id".into(), json!(e.rule_id));
                m.insert("rule_version".into(), json!(e.rule_version));
                m.insert("name".into(), json!(e.name));
                m.insert("description".into(), json!(e.description));
                let mut st = state_json(&e.rule_id, s, st.opts.utc);
                st.remove("rule_id");
                m.extend(st);
                Value::Object(m)
            })
            .collect())
    })
    .await;
    match done {
        Ok(Ok(rows)) => Json(Value::Array(rows)).into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// A valid rule-state body.
struct StateBody {
    state: StateKind,
    confidence_max: Option<f64>,
    expires_at: Option<i64>,
    reason: Option<String>,
}

/// Why a body is refused (both 400).
enum BodyError {
    NotJson,
    Invalid(String),
}

impl BodyError {
    fn response(self) -> Response {
        match self {
            BodyError::NotJson => detail(StatusCode::BAD_REQUEST, "Body must be valid JSON"),
            BodyError::Invalid(why) => detail(
                StatusCode::BAD_REQUEST,
                format!("Invalid rule-state body: {why}"),
            ),
        }
    }
}

/// Checks a rule-state body; the error text says which field is wrong.
fn parse_body(body: &[u8], now: i64) -> Result<StateBody, BodyError> {
    let bad = BodyError::Invalid;
    let v: Value = serde_json::from_slice(body).map_err(|_| BodyError::NotJson)?;
    let Value::Object(m) = v else {
        return Err(bad("expected a JSON object".into()));
    };
    let state = match m.get("state") {
        Some(Value::String(s)) if s == "enabled" => StateKind::Enabled,
        Some(Value::String(s)) if s == "disabled" => StateKind::Disabled,
        Some(Value::String(s)) if s == "clipped" => StateKind::Clipped,
        None => {
            return Err(bad(
                "state is required ('enabled', 'disabled' or 'clipped')".into(),
            ))
        }
        Some(other) => {
            return Err(bad(format!(
                "state {other} should be 'enabled', 'disabled' or 'clipped'"
            )))
        }
    };
    let confidence_max = match m.get("confidence_max") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(c) if (0.0..=1.0).contains(&c) => Some(c),
            _ => return Err(bad(format!("confidence_max {n} is outside [0, 1]"))),
        },
        Some(other) => return Err(bad(format!("confidence_max {other} is not a number"))),
    };
    if state == StateKind::Clipped && confidence_max.is_none() {
        return Err(bad("a clipped rule needs confidence_max".into()));
    }
    let expires_at = match m.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let t = crate::query::parse_instant("expires_at", s, time::OffsetDateTime::now_utc())
                .map_err(|_| bad(format!("expires_at {s:?} is not a date-time")))?;
            let t = t.unix_timestamp();
            if t <= now {
                return Err(bad(format!("expires_at {s:?} is in the past")));
            }
            Some(t)
        }
        Some(other) => return Err(bad(format!("expires_at {other} is not a date-time"))),
    };
    let reason = match m.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(bad(format!("reason {other} is not a string"))),
    };
    Ok(StateBody {
        state,
        confidence_max,
        expires_at,
        reason,
    })
}

async fn store(state: Arc<AppState>, rule_id: String, s: RuleState) -> Response {
    let st = state.clone();
    let id = rule_id.clone();
    let known = tokio::task::spawn_blocking(move || -> Result<bool, String> {
        let conn = st.conn().map_err(|e| e.to_string())?;
        Ok(catalogue(&st, &conn)?.iter().any(|e| e.rule_id == id))
    })
    .await;
    match known {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            return detail(
                StatusCode::NOT_FOUND,
                format!("unknown rule_id: {}", py_repr(&rule_id)),
            )
        }
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    }
    let db = state.opts.db.clone();
    let row = s.clone();
    let written = tokio::task::spawn_blocking(move || -> Result<(), String> {
        // The store's own opening: our tables (the rule log) are added to a
        // DECNET database the first time, as `ttp worker` adds them.
        let conn = crate::store::open(&db, &crate::store::StoreOptions::default())
            .map_err(|e| e.to_string())?;
        crate::catalog::set_state(&conn, &row).map_err(|e| e.to_string())
    })
    .await;
    match written {
        Ok(Ok(())) => Json(Value::Object(state_json(
            &rule_id,
            Some(&s),
            state.opts.utc,
        )))
        .into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn set(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(rule_id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let now = crate::state::now_unix();
    let StateBody {
        state: kind,
        confidence_max,
        expires_at,
        reason,
    } = match parse_body(&body, now) {
        Ok(v) => v,
        Err(e) => return e.response(),
    };
    let s = RuleState {
        rule_id: rule_id.clone(),
        state: kind,
        confidence_max: if kind == StateKind::Clipped {
            confidence_max
        } else {
            None
        },
        expires_at,
        reason,
        set_by: Some(user.name),
        set_at: crate::timefmt::now(),
    };
    store(state, rule_id, s).await
}

async fn revert(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(rule_id): Path<String>,
) -> Response {
    let s = RuleState {
        rule_id: rule_id.clone(),
        state: StateKind::Enabled,
        confidence_max: None,
        expires_at: None,
        reason: None,
        set_by: Some(user.name),
        set_at: crate::timefmt::now(),
    };
    store(state, rule_id, s).await
}

/// The OpenAPI 3.1 document of the routes served.
pub(super) fn openapi_document() -> Value {
    let list = |schema: &str| json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{schema}")}});
    let ok = |desc: &str, schema: Value| json!({"description": desc, "content": {"application/json": {"schema": schema}}});
    let path_param = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
    let errors = json!({
        "401": {"description": "missing or invalid bearer token"},
        "403": {"description": "role not allowed"},
    });
    let get_op = |summary: &str, params: Vec<Value>, resp: Value| {
        let mut responses = errors.clone();
        responses["200"] = resp;
        json!({"get": {"summary": summary, "parameters": params, "responses": responses, "security": [{"bearer": []}]}})
    };
    let nullable = |t: &str| json!({"type": [t, "null"]});
    let rollup_props = json!({
        "technique_id": {"type": "string"}, "technique_name": nullable("string"),
        "sub_technique_id": nullable("string"), "sub_technique_name": nullable("string"),
        "tactic": {"type": "string"}, "count": {"type": "integer"},
        "first_seen": {"type": "string", "format": "date-time"}, "last_seen": {"type": "string", "format": "date-time"},
        "confidence_max": {"type": "number"}, "identity_count": {"type": "integer"}, "mitre_url": nullable("string"),
    });
    let state_body = json!({"type": "object", "required": ["state"], "properties": {
        "state": {"enum": ["enabled", "disabled", "clipped"]},
        "confidence_max": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "reason": nullable("string"),
    }});
    let mut paths = serde_json::Map::new();
    paths.insert(
        "/api/v1/ttp/techniques".into(),
        get_op(
            "Fleet rollup per technique",
            vec![],
            ok("rollup", list("Rollup")),
        ),
    );
    for (p, what) in [
        ("identity", "identity_uuid"),
        ("attacker", "attacker_uuid"),
        ("session", "session_id"),
        ("campaign", "campaign_uuid"),
    ] {
        paths.insert(
            format!("/api/v1/ttp/by-{p}/{{{what}}}"),
            get_op(
                &format!("Rollup of one {p} (unknown ids give [])"),
                vec![path_param(what)],
                ok("rollup", list("Rollup")),
            ),
        );
    }
    paths.insert(
        "/api/v1/ttp/tags/by-{scope}/{uuid}/{technique_id}".into(),
        get_op(
            "Stored tags of a technique in a scope, newest first",
            vec![
                json!({"name": "scope", "in": "path", "required": true, "schema": {"enum": ["identity", "attacker", "session"]}}),
                path_param("uuid"),
                path_param("technique_id"),
                json!({"name": "sub_technique_id", "in": "query", "schema": {"type": "string"}}),
                json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200}}),
            ],
            ok("tags", list("TagDetail")),
        ),
    );
    paths.insert(
        "/api/v1/ttp/techniques/{technique_id}/groups".into(),
        get_op(
            "ATT&CK groups using a technique (404: unknown technique)",
            vec![path_param("technique_id")],
            ok("groups", list("GroupRef")),
        ),
    );
    paths.insert(
        "/api/v1/ttp/rules".into(),
        get_op(
            "The rule catalogue with each rule's state",
            vec![],
            ok("rules", list("RuleCatalogueRow")),
        ),
    );
    paths.insert(
        "/api/v1/ttp/rules/{rule_id}/state".into(),
        json!({
            "post": {"summary": "Set a rule's state (admin); stored and applied by ttp run / ttp worker",
                     "parameters": [path_param("rule_id")],
                     "requestBody": {"required": true, "content": {"application/json": {"schema": state_body}}},
                     "responses": {"200": ok("state", json!({"$ref": "#/components/schemas/RuleState"})), "400": {"description": "invalid body"}, "404": {"description": "unknown rule"}},
                     "security": [{"bearer": []}]},
            "delete": {"summary": "Enable a rule again (admin)", "parameters": [path_param("rule_id")],
                       "responses": {"200": ok("state", json!({"$ref": "#/components/schemas/RuleState"})), "404": {"description": "unknown rule"}},
                       "security": [{"bearer": []}]},
        }),
    );
    paths.insert(
        "/api/v1/ttp/export/navigator".into(),
        get_op(
            "ATT&CK Navigator layer 4.5 of the fleet",
            vec![],
            ok("layer", json!({"type": "object"})),
        ),
    );
    paths.insert(
        "/api/v1/ttp/export/navigator/identity/{identity_uuid}".into(),
        get_op(
            "ATT&CK Navigator layer 4.5 of an identity",
            vec![path_param("identity_uuid")],
            ok("layer", json!({"type": "object"})),
        ),
    );
    paths.insert(
        "/api/v1/ttp/export/navigator/attacker/{attacker_uuid}".into(),
        get_op(
            "ATT&CK Navigator layer 4.5 of an attacker (ours; DECNET has none)",
            vec![path_param("attacker_uuid")],
            ok("layer", json!({"type": "object"})),
        ),
    );
    // The page's data routes (README: In a browser).
    let filters: Vec<Value> = [
        "since",
        "until",
        "min_confidence",
        "attacker",
        "identity",
        "session",
        "decky",
        "rule",
    ]
    .iter()
    .map(|n| json!({"name": n, "in": "query", "required": false, "schema": {"type": "string"}}))
    .collect();
    let page = [
        (
            "/api/v1/ui/attack",
            "The vendored ATT&CK table: tactics in matrix order, techniques",
            vec![],
        ),
        (
            "/api/v1/ui/matrix",
            "Tags and distinct attackers per (tactic, technique) and per sub-technique",
            filters.clone(),
        ),
        (
            "/api/v1/ui/tags",
            "A cell's tags, newest first, paged (also technique, tactic, offset, limit ≤ 200)",
            filters.clone(),
        ),
        (
            "/api/v1/ui/attacker/{uuid}",
            "One attacker's techniques with first and last seen",
            vec![path_param("uuid")],
        ),
        (
            "/api/v1/ui/rules",
            "Every rule: state, tags in the time range, last load error; the audit log",
            filters,
        ),
        (
            "/api/v1/ui/rule-text/{sha256}",
            "A stored rule version's text (404: unknown)",
            vec![path_param("sha256")],
        ),
    ];
    for (path, summary, params) in page {
        paths.insert(
            path.into(),
            get_op(summary, params, ok("page data", json!({"type": "object"}))),
        );
    }
    paths.insert(
        "/api/v1/ui/events".into(),
        get_op(
            "Server-Sent Events: `change` with {tags, rule_events} whenever they move",
            vec![],
            json!({"description": "an event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}),
        ),
    );
    for (kind, what) in [("stix", "STIX 2.1 bundle"), ("misp", "MISP event")] {
        paths.insert(
            format!("/api/v1/attackers/{{uuid}}/export/{kind}"),
            get_op(
                &format!("{what} of one attacker, as a download (404: unknown attacker)"),
                vec![path_param("uuid")],
                ok(kind, json!({"type": "object"})),
            ),
        );
        paths.insert(
            format!("/api/v1/attackers/export/{kind}"),
            get_op(
                &format!("{what} of every attacker, as a download"),
                vec![],
                ok(kind, json!({"type": "object"})),
            ),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "ttp-engine TTP API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "DECNET's TTP REST API, served by ttp-engine (see README: deviations)."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Rollup": {"type": "object", "properties": rollup_props},
                "TagDetail": {"type": "object"},
                "GroupRef": {"type": "object", "properties": {"group_id": {"type": "string"}, "name": {"type": "string"}, "aliases": {"type": "array", "items": {"type": "string"}}, "mitre_url": nullable("string")}},
                "RuleCatalogueRow": {"type": "object"},
                "RuleState": {"type": "object"},
            }
        }
    })
}
