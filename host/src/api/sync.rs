//! `/api/v1/sync`: the change feed for other sites (admin token, from an
//! address on the sync allowlist), this site's standing (public), and the
//! operator's levers: follow, recover, promote (admin).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Body, Params, Path, Shared};
use crate::auth::Caller;
use crate::model::Role;
use crate::store;
use crate::sync::apply::{Object, Report, Snapshot};
use crate::sync::entities::TABLES;
use crate::sync::follower::{self, FeedPage, Source};
use crate::sync::peers::SyncStatus;
use crate::sync::{Site, feed, proof, site};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(read_feed))
        .routes(routes!(snapshot))
        .routes(routes!(plugin_bytes))
        .routes(routes!(follow))
        .routes(routes!(recover))
        .routes(routes!(promote))
}

/// The address a request came from.
pub struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)))
    }
}

/// The feed carries gateway credentials and token hashes: only an admin
/// token from an address on the allowlist may read it.
fn may_read_feed(state: &AppState, caller: &Caller, peer: &Peer) -> Result<(), ApiError> {
    let Some(addr) = peer.0 else {
        return Err(ApiError::forbidden("the peer's address is unknown, so it cannot be on the sync allowlist")
            .with_code("peer_not_allowed"));
    };
    let ip = addr.ip().to_canonical();
    if !state.sync.allow.iter().any(|net| net.contains(&ip)) {
        tracing::warn!(peer = %ip, caller = %caller.actor(), "refused a feed read from an address not on the sync allowlist");
        return Err(ApiError::forbidden(format!(
            "{ip} is not on this site's sync allowlist (TOCSIN_SYNC_ALLOW / [sync] allow)"
        ))
        .with_code("peer_not_allowed"));
    }
    caller.require(Role::Admin)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    /// A peer's fresh challenge (16 to 128 of `A-Za-z0-9_-`): the answer
    /// then carries `proof`, signed with the deployment's peer secret.
    challenge: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/sync/status", tag = "sync", security(()), params(StatusQuery),
    responses((status = 200, description = "Where this site stands", body = SyncStatus),
        (status = 400, description = "A malformed challenge", body = ErrorBody)))]
async fn status(State(state): Shared, Params(query): Params<StatusQuery>) -> Result<axum::Json<SyncStatus>, ApiError> {
    if let Some(challenge) = &query.challenge
        && !proof::is_challenge(challenge)
    {
        return Err(ApiError::bad_request(
            "invalid_challenge",
            "challenge: use 16 to 128 of A-Z, a-z, 0-9, `-` and `_`",
        ));
    }
    let site = site::load(&state.db).await?;
    let following = (site.role == crate::sync::Role::Passive)
        .then(|| state.following.lock().unwrap_or_else(|p| p.into_inner()).clone());
    let proof = match (&query.challenge, &state.sync.peer_secret) {
        (Some(challenge), Some(secret)) => Some(proof::sign(secret, challenge, &site)),
        _ => None,
    };
    Ok(axum::Json(SyncStatus { ready: state.site.is_serving(), site, following, proof }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    /// The seq of the newest entry the reader holds (0: none).
    after: i64,
    /// That entry's chain link, so a reader that diverged is told.
    #[serde(default)]
    after_chain: String,
    /// At most this many entries (default and cap 1000).
    limit: Option<i64>,
    /// Hold the request this long while there is nothing new (at most 30 000).
    wait_ms: Option<u64>,
}

/// Entries after `after`, oldest first.
#[utoipa::path(get, path = "/api/v1/sync/feed", tag = "sync", params(FeedQuery),
    responses((status = 200, description = "Entries", body = FeedPage),
        (status = 403, description = "Not an admin token, or not from an allowed address", body = ErrorBody),
        (status = 409, description = "The reader holds entries this site does not: it must recover", body = ErrorBody)))]
async fn read_feed(
    State(state): Shared,
    caller: Caller,
    peer: Peer,
    Params(query): Params<FeedQuery>,
) -> Result<axum::Json<FeedPage>, ApiError> {
    may_read_feed(&state, &caller, &peer)?;
    let limit = super::page_limit(query.limit, super::MAX_PAGE, super::MAX_PAGE)?;
    let deadline = Instant::now() + super::long_poll(query.wait_ms, 0)?;
    let here = site::load(&state.db).await?;
    check_position(&state, &here, query.after, &query.after_chain).await?;
    loop {
        let entries = feed::page(&state.db, query.after, limit).await?;
        if !entries.is_empty() || Instant::now() >= deadline {
            let site = site::load(&state.db).await?;
            return Ok(axum::Json(FeedPage { site, entries }));
        }
        // Another controller of this site may commit a change at any time,
        // so a short poll of the feed rather than an in-process signal.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a reader standing at (`after`, `chain`) continues this feed.
async fn check_position(state: &AppState, here: &Site, after: i64, chain: &str) -> Result<(), ApiError> {
    if after == 0 {
        return match feed::first_seq(&state.db).await? {
            Some(first) if first > 1 => Err(diverged(format!(
                "this site's feed starts at {first} (it was recovered from a snapshot): the reader must recover"
            ))),
            _ => Ok(()),
        };
    }
    if after > here.head {
        return Err(diverged(format!(
            "the reader holds changes up to {after}, this site only up to {}: the reader took changes of its own",
            here.head
        )));
    }
    let mine =
        if after == here.head { Some(here.head_chain.clone()) } else { feed::chain_of(&state.db, after).await? };
    match mine {
        Some(mine) if mine == chain => Ok(()),
        Some(_) => Err(diverged(format!(
            "change {after} at the reader is not change {after} here: the reader took changes of its own"
        ))),
        None => Err(diverged(format!(
            "this site no longer holds change {after} (it was recovered from a snapshot): the reader must recover"
        ))),
    }
}

fn diverged(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "diverged", message)
}

/// Every configuration object at one point of the feed.
#[utoipa::path(get, path = "/api/v1/sync/snapshot", tag = "sync",
    responses((status = 200, description = "The whole configuration", body = Snapshot),
        (status = 403, description = "Not an admin token, or not from an allowed address", body = ErrorBody)))]
