//! Live updates for the page: `GET /api/v1/ui/events` is a stream of
//! Server-Sent Events. Each stream keeps one read-only connection and asks
//! SQLite's `PRAGMA data_version` twice a second (it moves when any other
//! connection commits: the writer of `ttp run`, `ttp worker` or another
//! process); when it moved, the tag count and the rule log's newest id are
//! read, and a `change` event carries them if either changed. The page
//! then fetches what it shows again. A comment every 15 s keeps proxies
//! from closing an idle stream.

use super::super::AppState;
use crate::query::{Marker, Reader};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often a stream looks for commits.
const POLL: Duration = Duration::from_millis(500);

/// Streams open at once, at most (each holds a connection).
pub const MAX_STREAMS: usize = 64;

/// One stream's state between polls.
struct Watch {
    state: Arc<AppState>,
    conn: Option<rusqlite::Connection>,
    version: Option<i64>,
    sent: Option<Marker>,
    first: bool,
    _slot: Slot,
}

/// A stream's place among [`MAX_STREAMS`], given back when it ends.
struct Slot(Arc<AppState>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.live_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One poll on the blocking pool: the marker if the database changed.
fn poll(
    state: &AppState,
    conn: Option<rusqlite::Connection>,
    version: Option<i64>,
) -> (Option<rusqlite::Connection>, Option<i64>, Option<Marker>) {
    let conn = match conn {
        Some(c) => c,
        None => match crate::store::read_connection(&state.opts.db, &Default::default()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("live updates: cannot open {}: {e}", state.opts.db.display());
                return (None, version, None);
            }
        },
    };
    let reader = Reader::with_schema(conn, &state.opts.db, state.schema);
    let now = reader.data_version().ok();
    let marker = if now.is_some() && now != version {
        reader.marker().ok()
    } else {
        None
    };
    (Some(reader.into_connection()), now.or(version), marker)
}

pub(super) async fn events(State(state): State<Arc<AppState>>) -> Response {
    if state.live_streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        state.live_streams.fetch_sub(1, Ordering::Relaxed);
        return super::super::detail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many live streams open (at most {MAX_STREAMS})"),
        );
    }
    let watch = Watch {
        state: state.clone(),
        conn: None,
        version: None,
        sent: None,
        first: true,
        _slot: Slot(state),
    };
    let stream = futures_util::stream::unfold(watch, |mut w| async move {
        loop {
            if !w.first {
                tokio::time::sleep(POLL).await;
            }
            w.first = false;
            let (st, conn, version) = (w.state.clone(), w.conn.take(), w.version);
            let Ok((conn, version, marker)) =
                tokio::task::spawn_blocking(move || poll(&st, conn, version)).await
            else {
                return None;
            };
            w.conn = conn;
            w.version = version;
            if let Some(m) = marker.filter(|m| Some(*m) != w.sent) {
                w.sent = Some(m);
                let event = Event::default()
                    .event("change")
                    .json_data(m)
                    .unwrap_or_else(|_| Event::default().event("change"));
                return Some((Ok::<Event, Infallible>(event), w));
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
