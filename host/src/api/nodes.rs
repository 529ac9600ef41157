//! `/api/v1/nodes` and `/api/v1/cluster`: the probe nodes with their state,
//! load and run rates, draining them for maintenance, evicting them (the
//! watchdog's lever for a node that runs nothing), and who holds the
//! scheduling lease, with its fenced revocation.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Body, OptionalBody, Path, Shared};
use crate::auth::Caller;
use crate::cluster::{NodeState, SCHEDULER_LEASE};
use crate::model::wire::timestamp;
use crate::model::{Millis, Node};
use crate::store;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_nodes))
        .routes(routes!(forget_node))
        .routes(routes!(drain_node))
        .routes(routes!(evict_node))
        .routes(routes!(resume_node))
        .routes(routes!(cluster))
        .routes(routes!(revoke_lease))
}

pub(crate) async fn nodes(state: &AppState) -> Result<Vec<Node>, ApiError> {
    let (rows, now) = store::cluster::nodes(&state.db).await?;
    let loads: HashMap<String, i64> = store::cluster::loads(&state.db).await?.into_iter().collect();
    // Runs record the node's name; its location tells apart two nodes that
    // share a name in different places.
    let runs: HashMap<(String, String), i64> = store::cluster::runs_since(&state.db, now - 60_000)
        .await?
        .into_iter()
        .map(|(name, location, count)| ((name, location), count))
        .collect();
    let expected: HashMap<String, i64> = store::cluster::expected_per_minute(&state.db).await?.into_iter().collect();
    Ok(rows
        .into_iter()
        .map(|n| Node {
            state: NodeState::of(&n, now, &state.serving.config),
            load: loads.get(&n.id).copied().unwrap_or(0),
            runs_last_minute: runs.get(&(n.name.clone(), n.location.clone())).copied().unwrap_or(0),
            expected_last_minute: expected.get(&n.id).copied().unwrap_or(0),
            stats: serde_json::from_str(&n.stats).unwrap_or_default(),
            id: n.id,
            name: n.name,
            location: n.location,
            version: n.version,
            registered_at: n.registered_at,
            last_heartbeat: n.last_heartbeat,
        })
        .collect())
}

#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", responses((status = 200, description = "OK", body = Vec<Node>)))]
async fn list_nodes(State(state): Shared) -> Result<axum::Json<Vec<Node>>, ApiError> {
    Ok(axum::Json(nodes(&state).await?))
}

/// Why a node is evicted, for the audit trail.
#[derive(Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EvictRequest {
    pub reason: String,
    /// The watchdogs (or people) that agreed.
    pub agreed_by: Vec<String>,
}

#[derive(Clone, Copy)]
enum Lever {
    Drain,
    Evict,
    Resume,
}

/// Pulls `lever` on node `id`, with its audit entry in the same
/// transaction, and wakes the coordinator to act on it.
async fn change_node(
    state: &AppState,
    caller: &Caller,
    id: &str,
    lever: Lever,
    after: Option<serde_json::Value>,
) -> Result<Node, ApiError> {
    let mut tx = state.db.writer().begin().await?;
    let (found, action) = match lever {
        Lever::Drain => (store::cluster::drain(&mut tx, id).await?, "node.drain"),
        Lever::Evict => (store::cluster::evict(&mut tx, id).await?, "node.evict"),
        Lever::Resume => (store::cluster::resume(&mut tx, id).await?, "node.resume"),
    };
    if !found {
        return Err(ApiError::not_found(format!("node {id:?} not found")));
    }
    store::audit::record(
        &mut tx,
        store::audit::Change {
            actor: &caller.actor(),
            action,
            kind: "node",
            name: id,
            before: None,
            after: after.clone(),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(node = %id, action, details = ?after, actor = %caller.actor(), "node changed");
    state.changes.notify_one();
    nodes(state)
        .await?
        .into_iter()
        .find(|n| n.id == id)
        .ok_or_else(|| ApiError::not_found(format!("node {id:?} not found")))
}

/// Moves the node's checks to other nodes (at their next slot boundary),
/// for maintenance; it keeps running until then.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/drain", tag = "nodes", params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = Node), (status = 404, description = "Not found", body = ErrorBody)))]
async fn drain_node(
    State(state): Shared,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Node>, ApiError> {
    Ok(axum::Json(change_node(&state, &caller, &id, Lever::Drain, None).await?))
}

/// Takes every check from the node at once, as from a dead node (a node
/// that heartbeats but runs nothing); it owns nothing until resumed. The
/// body is optional.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/evict", tag = "nodes", params(("id" = String, Path)),
    request_body = Option<EvictRequest>,
    responses((status = 200, description = "OK", body = Node), (status = 404, description = "Not found", body = ErrorBody)))]
async fn evict_node(
    State(state): Shared,
    caller: Caller,
    Path(id): Path<String>,
    OptionalBody(request): OptionalBody<EvictRequest>,
) -> Result<axum::Json<Node>, ApiError> {
    let request = request.unwrap_or_default();
    let after = serde_json::json!({"reason": request.reason, "agreed_by": request.agreed_by});
    Ok(axum::Json(change_node(&state, &caller, &id, Lever::Evict, Some(after)).await?))
}

/// Lets a drained or evicted node take checks again.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/resume", tag = "nodes", params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = Node), (status = 404, description = "Not found", body = ErrorBody)))]
async fn resume_node(
    State(state): Shared,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Node>, ApiError> {
    Ok(axum::Json(change_node(&state, &caller, &id, Lever::Resume, None).await?))
}

/// Forgets a node that owns no check (a machine that was replaced).
#[utoipa::path(delete, path = "/api/v1/nodes/{id}", tag = "nodes", params(("id" = String, Path)),
    responses((status = 204, description = "Done"), (status = 409, description = "It still owns checks", body = ErrorBody)))]