async fn snapshot(State(state): Shared, caller: Caller, peer: Peer) -> Result<axum::Json<Snapshot>, ApiError> {
    may_read_feed(&state, &caller, &peer)?;
    let mut tx = state.db.reader().begin().await?;
    if state.db.backend == store::Backend::Postgres {
        // One view of every table, whatever commits meanwhile.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    }
    let site = site::load_in(&mut tx).await?;
    let mut objects = Vec::new();
    for table in TABLES {
        for (name, body) in table.export_all(&mut tx).await? {
            objects.push(Object { kind: table.kind.to_string(), name, body });
        }
    }
    tx.commit().await?;
    Ok(axum::Json(Snapshot { site, objects }))
}

/// A plugin's bytes, for a follower that lacks them.
#[utoipa::path(get, path = "/api/v1/sync/plugins/{sha256}", tag = "sync", params(("sha256" = String, Path)),
    responses((status = 200, description = "The component", content_type = "application/wasm"),
        (status = 404, description = "No such plugin", body = ErrorBody)))]
async fn plugin_bytes(
    State(state): Shared,
    caller: Caller,
    peer: Peer,
    Path(sha256): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    may_read_feed(&state, &caller, &peer)?;
    let wasm = store::plugins::wasm_by_sha(&state.db, &sha256).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/wasm")], wasm))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowRequest {
    /// The URL of a controller of the site to follow.
    pub from: String,
}

fn source_url(from: &str) -> Result<String, ApiError> {
    let url = reqwest::Url::parse(from)
        .map_err(|e| ApiError::bad_request("invalid_source", format!("from: {from:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ApiError::bad_request(
            "invalid_source",
            format!("from: {from:?} must be an http(s) URL with a host"),
        ));
    }
    Ok(from.trim_end_matches('/').to_string())
}

/// Make this site passive, following another from where its feed stands.
#[utoipa::path(post, path = "/api/v1/sync/follow", tag = "sync", request_body = FollowRequest,
    responses((status = 200, description = "Now following", body = Site), (status = 400, description = "Refused", body = ErrorBody)))]
async fn follow(
    State(state): Shared,
    caller: Caller,
    Body(request): Body<FollowRequest>,
) -> Result<axum::Json<Site>, ApiError> {
    let from = source_url(&request.from)?;
    require_token(&state)?;
    let site = site::follow(&state.db, &from, &caller.actor()).await?;
    tracing::warn!(source = %from, actor = %caller.actor(), "this site is now passive, following another");
    *state.following.lock().unwrap_or_else(|p| p.into_inner()) = Default::default();
    state.site.publish(site.clone());
    Ok(axum::Json(site))
}

fn require_token(state: &AppState) -> Result<(), ApiError> {
    if state.sync.token.is_none() {
        return Err(ApiError::bad_request(
            "no_sync_token",
            "this site has no sync token: start its controllers with TOCSIN_SYNC_TOKEN (or [sync] token) set to an admin token of the source",
        ));
    }
    Ok(())
}

/// Reset this site to another's state and follow it; the answer lists
/// what was discarded.
#[utoipa::path(post, path = "/api/v1/sync/recover", tag = "sync", request_body = FollowRequest,
    responses((status = 200, description = "Recovered", body = Report),
        (status = 502, description = "The source did not give its state", body = ErrorBody)))]
async fn recover(
    State(state): Shared,
    caller: Caller,
    Body(request): Body<FollowRequest>,
) -> Result<axum::Json<Report>, ApiError> {
    let from = source_url(&request.from)?;
    require_token(&state)?;
    let source = Source::new(
        &from,
        state.sync.token.as_ref().map(|t| t.expose().to_string()),
        state.sync.peer_secret.clone(),
        &state.sync.tls,
    );
    let report = follower::recover(&state.db, &source, &caller.actor()).await.map_err(|e| match e {
        follower::SourceError::Local(e) => ApiError::from(e),
        other => ApiError::new(StatusCode::BAD_GATEWAY, "source_failed", format!("{from}: {other}")),
    })?;
    *state.following.lock().unwrap_or_else(|p| p.into_inner()) = Default::default();
    if let Some(site) = &report.site {
        state.site.publish(site.clone());
    }
    Ok(axum::Json(report))
}

#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// Refuse unless the site is still at this epoch (for watchdogs acting
    /// on what they saw).
    pub epoch: Option<i64>,
}

/// Make this passive site active, with an epoch above any it has seen.
#[utoipa::path(post, path = "/api/v1/sync/promote", tag = "sync", request_body = PromoteRequest,
    responses((status = 200, description = "Active", body = Site), (status = 409, description = "Active already, or the epoch moved on", body = ErrorBody)))]
async fn promote(
    State(state): Shared,
    caller: Caller,
    Body(request): Body<PromoteRequest>,
) -> Result<axum::Json<Site>, ApiError> {
    let site = site::promote(&state.db, request.epoch, &caller.actor()).await?;
    tracing::warn!(site = %site.name, epoch = site.epoch, actor = %caller.actor(), "this site was promoted: it is active");
    state.site.publish(site.clone());
    Ok(axum::Json(site))
}
