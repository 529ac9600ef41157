//! The HTTP management API under `/api/v1`, plus `/healthz`, `/readyz`,
//! `/metrics` and the OpenAPI document at `/api/v1/openapi.json`.
//!
//! Every handler returns `Result<_, ApiError>`; an error is JSON
//! `{"error": {"code": "...", "message": "..."}}` with a stable code and a
//! message that names the problem. Bodies are parsed by [`Body`], which
//! turns serde's complaints (unknown field, wrong type) into such errors.
//! Every mutating handler writes its audit entry in its transaction.

pub mod access;
mod alerts;
mod apply;
mod audit;
mod checks;
mod contract;
mod drain;
pub mod error;
mod incidents;
mod link_keys;
mod node;
mod nodes;
mod oncall;
mod ops;
mod plugins;
mod respond;
mod runs;
mod silences;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
mod tokens;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

pub use apply::{Document, Plan};
pub use checks::{CheckList, is_name};
pub use error::ApiError;
pub use node::NODE_KEY;
pub use runs::{RunPage, Series};

use crate::auth::{Authenticator, Caller};
use crate::catalog::Catalog;
use crate::metrics::{HttpLabels, Metrics, PluginLabels, ReasonLabels};
use crate::model::Role;
use crate::store::Db;

/// What every handler can reach.
pub struct AppState {
    pub db: Db,
    pub catalog: Catalog,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    /// Woken on every change to checks or nodes, so scheduling follows at once.
    pub changes: Arc<Notify>,
    pub min_interval: std::time::Duration,
    /// Non-public ranges editors may grant checks (`editor_grants`).
    pub editor_grants: Vec<ipnet::IpNet>,
    /// What serves probe nodes (shared with the in-process node).
    pub serving: Arc<crate::cluster::serving::Serving>,
    /// This controller's name (in the scheduling lease).
    pub controller: String,
    pub alerting: Alerting,
    /// This site's role, as last read.
    pub site: crate::sync::SiteWatch,
    pub sync: crate::sync::SyncConfig,
    /// How following the source goes, while passive.
    pub following: Arc<std::sync::Mutex<crate::sync::follower::FollowState>>,
}

/// What the alerting endpoints need beyond the database.
pub struct Alerting {
    pub signer: crate::alerting::links::Signer,
    pub rules: crate::alerting::Rules,
    /// Wakes the escalation and outbox worker after a change.
    pub wake: Arc<Notify>,
}

pub type Shared = State<Arc<AppState>>;

