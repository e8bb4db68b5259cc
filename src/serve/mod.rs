//! `ttp serve`: DECNET's TTP REST API (`decnet-worker-and-api.md` §3) on
//! axum, over our database or DECNET's, plus `/healthz`, `/metrics`, an
//! OpenAPI document and the analysts' page at `/` ([`ui`]).
//!
//! Requests never touch the writer: each takes a read-only connection from
//! a small pool (WAL) inside `spawn_blocking`, so the async threads never
//! wait on SQLite. Rule-state changes (admin) go through a short write
//! transaction on a connection of their own; `ttp run` and `ttp worker`
//! pick them up from `ttp_rule_state` within their state poll.

mod api;
pub mod auth;
mod exports;
mod metrics;
mod rules;
mod ui;

use crate::query::{QueryError, Reader, Schema};
use crate::store::StoreOptions;
use auth::{Auth, Denied, Role, User};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use rusqlite::Connection;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub db: PathBuf,
    pub listen: SocketAddr,
    /// Bearer tokens (our own database).
    pub tokens: Option<PathBuf>,
    /// DECNET's JWT secret (DECNET's database).
    pub jwt_secret: Option<String>,
    /// Rules directory for `GET /ttp/rules` (else the stored catalogue).
    pub rules: Option<PathBuf>,
    /// Times with a trailing `Z` (DECNET's dashboard wants them naive).
    pub utc: bool,
    /// DECNET's developer mode: FastAPI's validation error lists.
    pub developer: bool,
    pub request_timeout: Duration,
    /// The counters of the `ttp run` / `ttp worker` this server runs in.
    pub live: Option<Arc<crate::live::Live>>,
}

impl ServeOptions {
    /// DECNET's defaults for everything but the database and address.
    pub fn new(db: PathBuf, listen: SocketAddr) -> ServeOptions {
        ServeOptions {
            db,
            listen,
            tokens: None,
            jwt_secret: None,
            rules: None,
            utc: false,
            developer: false,
            request_timeout: Duration::from_secs(30),
            live: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{0}")]
    Tokens(String),
    #[error("{db} is DECNET's database: its dashboard tokens are checked with DECNET_JWT_SECRET, which is not set")]
    NoSecret { db: PathBuf },
    #[error("refusing to listen on {addr} without authentication: give --tokens FILE, or listen on 127.0.0.1 / ::1")]
    OpenToNetwork { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server stopped: {0}")]
    Io(#[from] std::io::Error),
}

/// Shared by every request.
pub struct AppState {
    pub(crate) opts: ServeOptions,
    pub(crate) auth: Auth,
    pool: Mutex<Vec<Connection>>,
    /// Queries running at once: more would only share the same cores
    /// (and open connections beyond the pool); the others wait their turn.
    pub(crate) queries: tokio::sync::Semaphore,
    /// Probed at start-up, not per request.
    schema: Schema,
    pub(crate) metrics: metrics::Metrics,
    /// Live-update streams open now (the page's `/api/v1/ui/events`).
    live_streams: std::sync::atomic::AtomicUsize,
}

/// A pooled read-only connection, returned on drop.
pub(crate) struct Pooled<'a> {
    conn: Option<Connection>,
    state: &'a AppState,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Always Some until drop.
        self.conn
            .as_ref()
            .expect("pooled connection present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let (Some(c), Ok(mut pool)) = (self.conn.take(), self.state.pool.lock()) {
            if pool.len() < max_queries() {
                pool.push(c);
            }
        }
    }
}

/// Twice the cores, at least 4 and at most 16: SQLite queries are CPU
/// work, and a reader connection per permit stays pooled.
fn max_queries() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 2).clamp(4, 16)
}

impl AppState {
    pub fn new(opts: ServeOptions) -> Result<AppState, ServeError> {
        let reader = Reader::open(&opts.db)?;
        let decnet = reader.is_decnet()
            && reader
                .conn()
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'users'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or(0)
                > 0;
        let auth = if let Some(path) = &opts.tokens {
            Auth::Tokens(auth::read_tokens(path).map_err(ServeError::Tokens)?)
        } else if decnet {
            match &opts.jwt_secret {
                Some(s) if !s.is_empty() => Auth::Decnet {
                    secret: s.as_bytes().to_vec(),
                },
                _ => {
                    return Err(ServeError::NoSecret {
                        db: opts.db.clone(),
                    })
                }
            }
        } else if opts.listen.ip().is_loopback() {
            Auth::Open
        } else {
            return Err(ServeError::OpenToNetwork { addr: opts.listen });
        };
        Ok(AppState {
            opts,
            auth,
            pool: Mutex::new(Vec::new()),
            queries: tokio::sync::Semaphore::new(max_queries()),
            schema: reader.schema(),
            metrics: metrics::Metrics::default(),
            live_streams: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// A read-only connection from the pool (or a new one).
    pub(crate) fn conn(&self) -> Result<Pooled<'_>, QueryError> {
        let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
        let conn = match pooled {
            Some(c) => c,
            None => crate::store::read_connection(&self.opts.db, &StoreOptions::default())
                .map_err(|e| QueryError::Sqlite {
                    path: self.opts.db.clone(),
                    source: e,
                })?,
        };
        Ok(Pooled {
            conn: Some(conn),
            state: self,
        })
    }

    /// A [`Reader`] over a pooled connection, for one blocking job.
    pub(crate) fn with_reader<T>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        let mut pooled = self.conn()?;
        let conn = pooled
            .conn
            .take()
            .expect("pooled connection present until drop");
        let reader = Reader::with_schema(conn, &self.opts.db, self.schema);
        let out = f(&reader);
        pooled.conn = Some(reader.into_connection());
        out
    }
}

/// A JSON error body `{"detail": …}`.
pub(crate) fn detail(status: StatusCode, text: impl Into<String>) -> Response {
    (status, axum::Json(json!({"detail": text.into()}))).into_response()
}

/// DECNET's 500: a fresh error id, the cause logged (not sent).
pub(crate) fn internal(e: impl std::fmt::Display) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(error_id = %id, "request failed: {e}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({"detail": "Internal Server Error", "error_id": id})),
    )
        .into_response()
}

