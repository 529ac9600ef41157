//! How a node talks to controllers. The protocol is five calls; the node in
//! `tocsin serve` makes them in process ([`crate::cluster::serving`]), a
//! `tocsin node` over HTTP to the first controller that answers.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schedule::AssignedCheck;
use crate::store::runs::NewRun;

/// Sent once at start, and again whenever a controller has forgotten us.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub node_id: String,
    pub name: String,
    pub location: String,
    pub version: String,
}

/// The timings the controller expects the node to keep.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Welcome {
    pub heartbeat_ms: u64,
    pub dead_after_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Beat {
    pub node_id: String,
    /// Runs in flight.
    pub running: u64,
    /// Results waiting to be uploaded.
    pub buffered: u64,
    /// Checks in the node's current assignment.
    pub assigned: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BeatReply {
    /// The node's work version: when it differs from the node's, the node
    /// fetches its work (the fallback when long-polls fail).
    pub work_version: i64,
}

/// Everything a node must do: its checks, and confirmation retests.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Work {
    pub version: i64,
    #[schema(value_type = Vec<Object>)]
    pub checks: Vec<AssignedCheck>,
    pub confirmations: Vec<Confirmation>,
}

/// Retest `check` for `slot` now, as run `seq` of that slot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Confirmation {
    #[schema(value_type = Object)]
    pub check: AssignedCheck,
    pub slot: i64,
    pub seq: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    pub node_id: String,
    #[schema(value_type = Vec<Object>)]
    pub runs: Vec<NewRun>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct UploadReply {
    pub accepted: u64,
    /// Duplicates and results fenced off as stale.
    pub refused: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No controller could be reached or answered usefully; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The controller does not know this node: enroll again.
    #[error("the controller does not know this node")]
    Unknown,
    /// The controller refused the request outright (bad token, bad data).
    #[error("{0}")]
    Refused(String),
    /// The caller does not hold this node's key.
    #[error("{0}")]
    Denied(String),
}

pub type LinkResult<T> = Result<T, LinkError>;

/// The calls a node makes.
pub trait Link: Send + Sync + 'static {
    fn enroll(&self, hello: Hello) -> BoxFuture<'_, LinkResult<Welcome>>;
    fn heartbeat(&self, beat: Beat) -> BoxFuture<'_, LinkResult<BeatReply>>;
    /// The node's work if its version is not `known`, waiting up to `wait`
    /// for a change; `None` when nothing changed.
    fn work(&self, node_id: String, known: i64, wait: Duration) -> BoxFuture<'_, LinkResult<Option<Work>>>;
    fn upload(&self, upload: Upload) -> BoxFuture<'_, LinkResult<UploadReply>>;
    /// The bytes of an uploaded plugin.
    fn plugin(&self, sha256: String) -> BoxFuture<'_, LinkResult<Vec<u8>>>;
}
