//! `/api/v1/node/...`: the protocol probe nodes speak, with a node token.
//! The handlers only translate HTTP; `cluster::serving` does the work.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Body, Params, Path, Shared};
use crate::auth::Caller;
use crate::cluster::serving::Proof;
use crate::model::Role;
use crate::node::link::{Beat, BeatReply, Hello, LinkError, Upload, UploadReply, Welcome, Work};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(heartbeat))
        .routes(routes!(work))
        .routes(routes!(results))
        .layer(DefaultBodyLimit::max(64 << 20))
        .routes(routes!(plugin))
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Unknown => ApiError::not_found("this node is not enrolled").with_code("unknown_node"),
            LinkError::Refused(message) => ApiError::bad_request("refused", message),
            LinkError::Denied(message) => ApiError::new(StatusCode::FORBIDDEN, "node_key_mismatch", message),
            LinkError::Unavailable(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", message)
            }
        }
    }
}

/// The header a node sends its key in.
pub const NODE_KEY: &str = "tocsin-node-key";

fn node_key(headers: &HeaderMap) -> Option<&str> {
    headers.get(NODE_KEY).and_then(|v| v.to_str().ok())
}

/// Enroll a node, with a node token. The first enrollment of a node id
/// answers the node's key; every later call for that id must send it in
/// `Tocsin-Node-Key`.
#[utoipa::path(post, path = "/api/v1/node/enroll", tag = "nodes", request_body = Hello,
    params(("tocsin-node-key" = Option<String>, Header, description = "The node's key, once it has one")),
    responses((status = 200, description = "OK", body = Welcome), (status = 400, description = "Refused", body = ErrorBody),
              (status = 403, description = "Not this node's key", body = ErrorBody)))]
async fn enroll(
    State(state): Shared,
    caller: Caller,
    headers: HeaderMap,
    Body(hello): Body<Hello>,
) -> Result<axum::Json<Welcome>, ApiError> {
    caller.require(Role::Node)?;
    Ok(axum::Json(state.serving.enroll(hello, Proof::Key(node_key(&headers))).await?))
}

#[utoipa::path(post, path = "/api/v1/node/heartbeat", tag = "nodes", request_body = Beat,
    params(("tocsin-node-key" = String, Header, description = "The node's key")),
    responses((status = 200, description = "OK", body = BeatReply), (status = 404, description = "Not enrolled", body = ErrorBody),
              (status = 403, description = "Not this node's key", body = ErrorBody)))]
async fn heartbeat(
    State(state): Shared,
    caller: Caller,
    headers: HeaderMap,
    Body(beat): Body<Beat>,
) -> Result<axum::Json<BeatReply>, ApiError> {
    caller.require(Role::Node)?;
    state.serving.prove(&beat.node_id, node_key(&headers)).await?;
    Ok(axum::Json(state.serving.heartbeat(beat).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkQuery {
    node: String,
    /// The version the node has; the answer waits while it is current.
    version: i64,
    /// How long to wait for a change, at most 30000 (default 20000).
    wait_ms: Option<u64>,
}

/// The node's work: its checks and the retests it must run. Answers 204 when
/// nothing changed within `wait_ms`.
#[utoipa::path(get, path = "/api/v1/node/work", tag = "nodes",
    params(WorkQuery, ("tocsin-node-key" = String, Header, description = "The node's key")),
    responses((status = 200, description = "OK", body = Work), (status = 204, description = "Unchanged"),
              (status = 404, description = "Not enrolled", body = ErrorBody),
              (status = 403, description = "Not this node's key", body = ErrorBody)))]
async fn work(
    State(state): Shared,
    caller: Caller,
    headers: HeaderMap,
    Params(q): Params<WorkQuery>,
) -> Result<Response, ApiError> {
    caller.require(Role::Node)?;
    state.serving.prove(&q.node, node_key(&headers)).await?;
    let wait = super::long_poll(q.wait_ms, 20_000)?;
    Ok(match state.serving.work(&q.node, q.version, wait).await? {
        Some(work) => axum::Json(work).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// A node's results. Only runs of slots the node owns (or retests it was
/// asked for) that have come are kept; the rest count as refused.
#[utoipa::path(post, path = "/api/v1/node/results", tag = "nodes", request_body = Upload,
    params(("tocsin-node-key" = String, Header, description = "The node's key")),
    responses((status = 200, description = "OK", body = UploadReply), (status = 503, description = "Not ready", body = ErrorBody),
              (status = 404, description = "Not enrolled", body = ErrorBody),
              (status = 403, description = "Not this node's key", body = ErrorBody)))]
async fn results(
    State(state): Shared,
    caller: Caller,
    headers: HeaderMap,
    Body(upload): Body<Upload>,
) -> Result<axum::Json<UploadReply>, ApiError> {
    caller.require(Role::Node)?;
    state.serving.prove(&upload.node_id, node_key(&headers)).await?;
    if upload.runs.len() > crate::ingest::BATCH {
        return Err(ApiError::bad_request(
            "too_many_runs",
            format!("{} runs in one upload: send at most {}", upload.runs.len(), crate::ingest::BATCH),
        ));
    }
    Ok(axum::Json(state.serving.upload(upload).await?))
}

#[utoipa::path(get, path = "/api/v1/node/plugins/{sha256}", tag = "nodes", params(("sha256" = String, Path)),
    responses((status = 200, description = "The .wasm", content_type = "application/wasm"), (status = 400, description = "Refused", body = ErrorBody)))]
async fn plugin(State(state): Shared, caller: Caller, Path(sha256): Path<String>) -> Result<Response, ApiError> {
    caller.require(Role::Node)?;
    let wasm = state.serving.plugin(&sha256).await?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], wasm).into_response())
}
