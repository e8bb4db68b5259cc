//! `/healthz` and `/metrics` (Prometheus text): requests and their
//! latencies per route, plus what the database holds (tags, rules, rule
//! load errors, reloads).

use super::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Latency buckets, seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Route {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub(crate) struct Metrics {
    routes: Mutex<BTreeMap<String, Route>>,
}

impl Metrics {
    fn record(&self, route: &str, status: u16, secs: f64) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let r = routes.entry(route.to_string()).or_default();
        *r.by_status.entry(status).or_default() += 1;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                r.buckets[i] += 1;
            }
        }
        r.count += 1;
        r.sum += secs;
    }
}

/// Times every request, labelled by its route pattern (not its path, so
/// ids do not make new series).
pub(crate) async fn track(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    state.metrics.record(
        &format!("{method} {route}"),
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let st = state.clone();
    let ok = tokio::task::spawn_blocking(move || {
        st.conn().ok().is_some_and(|c| {
            c.query_row("SELECT count(*) FROM ttp_tag WHERE 0", [], |r| {
                r.get::<_, i64>(0)
            })
            .is_ok()
        })
    })
    .await
    .unwrap_or(false);
    if ok {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "unavailable", "detail": "the database cannot be read"})),
        )
            .into_response()
    }
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) async fn prometheus(State(state): State<Arc<AppState>>) -> Response {
    let st = state.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let conn = st.conn().ok()?;
        let one = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap_or(0);
        Some([
            (
                "ttp_tags_stored",
                "Tags in the database.",
                // Our own file keeps the fleet totals: summing them reads a
                // few dozen rows where a count reads every tag.
                if one("SELECT count(*) FROM sqlite_master WHERE name = 'ttp_technique_totals'") > 0
                {
                    one("SELECT COALESCE(sum(count), 0) FROM ttp_technique_totals")
                } else {
                    one("SELECT count(*) FROM ttp_tag")
                },
            ),
            (
                "ttp_rules_stored",
                "Rules in the stored catalogue.",
                one("SELECT count(*) FROM ttp_rule"),
            ),
            (
                "ttp_rule_reloads_total",
                "Rule loads and updates recorded by ttp run / ttp worker.",
                one("SELECT count(*) FROM ttp_rule_event WHERE action IN ('loaded','updated')"),
            ),
            (
                "ttp_rule_errors_total",
                "Rule files rejected by ttp run / ttp worker.",
                one("SELECT count(*) FROM ttp_rule_event WHERE action = 'rejected'"),
            ),
        ])
    })
    .await
    .ok()
    .flatten();
    let mut out = String::new();
    if let Some(stored) = stored {
        for (name, help, v) in stored {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
    }
    if let Some(live) = &state.opts.live {
        out.push_str(&live.render());
    }
    let _ = writeln!(
        out,
        "# HELP ttp_http_requests_total HTTP requests by route and status."
    );
    let _ = writeln!(out, "# TYPE ttp_http_requests_total counter");
    let routes = state.metrics.routes.lock().map(|r| {
        r.iter()
            .map(|(k, v)| (k.clone(), v.by_status.clone(), v.buckets, v.count, v.sum))
            .collect::<Vec<_>>()
    });
    let routes = routes.unwrap_or_default();
    for (route, statuses, _, _, _) in &routes {
        for (status, n) in statuses {
            let _ = writeln!(
                out,
                "ttp_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                label(route)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP ttp_http_request_duration_seconds HTTP request latency by route."
    );
    let _ = writeln!(out, "# TYPE ttp_http_request_duration_seconds histogram");
    for (route, _, buckets, count, sum) in &routes {
        let l = label(route);
        for (b, n) in BUCKETS.iter().zip(buckets) {
            let _ = writeln!(
                out,
                "ttp_http_request_duration_seconds_bucket{{route=\"{l}\",le=\"{b}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "ttp_http_request_duration_seconds_bucket{{route=\"{l}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "ttp_http_request_duration_seconds_sum{{route=\"{l}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "ttp_http_request_duration_seconds_count{{route=\"{l}\"}} {count}"
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
