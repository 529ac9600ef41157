//! `/api/v1/nodes` and `/api/v1/cluster`: the probe nodes with their state
//! and load, draining them for maintenance, and who holds the scheduling
//! lease.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Shared};
use crate::auth::Caller;
use crate::cluster::{NodeState, SCHEDULER_LEASE};
use crate::model::wire::timestamp;
use crate::model::{Millis, Node, Role};
use crate::store::{self, cluster::NodeRow};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_nodes))
        .routes(routes!(forget_node))
        .routes(routes!(drain_node))
        .routes(routes!(resume_node))
        .routes(routes!(cluster))
}

pub(crate) async fn nodes(state: &AppState) -> Result<Vec<Node>, ApiError> {
    let (rows, now) = store::cluster::nodes(&state.db).await?;
    let loads: HashMap<String, i64> = store::cluster::loads(&state.db).await?.into_iter().collect();
    Ok(rows.into_iter().map(|n| node(n, now, &loads, state)).collect())
}

fn node(n: NodeRow, now: Millis, loads: &HashMap<String, i64>, state: &AppState) -> Node {
    Node {
        state: NodeState::of(&n, now, &state.serving.config),
        load: loads.get(&n.id).copied().unwrap_or(0),
        stats: serde_json::from_str(&n.stats).unwrap_or_default(),
        id: n.id,
        name: n.name,
        location: n.location,
        version: n.version,
        registered_at: n.registered_at,
        last_heartbeat: n.last_heartbeat,
    }
}

#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", responses((status = 200, description = "OK", body = Vec<Node>)))]
async fn list_nodes(State(state): Shared, caller: Caller) -> Result<axum::Json<Vec<Node>>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(axum::Json(nodes(&state).await?))
}

async fn set_drained(state: &AppState, caller: &Caller, id: &str, drained: bool) -> Result<Node, ApiError> {
    caller.require(Role::Admin)?;
    if !store::cluster::set_drained(&state.db, id, drained).await? {
        return Err(ApiError::not_found(format!("node {id:?} not found")));
    }
    let mut tx = state.db.writer().begin().await?;
    store::audit::record(
        &mut tx,
        store::audit::Change {
            actor: &caller.actor(),
            action: if drained { "node.drain" } else { "node.resume" },
            kind: "node",
            name: id,
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(node = %id, drained, actor = %caller.actor(), "node drain changed");
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
    Ok(axum::Json(set_drained(&state, &caller, &id, true).await?))
}

/// Lets a drained node take checks again.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/resume", tag = "nodes", params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = Node), (status = 404, description = "Not found", body = ErrorBody)))]
async fn resume_node(
    State(state): Shared,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Node>, ApiError> {
    Ok(axum::Json(set_drained(&state, &caller, &id, false).await?))
}

/// Forgets a node that owns no check (a machine that was replaced).
#[utoipa::path(delete, path = "/api/v1/nodes/{id}", tag = "nodes", params(("id" = String, Path)),
    responses((status = 204, description = "Done"), (status = 409, description = "It still owns checks", body = ErrorBody)))]
async fn forget_node(State(state): Shared, caller: Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
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
async fn cluster(State(state): Shared, caller: Caller) -> Result<axum::Json<ClusterState>, ApiError> {
    caller.require(Role::Viewer)?;
    let now = state.db.now_ms().await?;
    let lease = store::cluster::lease(&state.db, SCHEDULER_LEASE).await?;
    let (scheduler, epoch, expires) = match lease {
        Some(l) => ((l.expires_at >= now && !l.holder.is_empty()).then_some(l.holder), l.epoch, l.expires_at),
        None => (None, 0, 0),
    };
    Ok(axum::Json(ClusterState {
        scheduler,
        epoch,
        lease_expires_at: expires,
        now,
        answered_by: state.controller.clone(),
    }))
}