#[derive(OpenApi)]
#[openapi(
    info(title = "Tocsin management API", description = "Checks, plugins, runs, tokens and the audit trail."),
    modifiers(&BearerAuth),
    security(("token" = [])),
    tags(
        (name = "checks", description = "What to monitor"),
        (name = "plugins", description = "Check and notifier plugins (WebAssembly components)"),
        (name = "runs", description = "Results of checks"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "audit", description = "Who changed what (admin)"),
        (name = "nodes", description = "Probe nodes"),
        (name = "incidents", description = "Incidents, their timelines and answers; inbound alerts"),
        (name = "alerting", description = "Contacts, escalation policies, gateways, routes, maintenance windows"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "sync", description = "Redundant sites: the change feed, follow, recover, promote")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The whole HTTP surface of a controller.
pub fn router(state: Arc<AppState>) -> Router {
    let (api, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(checks::routes())
        .merge(plugins::routes(state.catalog.runtime().limits().max_plugin_bytes))
        .merge(runs::routes())
        .merge(tokens::routes())
        .merge(audit::routes())
        .merge(apply::routes())
        .merge(nodes::routes())
        .merge(node::routes())
        .merge(ops::routes())
        .merge(oncall::routes())
        .merge(incidents::routes())
        .merge(alerts::routes())
        .merge(respond::routes())
        .merge(silences::routes())
        .merge(link_keys::routes())
        .merge(sync::routes())
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let doc = Arc::new(contract::complete(doc, &state));
    let api = api.route_layer(middleware::from_fn_with_state(state.clone(), access::enforce));
    #[cfg(feature = "testing")]
    let api = api.route("/api/v1/testing/failpoints/{name}", axum::routing::put(testing::set_failpoint));
    api.route("/api/v1/openapi.json", axum::routing::get(move || async move { axum::Json(doc.clone()) }))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .layer(middleware::from_fn_with_state(state.clone(), refuse_when_passive))
        .layer(middleware::from_fn(drain::drain_unread))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts and times every request by its route.
async fn observe(State(state): Shared, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    // Any token can be sent as a method: only the standard ones are labels,
    // so nobody can grow the metrics without bound.
    let method = match *request.method() {
        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::OPTIONS => {
            request.method().as_str().to_string()
        }
        _ => "other".to_string(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.http_requests.get_or_create(&HttpLabels { method, route: route.clone(), status }).inc();
    state.metrics.http_seconds.get_or_create(&PluginLabels { plugin: route }).observe(started.elapsed().as_secs_f64());
    response
}

/// A passive site takes no changes, no inbound alerts, no answers and no
/// nodes: all of them belong to the active site. 503, so clients and nodes
/// with several servers try the next. (The feed's capture refuses changes
/// again inside their transaction; this answers before any work is done.)
async fn refuse_when_passive(State(state): Shared, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let refused = !state.site.is_active()
        && !path.starts_with("/api/v1/sync/")
        && !path.starts_with("/api/v1/testing/")
        && (path.starts_with("/api/v1/node/") || !matches!(*request.method(), Method::GET | Method::HEAD));
    if !refused {
        return next.run(request).await;
    }
    let site = state.site.current();
    let message = match &site.source {
        Some(source) => format!("site {} is passive: it follows {source}; use the active site", site.name),
        None => format!("site {} is passive; use the active site", site.name),
    };
    ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "site_passive", message).into_response()
}

/// Who sent a request: its bearer token checked, failures counted.
async fn authenticate(parts: &mut Parts, state: &Arc<AppState>) -> Result<Caller, ApiError> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = header.map(|h| h.strip_prefix("Bearer ").unwrap_or(h).trim());
    let source = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let verified = state.auth.verify(&state.db, token, source).await;
    if let Err(e) = &verified {
        state.metrics.auth_failures.get_or_create(&ReasonLabels { reason: e.reason().into() }).inc();
    }
    Ok(verified?)
}

/// The authenticated caller of a request: the one [`access::enforce`]
/// found, or (for a route it does not guard) checked now.
impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        authenticate(parts, state).await
    }
}

impl Caller {
    /// Refuses callers below `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.has(role) {
            return Ok(());
        }
        Err(ApiError::forbidden(format!("this needs the {role} role; the token {:?} has {}", self.name, self.role)))
    }
}

/// A JSON request body whose parse errors are API errors.
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    axum::Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::from_json_rejection(rejection)),
        }
    }
}

/// The largest page of most lists (`limit`); the document declares it.
pub(crate) const MAX_PAGE: i64 = 1000;
/// The longest a long-poll (`wait_ms`) may hold a request.
pub(crate) const MAX_WAIT_MS: u64 = 30_000;

/// A `limit` parameter: `default` when absent, refused outside 1 to `max`.
pub(crate) fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match limit.unwrap_or(default) {
        limit @ 1.. if limit <= max => Ok(limit),
        limit => Err(ApiError::bad_request("invalid_query", format!("limit {limit}: use 1 to {max}"))),
    }
}

/// A `wait_ms` parameter: `default` when absent, refused over [`MAX_WAIT_MS`].
pub(crate) fn long_poll(wait_ms: Option<u64>, default: u64) -> Result<std::time::Duration, ApiError> {
    match wait_ms.unwrap_or(default) {
        wait if wait <= MAX_WAIT_MS => Ok(std::time::Duration::from_millis(wait)),
        wait => Err(ApiError::bad_request("invalid_query", format!("wait_ms {wait}: use 0 to {MAX_WAIT_MS}"))),
    }
}

/// An optional JSON request body: none (or only whitespace) is `None`.
/// One that is there must be JSON, like [`Body`]'s.
pub struct OptionalBody<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // What `axum::Json` takes: `application/json` or `application/*+json`.
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json")));
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            let code =
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "invalid_body" };
            ApiError::new(e.status(), code, e.body_text())
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(None));
        }
        if !json {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`, or send none",
            ));
        }
        // `null` is no body too, as the document says (an optional schema).
        let value: Option<T> =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
        Ok(OptionalBody(value))
    }
}

/// Path parameters whose parse errors are API errors (a segment that is
/// not a number where one is expected, bad percent-encoding).
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::new(rejection.status(), "invalid_path", rejection.body_text())),
        }
    }
}

/// Query parameters whose parse errors are API errors.
pub struct Params<T>(pub T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(ApiError::bad_request("invalid_query", rejection.body_text())),
        }
    }
}
