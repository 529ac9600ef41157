//! `PUT /api/v1/testing/failpoints/{name}`: turns a failpoint on or off in
//! this process, for fault tests of the real binary. Compiled only with the
//! `testing` feature, and left out of the OpenAPI document.
//!
//! The body is an action in the `fail` crate's syntax (`return`, `panic`,
//! `sleep(100)`, `50%return`, ...), as plain text or `{"action": "..."}`;
//! `off` removes the failpoint.

use axum::body::Bytes;
use serde::Deserialize;

use super::ApiError;
use crate::auth::Caller;
use crate::model::Role;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Setting {
    action: String,
}

pub async fn set_failpoint(
    caller: Caller,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: Bytes,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(Role::Admin)?;
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("invalid_body", "the body is not UTF-8"))?;
    let action = match serde_json::from_str::<Setting>(text) {
        Ok(setting) => setting.action,
        Err(_) if !text.trim_start().starts_with('{') => text.trim().to_string(),
        Err(e) => return Err(ApiError::bad_request("invalid_body", e.to_string())),
    };
    if action.is_empty() {
        return Err(ApiError::bad_request("invalid_body", "name an action: `return`, `off`, ..."));
    }
    if action == "off" {
        fail::remove(&name);
    } else {
        fail::cfg(&name, &action)
            .map_err(|e| ApiError::bad_request("invalid_action", format!("failpoint {name:?}: {e}")))?;
    }
    tracing::warn!(failpoint = %name, %action, actor = %caller.actor(), "failpoint set");
    Ok(axum::Json(serde_json::json!({"name": name, "action": action})))
}

/// Applies `FAILPOINTS` (`name=action;name=action`, as `fail` reads it) at
/// start, so a fault can be there from the first tick.
pub fn from_env() -> anyhow::Result<()> {
    let Ok(spec) = std::env::var("FAILPOINTS") else { return Ok(()) };
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, action) =
            entry.split_once('=').ok_or_else(|| anyhow::anyhow!("FAILPOINTS: {entry:?} is not name=action"))?;
        fail::cfg(name.trim(), action.trim()).map_err(|e| anyhow::anyhow!("FAILPOINTS: {entry:?}: {e}"))?;
        tracing::warn!(failpoint = %name.trim(), action = %action.trim(), "failpoint set from FAILPOINTS");
    }
    Ok(())
}