async fn forget_node(State(state): Shared, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if store::cluster::node(&state.db, &id).await?.is_none() {
        return Err(ApiError::not_found(format!("node {id:?} not found")));
    }
    if !store::cluster::remove_node(&state.db, &id).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("node {id:?} still owns checks; drain it first"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ClusterState {
    /// The controller holding the scheduling lease, if any holds it now.
    pub scheduler: Option<String>,
    /// Grows each time the lease changes hands.
    pub epoch: i64,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub lease_expires_at: Millis,
    /// The database's clock.
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub now: Millis,
    /// The controller that answered.
    pub answered_by: String,
}

#[utoipa::path(get, path = "/api/v1/cluster", tag = "nodes", responses((status = 200, description = "OK", body = ClusterState)))]
async fn cluster(State(state): Shared) -> Result<axum::Json<ClusterState>, ApiError> {
    Ok(axum::Json(cluster_state(&state).await?))
}

async fn cluster_state(state: &AppState) -> Result<ClusterState, ApiError> {
    let now = state.db.now_ms().await?;
    let lease = store::cluster::lease(&state.db, SCHEDULER_LEASE).await?;
    let (scheduler, epoch, expires) = match lease {
        Some(l) => ((l.expires_at >= now && !l.holder.is_empty()).then_some(l.holder), l.epoch, l.expires_at),
        None => (None, 0, 0),
    };
    Ok(ClusterState { scheduler, epoch, lease_expires_at: expires, now, answered_by: state.controller.clone() })
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The epoch the caller saw: the lease is revoked only if it still has it.
    pub epoch: i64,
    /// The controller to hand the lease to (as in `answered_by`); none: it
    /// lapses for the first controller to take.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub reason: String,
    /// The watchdogs (or people) that agreed.
    #[serde(default)]
    pub agreed_by: Vec<String>,
}

/// Takes the scheduling lease from its holder (a wedged controller), fenced
/// by the epoch the caller saw, and hands it to `to` or lets it lapse. The
/// epoch moves on, so the old holder's writes fail and it steps down.
#[utoipa::path(post, path = "/api/v1/cluster/lease/revoke", tag = "nodes", request_body = RevokeRequest,
    responses((status = 200, description = "OK", body = ClusterState),
              (status = 409, description = "The lease moved on since that epoch", body = ErrorBody)))]
async fn revoke_lease(
    State(state): Shared,
    caller: Caller,
    Body(request): Body<RevokeRequest>,
) -> Result<axum::Json<ClusterState>, ApiError> {
    let ttl_ms = state.serving.config.lease_ttl.as_millis() as i64;
    let mut tx = state.db.writer().begin().await?;
    let revoked = store::cluster::revoke_lease(
        &mut tx,
        state.db.dialect(),
        SCHEDULER_LEASE,
        request.epoch,
        request.to.as_deref(),
        ttl_ms,
    )
    .await?;
    let Some((before, after)) = revoked else {
        drop(tx);
        let (epoch, holder) = match store::cluster::lease(&state.db, SCHEDULER_LEASE).await? {
            Some(l) if !l.holder.is_empty() => (l.epoch, l.holder),
            Some(l) => (l.epoch, "nobody".to_string()),
            None => (0, "nobody".to_string()),
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("the scheduling lease moved on: epoch is now {epoch} (held by {holder})"),
        ));
    };
    store::audit::record(
        &mut tx,
        store::audit::Change {
            actor: &caller.actor(),
            action: "lease.revoke",
            kind: "lease",
            name: SCHEDULER_LEASE,
            before: Some(serde_json::json!({"holder": before.holder, "epoch": before.epoch})),
            after: Some(serde_json::json!({"holder": after.holder, "epoch": after.epoch,
                                           "reason": request.reason, "agreed_by": request.agreed_by})),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::warn!(from = %before.holder, to = %after.holder, epoch = after.epoch, reason = %request.reason,
                   agreed_by = ?request.agreed_by, actor = %caller.actor(), "scheduling lease revoked");
    Ok(axum::Json(cluster_state(&state).await?))
}