/// Authentication for every `/api/v1` route that matched, before its
/// parameters are looked at (as DECNET does). Rule-state changes need
/// `admin`, everything else `viewer`.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let need = if matches!(*req.method(), Method::POST | Method::DELETE) {
        Role::Admin
    } else {
        Role::Viewer
    };
    let st = state.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let now = crate::state::now_unix();
        match &st.auth {
            Auth::Decnet { .. } => {
                let conn = st.conn().ok();
                st.auth.check(header.as_deref(), conn.as_deref(), now)
            }
            other => other.check(header.as_deref(), None, now),
        }
    })
    .await;
    let user: User = match checked {
        Ok(Ok(u)) => u,
        Ok(Err(Denied::MustChangePassword)) => {
            return detail(
                StatusCode::FORBIDDEN,
                "Password change required before accessing this resource",
            )
        }
        Ok(Err(Denied::Credentials)) => {
            let mut r = detail(StatusCode::UNAUTHORIZED, "Could not validate credentials");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        Err(e) => return internal(e),
    };
    if user.role < need {
        return detail(StatusCode::FORBIDDEN, "Insufficient permissions");
    }
    req.extensions_mut().insert(user);
    next.run(req).await
}

/// DECNET's content-type guard: a POST/PUT/PATCH under `/api/` with a
/// non-empty body must say `application/json`.
async fn json_bodies_only(req: Request, next: Next) -> Response {
    let guarded = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
        && req.uri().path().starts_with("/api/");
    if !guarded {
        return next.run(req).await;
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(_) => return detail(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
    };
    if !bytes.is_empty() && !json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Unsupported Media Type \u{2014} Content-Type must be application/json",
        )
            .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not Found")
}

/// Every route, with its middleware.
pub fn router(state: Arc<AppState>) -> Router {
    use tower_http::timeout::TimeoutLayer;
    let api = api::routes()
        .merge(rules::routes())
        .merge(exports::routes())
        .merge(ui::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    Router::new()
        .nest("/api/v1", api)
        .route("/api/v1/openapi.json", axum::routing::get(api::openapi))
        .route("/healthz", axum::routing::get(metrics::healthz))
        .route("/metrics", axum::routing::get(metrics::prometheus))
        .merge(ui::pages())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(json_bodies_only))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                    Method::OPTIONS,
                ])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::HeaderName::from_static("last-event-id"),
                ]),
        )
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.opts.request_timeout,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// A server bound to its address, not yet serving: binding first lets a
/// command fail on a busy port before it starts anything else.
pub struct Server {
    state: Arc<AppState>,
    listener: std::net::TcpListener,
}

impl Server {
    pub fn bind(opts: ServeOptions) -> Result<Server, ServeError> {
        let state = Arc::new(AppState::new(opts)?);
        let addr = state.opts.listen;
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Server { state, listener })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves. Blocks the calling thread on a
    /// runtime of its own (two worker threads).
    pub fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server { state, listener } = self;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ttp-http")
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let local = listener.local_addr()?;
            match &state.auth {
                Auth::Open => tracing::warn!(
                    "serving {} on http://{local}/ (page) and /api/v1 WITHOUT authentication (loopback only; --tokens FILE to require tokens)",
                    state.opts.db.display()
                ),
                Auth::Tokens(t) => tracing::info!(
                    "serving {} on http://{local}/ (page) and /api/v1 ({} bearer tokens)",
                    state.opts.db.display(),
                    t.len()
                ),
                Auth::Decnet { .. } => tracing::info!(
                    "serving DECNET's database {} on http://{local}/ (page) and /api/v1 (DECNET dashboard tokens)",
                    state.opts.db.display()
                ),
            }
            axum::serve(listener, router(state))
                .with_graceful_shutdown(shutdown)
                .await?;
            Ok(())
        })
    }
}

/// Binds, then serves until `shutdown` resolves.
pub fn serve(
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Server::bind(opts)?.run(shutdown)
}
