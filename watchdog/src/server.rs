//! The watchdog's HTTP side: the status page at `/`, the same as JSON at
//! `/api/v1/status`, this watchdog's view for its peers at `/api/v1/view`,
//! the canary target, `/healthz` and `/metrics`.

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::canary::{Canary, Hit};
use crate::metrics::Metrics;
use crate::model::{View, now_ms};
use crate::state;

pub struct Shared {
    pub name: String,
    pub state: state::State,
    pub view: RwLock<View>,
    pub canary: Canary,
    pub metrics: Metrics,
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

fn unavailable(e: sqlx::Error) -> Response {
    tracing::warn!(error = %e, "reading the watchdog's state failed");
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"error": "unavailable", "message": e.to_string()})))
        .into_response()
}

async fn page(State(shared): State<Arc<Shared>>) -> Response {
    match crate::page::view(&shared.state, now_ms(), &shared.name).await {
        Ok(view) => Html(crate::page::render(&view)).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    match crate::page::view(&shared.state, now_ms(), &shared.name).await {
        Ok(view) => axum::Json(view).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn view(State(shared): State<Arc<Shared>>) -> axum::Json<View> {
    axum::Json(shared.view.read().expect("view lock").clone())
}

async fn canary(
    State(shared): State<Arc<Shared>>,
    Path((watchdog, location, generation)): Path<(String, String, i64)>,
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
    shared.canary.record_hit(
        &location,
        Hit {
            generation,
            at: now_ms(),
            node: header("x-tocsin-node").unwrap_or_else(|| "unknown".into()),
            slot: header("x-tocsin-slot").and_then(|s| s.parse().ok()),
        },
    );
    (StatusCode::OK, "canary ok\n")
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], shared.metrics.encode())
}
