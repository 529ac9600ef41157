//! `/api/v1/checks`: create, list, show, update, pause, resume, delete.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tocsin_runtime::{Grant, PluginKind};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Body, Params, Path, Shared};
use crate::auth::Caller;
use crate::catalog::CatalogError;
use crate::model::{Check, CheckSpec, CheckStatus, Role};
use crate::store::{self, checks::Filter};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_checks, create_check))
        .routes(routes!(get_check, update_check, delete_check))
        .routes(routes!(pause_check))
        .routes(routes!(resume_check))
}

// What a check may be. The document declares these same bounds
// (`contract`), so a client learns them before it is refused.
pub(super) const MAX_LIST: i64 = 5000;
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(60);
pub(super) const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// Entries of `locations`, `tags` and `allow`.
pub(super) const MAX_ITEMS: usize = 32;
/// Other locations that must confirm a failure: no more than a check can
/// name.
pub(super) const MAX_CONFIRM: u32 = MAX_ITEMS as u32;
pub(super) const MAX_DESCRIPTION: usize = 4096;
/// [`is_name`] as a regular expression.
pub(super) const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,62}$";

/// A check as readers see it: its config's secrets hidden (`redact`).
pub(super) fn shown(mut check: Check) -> Check {
    check.spec.config = crate::redact::redact(&check.spec.config);
    check
}

/// Puts back the stored secrets of a config sent back as it was read;
/// refuses a hidden secret with nothing (or another destination) behind it.
pub(super) fn restore_config(spec: &mut CheckSpec, stored: Option<&CheckSpec>) -> Result<(), ApiError> {
    crate::redact::restore(&mut spec.config, stored.map(|s| &s.config))
        .map_err(|message| ApiError::bad_request("invalid_check", message))
}

/// Refuses grants of non-public addresses that `caller` may not make. An
/// admin may grant any; an editor only ranges inside the operator's
/// `editor_grants`, or grants the check already has (`kept`), so editing a
/// check an admin opened up does not need the admin again.
pub(super) fn authorize_grants(
    state: &AppState,
    caller: &Caller,
    spec: &CheckSpec,
    kept: &[String],
) -> Result<(), ApiError> {
    // Admins grant anything; a watchdog's grant was held to its own
    // target's host by `authorize_watchdog`.
    if caller.has(Role::Admin) || caller.role == Role::Watchdog {
        return Ok(());
    }
    for entry in spec.allow.iter().filter(|entry| !kept.contains(entry)) {
        let Ok(Grant::Net(net)) = entry.parse::<Grant>() else { continue };
        let Some(why) = tocsin_runtime::reaches_non_public(&net) else { continue };
        if state.editor_grants.iter().any(|allowed| allowed.contains(&net)) {
            continue;
        }
        return Err(ApiError::forbidden(format!(
            "allow: {entry} reaches non-public addresses ({why}); only an admin may grant them, \
             or the operator may let editors grant ranges with `editor_grants` in the controller's configuration"
        ))
        .with_code("grant_needs_admin"));
    }
    Ok(())
}

/// Holds a watchdog token to exactly its lever on checks: its canary, an
/// `http` probe named `watchdog-<watchdog>-canary-<location>` that reaches
/// only the host its own target names (the watchdog). Anything else a
/// watchdog sends is refused, so a leaked watchdog token cannot silence,
/// redirect or open up a user's check. Other roles pass.
pub(super) fn authorize_watchdog(caller: &Caller, spec: &CheckSpec, stored_as: Option<&str>) -> Result<(), ApiError> {
    if caller.role != Role::Watchdog {
        return Ok(());
    }
    let refuse = |why: String| Err(ApiError::forbidden(why).with_code("not_a_canary"));
    let is_canary = |name: &str| name.starts_with("watchdog-") && name.contains("-canary-");
    for name in std::iter::once(spec.name.as_str()).chain(stored_as) {
        if !is_canary(name) {
            return refuse(format!(
                "a watchdog token may only write canary checks (watchdog-<watchdog>-canary-<location>), not {name:?}"
            ));
        }
    }
    if spec.plugin.split('@').next() != Some("http") {
        return refuse(format!("a canary is an http check; plugin {:?} needs an editor token", spec.plugin));
    }
    // The canary's nonce travels in a header (hidden from readers).
    let canary_keys = ["context_headers", "headers"];
    if let Some(key) =
        spec.config.as_object().into_iter().flat_map(|c| c.keys()).find(|k| !canary_keys.contains(&k.as_str()))
    {
        return refuse(format!(
            "config: a canary sets only context_headers and headers; {key:?} needs an editor token"
        ));
    }
    let host =
        url::Url::parse(&spec.target).ok().and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()));
    if let Some(entry) = spec.allow.iter().find(|entry| Some(entry.as_str()) != host.as_deref()) {
        return refuse(format!(
            "allow: a canary may grant only the host of its own target ({}), not {entry:?}",
            host.as_deref().unwrap_or("none")
        ));
    }
    Ok(())
}

