//! The TTP read routes: rollups, tag details, groups, Navigator layers.

use super::{detail, internal, AppState};
use crate::query::{json as shapes, QueryError, Reader, Scope, TagFilter, Window};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ttp/techniques", get(techniques))
        .route("/ttp/by-identity/{id}", get(by_identity))
        .route("/ttp/by-attacker/{id}", get(by_attacker))
        .route("/ttp/by-session/{id}", get(by_session))
        .route("/ttp/by-campaign/{id}", get(by_campaign))
        .route("/ttp/tags/{scope}/{id}/{technique_id}", get(tag_details))
        .route("/ttp/techniques/{technique_id}/groups", get(groups))
        .route("/ttp/export/navigator", get(navigator_fleet))
        .route(
            "/ttp/export/navigator/identity/{id}",
            get(navigator_identity),
        )
        .route(
            "/ttp/export/navigator/attacker/{id}",
            get(navigator_attacker),
        )
}

/// Runs a query on a pooled connection off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&Reader) -> Result<T, QueryError> + Send + 'static,
) -> Result<T, Response> {
    let st = state.clone();
    // Waiting for a permit is a request's only queue (FIFO, fair).
    let Ok(_permit) = state.queries.acquire().await else {
        return Err(internal("the query limiter is closed"));
    };
    match tokio::task::spawn_blocking(move || st.with_reader(f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(internal(e)),
        Err(e) => Err(internal(e)),
    }
}

/// An encoded `/` inside a segment: DECNET's router decodes before it
/// matches, so such a path matches no route.
fn has_slash(parts: &[&str]) -> bool {
    parts.iter().any(|p| p.contains('/'))
}

async fn rollup(state: Arc<AppState>, scope: Scope) -> Response {
    if has_slash(&[scope.id().unwrap_or("")]) {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    }
    let utc = state.opts.utc;
    let s = scope.clone();
    match blocking(&state, move |r| r.rollup(&s, &Window::default())).await {
        Ok(rows) => Json(shapes::rollup(&scope, &rows, utc)).into_response(),
        Err(e) => e,
    }
}

async fn techniques(State(state): State<Arc<AppState>>) -> Response {
    rollup(state, Scope::Fleet).await
}
async fn by_identity(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    rollup(state, Scope::Identity(id)).await
}
async fn by_attacker(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    rollup(state, Scope::Attacker(id)).await
}
async fn by_session(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    rollup(state, Scope::Session(id)).await
}
async fn by_campaign(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    rollup(state, Scope::Campaign(id)).await
}

/// The query string as (name, value) pairs, decoded.
fn query_pairs(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// DECNET's 422: terse, or FastAPI's error list in developer mode.
fn invalid(state: &AppState, errors: Vec<Value>) -> Response {
    if state.opts.developer {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": errors})),
        )
            .into_response()
    } else {
        detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request parameters",
        )
    }
}

async fn tag_details(
    State(state): State<Arc<AppState>>,
    Path((scope, id, technique_id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    if has_slash(&[&scope, &id, &technique_id]) {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    }
    let mut errors = Vec::new();
    let kind = scope.strip_prefix("by-").unwrap_or("");
    if !matches!(kind, "identity" | "attacker" | "session") {
        let input = scope.strip_prefix("by-").unwrap_or(&scope);
        errors.push(json!({
            "type": "literal_error", "loc": ["path", "scope"],
            "msg": "Input should be 'identity', 'attacker' or 'session'",
            "input": input, "ctx": {"expected": "'identity', 'attacker' or 'session'"},
        }));
    }
    let pairs = query_pairs(&raw);
    let mut limit: i64 = 200;
    if let Some((_, v)) = pairs.iter().rev().find(|(k, _)| k == "limit") {
        match v.trim().parse::<i64>() {
            Ok(n) => limit = n,
            Err(_) => errors.push(json!({
                "type": "int_parsing", "loc": ["query", "limit"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": v,
            })),
        }
    }
    if !errors.is_empty() {
        return invalid(&state, errors);
    }
    if !(1..=1000).contains(&limit) {
        return detail(StatusCode::BAD_REQUEST, "limit must be in [1, 1000]");
    }
    let sub = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "sub_technique_id")
        .map(|(_, v)| v.clone());
    let mut filter = TagFilter {
        technique: Some(technique_id),
        sub_technique: sub,
        limit: Some(limit as u32),
        ..TagFilter::default()
    };
    match kind {
        "identity" => filter.identity = Some(id),
        "attacker" => filter.attacker = Some(id),
        _ => filter.session = Some(id),
    }
    let utc = state.opts.utc;
    match blocking(&state, move |r| r.tags(&filter)).await {
        Ok(rows) => Json(Value::Array(
            rows.iter().map(|t| shapes::tag_detail(t, utc)).collect(),
        ))
        .into_response(),
        Err(e) => e,
    }
}

/// Python's `repr` of a string, for DECNET's error texts.
pub(super) fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

async fn groups(State(_state): State<Arc<AppState>>, Path(technique_id): Path<String>) -> Response {
    let attack = crate::attack::Attack::embedded();
    match attack.groups_using(&technique_id) {
        None => detail(
            StatusCode::NOT_FOUND,
            format!("unknown technique_id: {}", py_repr(&technique_id)),
        ),
        Some(groups) => Json(Value::Array(
            groups
                .into_iter()
                .map(|g| json!({"group_id": g.id, "name": g.name, "aliases": g.aliases, "mitre_url": g.url}))
                .collect(),
        ))
        .into_response(),
    }
}

async fn navigator(state: Arc<AppState>, scope: Scope) -> Response {
    let s = scope.clone();
    match blocking(&state, move |r| r.rollup(&s, &Window::default())).await {
        Ok(rows) => Json(crate::export::navigator::layer(
            &scope,
            &Window::default(),
            &rows,
        ))
        .into_response(),
        Err(e) => e,
    }
}

async fn navigator_fleet(State(state): State<Arc<AppState>>) -> Response {
    navigator(state, Scope::Fleet).await
}
async fn navigator_identity(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    if has_slash(&[&id]) {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    }
    navigator(state, Scope::Identity(id)).await
}

/// One attacker's layer (ours: DECNET has identity and fleet layers only).
async fn navigator_attacker(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    if has_slash(&[&id]) {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    }
    navigator(state, Scope::Attacker(id)).await
}

/// The OpenAPI 3.1 document of the routes served here.
pub(super) async fn openapi() -> Response {
    Json(super::rules::openapi_document()).into_response()
}
