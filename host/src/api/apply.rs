//! `/api/v1/apply`: config as code. The document lists the checks that
//! should exist; applying it creates, updates (and with `prune`, deletes)
//! checks to match, in one transaction. Applying the same document twice
//! changes nothing the second time. `dry_run` returns the plan only.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Body, Params, Shared};
use crate::auth::Caller;
use crate::model::CheckSpec;
use crate::store;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(apply))
}

/// A config-as-code document (the YAML or TOML file, as JSON).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApplyQuery {
    /// Only compute the plan.
    #[serde(default)]
    dry_run: bool,
    /// Also delete checks the document does not list.
    #[serde(default)]
    prune: bool,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    pub created: Vec<String>,
    pub updated: Vec<Update>,
    pub deleted: Vec<String>,
    pub unchanged: Vec<String>,
    /// False for a dry run.
    pub applied: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Update {
    pub name: String,
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FieldChange {
    pub field: String,
    /// The field's value, whatever its type (`null`: absent).
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

#[utoipa::path(post, path = "/api/v1/apply", tag = "checks", params(ApplyQuery), request_body = Document,
    responses((status = 200, description = "OK", body = Plan), (status = 400, description = "Refused: the error names what is wrong", body = ErrorBody), (status = 403, description = "The token's role does not allow this", body = ErrorBody)))]
async fn apply(
    State(state): Shared,
    caller: Caller,
    Params(q): Params<ApplyQuery>,
    Body(document): Body<Document>,
) -> Result<axum::Json<Plan>, ApiError> {
    let existing: BTreeMap<String, CheckSpec> = store::checks::list(&state.db, &Default::default())
        .await?
        .into_iter()
        .map(|c| (c.spec.name.clone(), c.spec))
        .collect();
    let mut seen = HashSet::new();
    let mut wanted = Vec::with_capacity(document.checks.len());
    for (i, mut spec) in document.checks.into_iter().enumerate() {
        if !seen.insert(spec.name.clone()) {
            return Err(ApiError::bad_request(
                "invalid_document",
                format!("checks[{i}]: the name {:?} appears twice", spec.name),
            ));
        }
        let name = spec.name.clone();
        let in_document = |mut e: ApiError| {
            e.message = format!("checks[{i}] ({name}): {}", e.message);
            e
        };
        // An exported document holds hidden secrets: they stand for the stored ones.
        super::checks::restore_config(&mut spec, existing.get(&name)).map_err(in_document)?;
        let spec = super::checks::validate(&state, spec).await.map_err(in_document)?;
        wanted.push(spec);
    }
    for (i, spec) in wanted.iter().enumerate() {
        let kept = existing.get(&spec.name).map(|c| c.allow.as_slice()).unwrap_or_default();
        super::checks::authorize_grants(&state, &caller, spec, kept).map_err(|mut e| {
            e.message = format!("checks[{i}] ({}): {}", spec.name, e.message);
            e
        })?;
    }
    let mut plan = Plan::default();
    for spec in &wanted {
        match existing.get(&spec.name) {
            None => plan.created.push(spec.name.clone()),
            Some(current) if current == spec => plan.unchanged.push(spec.name.clone()),
            Some(current) => plan.updated.push(Update { name: spec.name.clone(), changes: diff(current, spec) }),
        }
    }
    if q.prune {
        plan.deleted = existing.keys().filter(|name| !seen.contains(*name)).cloned().collect();
    }
    if q.dry_run || (plan.created.is_empty() && plan.updated.is_empty() && plan.deleted.is_empty()) {
        return Ok(axum::Json(plan));
    }

    let actor = caller.actor();
    let mut tx = state.db.writer().begin().await?;
    for spec in &wanted {
        if plan.created.contains(&spec.name) {
            store::checks::create(&mut tx, state.db.keys(), spec, &actor).await?;
        } else if plan.updated.iter().any(|u| u.name == spec.name) {
            store::checks::update(&mut tx, state.db.keys(), &spec.name, spec, &actor).await?;
        }
    }
    for name in &plan.deleted {
        store::checks::delete(&mut tx, state.db.keys(), name, &actor).await?;
    }
    tx.commit().await?;
    state.changes.notify_one();
    plan.applied = true;
    tracing::info!(
        created = plan.created.len(), updated = plan.updated.len(), deleted = plan.deleted.len(),
        actor = %actor, "configuration applied"
    );
    Ok(axum::Json(plan))
}

/// The fields that differ, with their values before and after.
fn diff(before: &CheckSpec, after: &CheckSpec) -> Vec<FieldChange> {
    let (serde_json::Value::Object(b), serde_json::Value::Object(a)) =
        (serde_json::to_value(before).unwrap_or_default(), serde_json::to_value(after).unwrap_or_default())
    else {
        return Vec::new();
    };
    a.iter()
        .filter(|(field, value)| b.get(*field) != Some(value))
        .map(|(field, value)| {
            // A plan shows that a secret changes, never what it is.
            let shown = |v: &serde_json::Value| if field == "config" { crate::redact::redact(v) } else { v.clone() };
            FieldChange {
                field: field.clone(),
                before: b.get(field).map(shown).unwrap_or(serde_json::Value::Null),
                after: shown(value),
            }
        })
        .collect()
}