/// Checks a spec as a user wrote it and returns it as it will be stored
/// (plugin resolved and pinned). Every refusal names the field at fault.
pub(super) async fn validate(state: &AppState, mut spec: CheckSpec) -> Result<CheckSpec, ApiError> {
    let invalid = |message: String| Err(ApiError::bad_request("invalid_check", message));
    if !is_name(&spec.name) {
        return invalid(format!(
            "name {:?}: use 1 to 63 lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit",
            spec.name
        ));
    }
    if let Some(policy) = &spec.policy {
        let mut conn = state.db.reader().acquire().await?;
        let found: Option<serde_json::Value> =
            crate::alerting::directory::get(&mut conn, crate::alerting::directory::POLICIES, policy).await?;
        if found.is_none() {
            return invalid(format!("policy: no escalation policy named {policy:?}"));
        }
    }
    if spec.description.len() > MAX_DESCRIPTION {
        return invalid(format!("description: {} bytes; the limit is {MAX_DESCRIPTION}", spec.description.len()));
    }
    if spec.confirm > MAX_CONFIRM {
        return invalid(format!("confirm: {} is out of range: 0 to {MAX_CONFIRM} other locations", spec.confirm));
    }
    let limits = state.catalog.runtime().limits();
    if spec.target.trim().is_empty() {
        return invalid("target: must not be empty".into());
    }
    if spec.target.len() > limits.max_target_bytes {
        return invalid(format!("target: {} bytes; the limit is {}", spec.target.len(), limits.max_target_bytes));
    }
    if spec.interval < state.min_interval || spec.interval > MAX_INTERVAL {
        return invalid(format!(
            "interval: {} is outside the allowed range {} to {}",
            fmt(spec.interval),
            fmt(state.min_interval),
            fmt(MAX_INTERVAL)
        ));
    }
    if spec.timeout.is_zero() {
        spec.timeout = crate::model::default_timeout(spec.interval);
    }
    if spec.timeout < Duration::from_millis(100) || spec.timeout > spec.interval.min(MAX_TIMEOUT) {
        return invalid(format!(
            "timeout: {} must be at least 100ms and at most the interval ({}) and {}",
            fmt(spec.timeout),
            fmt(spec.interval),
            fmt(MAX_TIMEOUT)
        ));
    }
    for (field, items) in [("locations", &spec.locations), ("tags", &spec.tags), ("allow", &spec.allow)] {
        if items.len() > MAX_ITEMS {
            return invalid(format!("{field}: at most {MAX_ITEMS} entries"));
        }
    }
    for (field, items) in [("locations", &spec.locations), ("tags", &spec.tags)] {
        if let Some(bad) = items.iter().find(|item| !is_name(item)) {
            return invalid(format!("{field}: {bad:?} must be lowercase letters, digits, `.`, `_` and `-`"));
        }
    }
    let mut grants = Vec::with_capacity(spec.allow.len());
    for entry in &spec.allow {
        match entry.parse::<Grant>() {
            Ok(grant) => grants.push(grant),
            Err(e) => return invalid(format!("allow: {e}")),
        }
    }
    if let Some(why) = state.catalog.runtime().unreachable_target(&spec.target, &grants) {
        return invalid(format!("target: {why} (CLI: --allow)"));
    }
    let (plugin, stored) = match state.catalog.resolve(&state.db, &spec.plugin, PluginKind::Check).await {
        Ok(found) => found,
        Err(CatalogError::Unknown(name)) => {
            return Err(ApiError::bad_request("unknown_plugin", format!("plugin: there is no plugin named {name:?}")));
        }
        Err(CatalogError::Invalid(message)) => {
            return Err(ApiError::bad_request("unknown_plugin", format!("plugin: {message}")));
        }
        Err(other) => return Err(other.into()),
    };
    if !spec.config.is_object() {
        return invalid("config: must be a JSON object".into());
    }
    let config_len = spec.config.to_string().len();
    if config_len > limits.max_config_bytes {
        return invalid(format!("config: {config_len} bytes; the limit is {}", limits.max_config_bytes));
    }
    if let Err(e) = plugin.validate_config(&spec.config) {
        return Err(ApiError::bad_request(
            "invalid_config",
            format!("plugin {} refuses this config: {e}", plugin.info().id()),
        )
        .with_details(serde_json::json!({ "problems": e.problems })));
    }
    spec.plugin = stored;
    Ok(spec)
}

fn fmt(d: Duration) -> String {
    crate::model::wire::format_duration(d)
}

/// Names of checks, locations and tags.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `pending`, `up`, `degraded`, `down` or `error`.
    #[param(value_type = Option<CheckStatus>)]
    status: Option<String>,
    /// Plugin name.
    plugin: Option<String>,
    location: Option<String>,
    tag: Option<String>,
    /// Continue after this check name (the previous page's `next`).
    after: Option<String>,
    /// Page size, at most 5000 (default 1000).
    limit: Option<i64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CheckList {
    pub checks: Vec<Check>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/checks", tag = "checks", params(ListQuery),
    responses((status = 200, description = "OK", body = CheckList), (status = 400, description = "Refused: the error names what is wrong", body = ErrorBody), (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody)))]
