//! The watchdog's HTTP side: the status page at `/`, the same as JSON at
//! `/api/v1/status`, this watchdog's view for its peers at `/api/v1/view`,
//! the canary target, `/healthz` and `/metrics`.
//!
//! The page and its JSON are served as the last round rendered them
//! ([`Published`]): a request reads no state and renders nothing, so however
//! many there are they cost the watchdog no more than one render a round.

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::canary::{CANARY_HEADER, Canary};
use crate::metrics::{Metrics, ReasonLabels};
use crate::model::{View, now_ms};
use crate::page::Published;
use crate::peer_secret::{NONCE_HEADER, PeerSecret, SIGNATURE_HEADER, is_nonce};
use crate::state;

pub struct Shared {
    pub name: String,
    pub state: state::State,
    pub view: RwLock<View>,
    pub canary: Canary,
    pub metrics: Metrics,
    /// The status page and its JSON as the last round rendered them.
    pub page: Published,
    /// Signs the view for peers that send a nonce.
    pub peer_secret: Option<PeerSecret>,
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/v1/status", get(status))
        .route("/api/v1/view", get(view))
        .route("/canary/{watchdog}/{location}/{generation}", get(canary))
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        // The page is half a megabyte at 50 components; gzip makes it ~1/10
        // for phones on a bad link, which is when people look at it.
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(shared)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": code, "message": message}))).into_response()
}

/// Before any render succeeded (the state could not be read at start).
fn not_rendered() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the status page has not been rendered yet")
}

async fn page(State(shared): State<Arc<Shared>>) -> Response {
    match shared.page.current() {
        Some(rendered) => Html(rendered.html.clone()).into_response(),
        None => not_rendered(),
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    match shared.page.current() {
        Some(rendered) => ([(header::CONTENT_TYPE, "application/json")], rendered.json.clone()).into_response(),
        None => not_rendered(),
    }
}

/// The view; signed for the asker's nonce when this watchdog has a peer
/// secret and the asker sent one (a person or a test reading it sends none).
async fn view(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let body = serde_json::to_vec(&*shared.view.read().expect("view lock")).expect("a view serializes");
    let nonce = headers.get(NONCE_HEADER).map(|v| v.to_str().unwrap_or_default());
    let signature = match (nonce, &shared.peer_secret) {
        (Some(nonce), _) if !is_nonce(nonce) => {
            return error(StatusCode::BAD_REQUEST, "bad_nonce", &format!("{NONCE_HEADER} must be 32 hex digits"));
        }
        (Some(nonce), Some(secret)) => Some(secret.sign(nonce, &body)),
        _ => None,
    };
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(signature) = signature {
        response.headers_mut().insert(SIGNATURE_HEADER, signature.parse().expect("hex is a header value"));
    }
    response
}

async fn canary(
    State(shared): State<Arc<Shared>>,
    // The generation in the path is for people reading logs; the nonce
    // header says which generation a probe carries.
    Path((watchdog, location, _generation)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> (StatusCode, &'static str) {
    if watchdog != shared.name {
        return (StatusCode::NOT_FOUND, "not this watchdog's canary\n");
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    // A confirmation retest from another location is not this location's probe.
    if header("x-tocsin-location").is_some_and(|l| l != location) {
        return (StatusCode::OK, "canary ok\n");
    }
    let recorded = shared.canary.record_hit(
        &location,
        &header(CANARY_HEADER).unwrap_or_default(),
        now_ms(),
        header("x-tocsin-node").unwrap_or_else(|| "unknown".into()),
        header("x-tocsin-slot").and_then(|s| s.parse().ok()),
    );
    if let Err(refused) = recorded {
        shared.metrics.canary_hits_refused.get_or_create(&ReasonLabels { reason: refused.reason() }).inc();
        tracing::debug!(location = %location, reason = refused.reason(), "canary hit refused");
    }
    // A refused hit is answered as usual: it may be a real probe still
    // running an older definition (or one from before this watchdog
    // started), whose check is not failing but late, which the watchdog
    // judges itself; a failing answer would open an incident on the
    // platform for it.
    (StatusCode::OK, "canary ok\n")
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], shared.metrics.encode())
}
