//! DECNET's attacker export routes (§3.9–§3.10): STIX 2.1 bundles and MISP
//! events of one attacker or of every attacker, as downloads. The content
//! is ours (`export::stix`, `export::misp`): deterministic, and the same
//! bytes `ttp export stix|misp` writes for the same selection.

use super::api::{blocking, py_repr};
use super::{detail, AppState};
use crate::export::{misp, stix, to_text, Producer};
use crate::query::{Actor, Window};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/attackers/export/stix", get(stix_fleet))
        .route("/attackers/{uuid}/export/stix", get(stix_attacker))
        .route("/attackers/export/misp", get(misp_fleet))
        .route("/attackers/{uuid}/export/misp", get(misp_attacker))
}

#[derive(Clone, Copy)]
enum Kind {
    Stix,
    Misp,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Stix => "stix",
            Kind::Misp => "misp",
        }
    }
}

fn prefix(decnet: bool) -> &'static str {
    if decnet {
        "decnet"
    } else {
        "ttp"
    }
}

fn download(file: String, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response()
}

async fn attacker(state: Arc<AppState>, uuid: String, kind: Kind) -> Response {
    let decnet = state.schema.is_decnet();
    let id = uuid.clone();
    let found = blocking(&state, move |r| r.actor(&id, &Window::default())).await;
    let actor: Actor = match found {
        Ok(Some(a)) => a,
        Ok(None) => {
            return detail(
                StatusCode::NOT_FOUND,
                format!("unknown attacker uuid: {}", py_repr(&uuid)),
            )
        }
        Err(e) => return e,
    };
    let producer = Producer::for_database(decnet);
    let body = match kind {
        Kind::Stix => to_text(&stix::bundle(&producer, std::slice::from_ref(&actor))),
        Kind::Misp => to_text(&misp::event(&producer, &actor)),
    };
    let short: String = uuid.chars().take(8).collect();
    download(
        format!("{}-attacker-{short}.{}.json", prefix(decnet), kind.suffix()),
        body,
    )
}

async fn fleet(state: Arc<AppState>, kind: Kind) -> Response {
    let decnet = state.schema.is_decnet();
    let actors = match blocking(&state, |r| r.actors(&Window::default())).await {
        Ok(a) => a,
        Err(e) => return e,
    };
    let producer = Producer::for_database(decnet);
    let body = match kind {
        Kind::Stix => to_text(&stix::bundle(&producer, &actors)),
        Kind::Misp => to_text(&misp::collection(&producer, &actors)),
    };
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    download(
        format!("{}-fleet-{stamp}.{}.json", prefix(decnet), kind.suffix()),
        body,
    )
}

async fn stix_attacker(State(state): State<Arc<AppState>>, Path(uuid): Path<String>) -> Response {
    attacker(state, uuid, Kind::Stix).await
}
async fn misp_attacker(State(state): State<Arc<AppState>>, Path(uuid): Path<String>) -> Response {
    attacker(state, uuid, Kind::Misp).await
}
async fn stix_fleet(State(state): State<Arc<AppState>>) -> Response {
    fleet(state, Kind::Stix).await
}
async fn misp_fleet(State(state): State<Arc<AppState>>) -> Response {
    fleet(state, Kind::Misp).await
}
