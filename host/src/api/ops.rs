//! `/healthz` (the process answers), `/readyz` (it can serve: its site is
//! active and the database takes a write) and `/metrics` (Prometheus text). None needs a token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Shared};
use crate::metrics::StatusLabels;
use crate::model::CheckStatus;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, description = "OK", body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, description = "OK", body = Health), (status = 503, description = "Not ready", body = Health)))]
async fn readyz(State(state): Shared) -> (StatusCode, axum::Json<Health>) {
    let version = env!("CARGO_PKG_VERSION").to_string();
    if !state.site.is_serving() {
        let site = state.site.current();
        let status = match (&site.role, &site.source) {
            (crate::sync::Role::Passive, Some(source)) => format!("passive: site {} follows {source}", site.name),
            (crate::sync::Role::Passive, None) => format!("passive: site {} follows no one", site.name),
            (crate::sync::Role::Active, _) => "starting: asking the peer sites for their epoch".to_string(),
        };
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(Health { status, version }));
    }
    match state.db.ping().await {
        Ok(()) => (StatusCode::OK, axum::Json(Health { status: "ready".into(), version })),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database does not take writes");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(Health { status: format!("database: {e}"), version }))
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): Shared) -> impl IntoResponse {
    state.metrics.observe_runtime(&state.catalog.runtime().stats());
    if let Ok(counts) = crate::store::checks::count_by_status(&state.db).await {
        for status in
            [CheckStatus::Pending, CheckStatus::Up, CheckStatus::Degraded, CheckStatus::Down, CheckStatus::Error]
        {
            let n = counts.iter().find(|(s, _)| *s == status).map(|(_, n)| *n).unwrap_or(0);
            state.metrics.checks.get_or_create(&StatusLabels { status: status.to_string() }).set(n);
        }
    }
    let counts: Result<(i64, i64), _> = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')), \
                (SELECT COUNT(*) FROM incidents WHERE state <> 'resolved')",
    )
    .fetch_one(state.db.reader())
    .await;
    if let Ok((pending, open)) = counts {
        state.metrics.outbox_pending.set(pending);
        state.metrics.incidents_open.set(open);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.encode())
}