async fn list_checks(State(state): Shared, Params(q): Params<ListQuery>) -> Result<axum::Json<CheckList>, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(CheckStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("status {s:?}: use pending, up, degraded, down or error"))
        })?),
    };
    let limit = super::page_limit(q.limit, 1000, MAX_LIST)?;
    let filter =
        Filter { status, plugin: q.plugin, location: q.location, tag: q.tag, after: q.after, limit: Some(limit + 1) };
    let mut checks = store::checks::list(&state.db, &filter).await?;
    let next = if checks.len() as i64 > limit {
        checks.truncate(limit as usize);
        checks.last().map(|c| c.spec.name.clone())
    } else {
        None
    };
    Ok(axum::Json(CheckList { checks: checks.into_iter().map(shown).collect(), next }))
}

#[utoipa::path(post, path = "/api/v1/checks", tag = "checks", request_body = CheckSpec,
    responses((status = 201, description = "Created", body = Check), (status = 400, description = "Refused: the error names what is wrong", body = ErrorBody), (status = 403, description = "The token's role does not allow this", body = ErrorBody), (status = 409, description = "Conflicts with what exists", body = ErrorBody)))]
async fn create_check(
    State(state): Shared,
    caller: Caller,
    Body(mut spec): Body<CheckSpec>,
) -> Result<(StatusCode, axum::Json<Check>), ApiError> {
    authorize_watchdog(&caller, &spec, None)?;
    restore_config(&mut spec, None)?;
    let spec = validate(&state, spec).await?;
    authorize_grants(&state, &caller, &spec, &[])?;
    let mut tx = state.db.writer().begin().await?;
    let check = store::checks::create(&mut tx, state.db.keys(), &spec, &caller.actor()).await?;
    tx.commit().await?;
    state.changes.notify_one();
    tracing::info!(check = %check.spec.name, plugin = %check.spec.plugin, actor = %caller.actor(), "check created");
    Ok((StatusCode::CREATED, axum::Json(shown(check))))
}

#[utoipa::path(get, path = "/api/v1/checks/{name}", tag = "checks", params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = Check), (status = 404, description = "Not found", body = ErrorBody)))]
async fn get_check(State(state): Shared, Path(name): Path<String>) -> Result<axum::Json<Check>, ApiError> {
    Ok(axum::Json(shown(store::checks::get(&state.db, &name).await?)))
}

#[utoipa::path(put, path = "/api/v1/checks/{name}", tag = "checks", params(("name" = String, Path)), request_body = CheckSpec,
    responses((status = 200, description = "OK", body = Check), (status = 400, description = "Refused: the error names what is wrong", body = ErrorBody), (status = 404, description = "Not found", body = ErrorBody), (status = 409, description = "Conflicts with what exists", body = ErrorBody)))]
async fn update_check(
    State(state): Shared,
    caller: Caller,
    Path(name): Path<String>,
    Body(mut spec): Body<CheckSpec>,
) -> Result<axum::Json<Check>, ApiError> {
    authorize_watchdog(&caller, &spec, Some(&name))?;
    let stored = store::checks::get(&state.db, &name).await?.spec;
    restore_config(&mut spec, Some(&stored))?;
    let spec = validate(&state, spec).await?;
    authorize_grants(&state, &caller, &spec, &stored.allow)?;
    let mut tx = state.db.writer().begin().await?;
    let check = store::checks::update(&mut tx, state.db.keys(), &name, &spec, &caller.actor()).await?;
    tx.commit().await?;
    state.changes.notify_one();
    Ok(axum::Json(shown(check)))
}

#[utoipa::path(delete, path = "/api/v1/checks/{name}", tag = "checks", params(("name" = String, Path)),
    responses((status = 204, description = "Done"), (status = 404, description = "Not found", body = ErrorBody)))]
async fn delete_check(State(state): Shared, caller: Caller, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.writer().begin().await?;
    store::checks::delete(&mut tx, state.db.keys(), &name, &caller.actor()).await?;
    tx.commit().await?;
    state.changes.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/checks/{name}/pause", tag = "checks", params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = Check), (status = 404, description = "Not found", body = ErrorBody)))]
async fn pause_check(
    State(state): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<axum::Json<Check>, ApiError> {
    set_paused(state, caller, name, true).await
}

#[utoipa::path(post, path = "/api/v1/checks/{name}/resume", tag = "checks", params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = Check), (status = 404, description = "Not found", body = ErrorBody)))]
async fn resume_check(
    State(state): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<axum::Json<Check>, ApiError> {
    set_paused(state, caller, name, false).await
}

async fn set_paused(
    state: Arc<AppState>,
    caller: Caller,
    name: String,
    paused: bool,
) -> Result<axum::Json<Check>, ApiError> {
    let mut tx = state.db.writer().begin().await?;
    let check = store::checks::set_paused(&mut tx, state.db.keys(), &name, paused, &caller.actor()).await?;
    tx.commit().await?;
    state.changes.notify_one();
    Ok(axum::Json(shown(check)))
}
