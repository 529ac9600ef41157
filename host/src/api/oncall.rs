//! `/api/v1/{contacts,policies,gateways,routes,maintenance}`: the
//! configuration of alerting. The same five calls for each (list, show,
//! create, replace, delete), validated by `alerting::directory`, each write
//! with its audit entry. Contacts, gateways and routes (phone numbers,
//! addresses, provider credentials) need the admin role to change.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::AnyConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Body, Path, Shared};
use crate::alerting::directory::{self, Invalid, Kind};
use crate::alerting::model::{Contact, Gateway, Maintenance, Policy, Route};
use crate::auth::Caller;
use crate::model::now_ms;
use crate::store::audit::{self, Change};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_contacts, create_contact))
        .routes(routes!(get_contact, replace_contact, delete_contact))
        .routes(routes!(list_policies, create_policy))
        .routes(routes!(get_policy, replace_policy, delete_policy))
        .routes(routes!(list_gateways, create_gateway))
        .routes(routes!(get_gateway, replace_gateway, delete_gateway))
        .routes(routes!(list_routes, create_route))
        .routes(routes!(get_route, replace_route, delete_route))
        .routes(routes!(list_maintenance, create_maintenance))
        .routes(routes!(get_maintenance, replace_maintenance, delete_maintenance))
}

/// A configuration object of alerting.
trait Resource: Serialize + DeserializeOwned + Send + 'static {
    const KIND: Kind;
    fn name(&self) -> &str;
    /// Checks it (and fills in secrets kept from `before`).
    async fn validate(
        &mut self,
        state: &AppState,
        conn: &mut AnyConnection,
        before: Option<&Value>,
    ) -> Result<(), Invalid>;
    /// As shown to API clients: secrets hidden (a gateway's config, a
    /// contact's webhook URL).
    fn shown(mut value: Value) -> Value {
        crate::redact::hide_in(&mut value);
        value
    }
}

impl Resource for Contact {
    const KIND: Kind = directory::CONTACTS;
    fn name(&self) -> &str {
        &self.name
    }
    async fn validate(&mut self, _: &AppState, _: &mut AnyConnection, before: Option<&Value>) -> Result<(), Invalid> {
        // A webhook channel's URL sent back hidden keeps the stored one.
        let invalid = |message: String| Invalid { field: "channels".into(), message };
        let mut channels = serde_json::to_value(&self.channels).map_err(|e| invalid(e.to_string()))?;
        crate::redact::restore_channels(&mut channels, before.and_then(|b| b.get("channels"))).map_err(invalid)?;
        self.channels = serde_json::from_value(channels).map_err(|e| invalid(e.to_string()))?;
        directory::validate_contact(self)
    }
}

impl Resource for Policy {
    const KIND: Kind = directory::POLICIES;
    fn name(&self) -> &str {
        &self.name
    }
    async fn validate(&mut self, _: &AppState, conn: &mut AnyConnection, _: Option<&Value>) -> Result<(), Invalid> {
        directory::validate_policy(conn, self).await
    }
}

impl Resource for Gateway {
    const KIND: Kind = directory::GATEWAYS;
    fn name(&self) -> &str {
        &self.name
    }
    async fn validate(
        &mut self,
        state: &AppState,
        _: &mut AnyConnection,
        before: Option<&Value>,
    ) -> Result<(), Invalid> {
        let old = before.and_then(|b| b.get("config"));
        crate::redact::restore(&mut self.config, old).map_err(|message| Invalid { field: "config".into(), message })?;
        directory::validate_gateway(&state.catalog, &state.db, self).await
    }
}

impl Resource for Route {
    const KIND: Kind = directory::ROUTES;
    fn name(&self) -> &str {
        &self.name
    }
    async fn validate(&mut self, _: &AppState, conn: &mut AnyConnection, _: Option<&Value>) -> Result<(), Invalid> {
        directory::validate_route(conn, self).await
    }
}

impl Resource for Maintenance {
    const KIND: Kind = directory::MAINTENANCE;
    fn name(&self) -> &str {
        &self.name
    }
    async fn validate(&mut self, _: &AppState, _: &mut AnyConnection, _: Option<&Value>) -> Result<(), Invalid> {
        directory::validate_maintenance(self)
    }
}

fn refused(kind: Kind, e: Invalid) -> ApiError {
    ApiError::bad_request("invalid_object", format!("{}: {e}", kind.noun))
        .with_details(serde_json::json!({"field": e.field}))
}

async fn list<R: Resource>(state: &AppState) -> Result<Vec<Value>, ApiError> {
    let mut conn = state.db.reader().acquire().await?;
    let all: Vec<Value> = directory::list_opened(&mut conn, state.db.keys(), R::KIND).await?;
    Ok(all.into_iter().map(R::shown).collect())
}

async fn show<R: Resource>(state: &AppState, name: &str) -> Result<Value, ApiError> {
    let mut conn = state.db.reader().acquire().await?;
    let found: Option<Value> = directory::get_opened(&mut conn, state.db.keys(), R::KIND, name).await?;
    found.map(R::shown).ok_or_else(|| ApiError::not_found(format!("{} {name} not found", R::KIND.noun)))
}

async fn put<R: Resource>(
    state: &AppState,
    caller: &Caller,
    path: Option<&str>,
    mut object: R,
) -> Result<Value, ApiError> {
    if let Some(name) = path
        && name != object.name()
    {
        return Err(ApiError::bad_request(
            "invalid_object",
            format!("the body names {:?} but the URL names {name:?}; renaming is not supported", object.name()),
        ));
    }
    let mut tx = state.db.writer().begin().await?;
    let existing: Option<Value> = directory::get_opened(&mut tx, state.db.keys(), R::KIND, object.name()).await?;
    object.validate(state, &mut tx, existing.as_ref()).await.map_err(|e| refused(R::KIND, e))?;
    let name = object.name().to_string();
    let before = directory::put(&mut tx, state.db.keys(), R::KIND, &name, &object, path.is_some(), now_ms()).await?;
    let after = serde_json::to_value(&object).ok().map(R::shown);
    let action = format!("{}.{}", R::KIND.key, if path.is_some() { "update" } else { "create" });
    let change = Change {
        actor: &caller.actor(),
        action: &action,
        kind: R::KIND.noun,
        name: &name,
        before: before.map(R::shown),
        after: after.clone(),
    };
    audit::record(&mut tx, change).await?;
    tx.commit().await?;
    tracing::info!(kind = R::KIND.noun, name = %name, actor = %caller.actor(), "{action}");
    Ok(after.unwrap_or_default())
}

async fn remove<R: Resource>(state: &AppState, caller: &Caller, name: &str) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.writer().begin().await?;
    let users = directory::users(&mut tx, R::KIND, name).await?;
    if !users.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "in_use",
            format!("{} {name} is in use by {}", R::KIND.noun, users.join(", ")),
        ));
    }
    let before = directory::delete(&mut tx, state.db.keys(), R::KIND, name).await?;
    let action = format!("{}.delete", R::KIND.key);
    let change = Change {
        actor: &caller.actor(),
        action: &action,
        kind: R::KIND.noun,
        name,
        before: Some(R::shown(before)),
        after: None,
    };
    audit::record(&mut tx, change).await?;
    tx.commit().await?;
    tracing::info!(kind = R::KIND.noun, name, actor = %caller.actor(), "{action}");
    Ok(StatusCode::NO_CONTENT)
}

/// The five annotated handlers of one resource.
macro_rules! resource {
    ($ty:ty, $tag:literal, $list_path:literal, $item_path:literal,
     $list:ident, $create:ident, $get:ident, $replace:ident, $delete:ident) => {
        #[utoipa::path(get, path = $list_path, tag = $tag,
            responses((status = 200, description = "All of them", body = Vec<$ty>)))]
        async fn $list(State(state): Shared) -> Result<axum::Json<Vec<Value>>, ApiError> {
            list::<$ty>(&state).await.map(axum::Json)
        }

        #[utoipa::path(post, path = $list_path, tag = $tag, request_body = $ty,
            responses((status = 201, description = "Created", body = $ty),
                      (status = 400, description = "Refused: the error names the field", body = ErrorBody),
                      (status = 409, description = "It exists already", body = ErrorBody)))]
        async fn $create(State(state): Shared, caller: Caller, Body(object): Body<$ty>)
            -> Result<(StatusCode, axum::Json<Value>), ApiError> {
            put::<$ty>(&state, &caller, None, object).await.map(|v| (StatusCode::CREATED, axum::Json(v)))
        }

        #[utoipa::path(get, path = $item_path, tag = $tag, params(("name" = String, Path)),
            responses((status = 200, description = "OK", body = $ty), (status = 404, description = "Not found", body = ErrorBody)))]
        async fn $get(State(state): Shared, Path(name): Path<String>) -> Result<axum::Json<Value>, ApiError> {
            show::<$ty>(&state, &name).await.map(axum::Json)
        }

        #[utoipa::path(put, path = $item_path, tag = $tag, params(("name" = String, Path)), request_body = $ty,
            responses((status = 200, description = "Replaced", body = $ty),
                      (status = 400, description = "Refused: the error names the field", body = ErrorBody),
                      (status = 404, description = "Not found", body = ErrorBody)))]
        async fn $replace(State(state): Shared, caller: Caller, Path(name): Path<String>, Body(object): Body<$ty>)
            -> Result<axum::Json<Value>, ApiError> {
            put::<$ty>(&state, &caller, Some(&name), object).await.map(axum::Json)
        }

        #[utoipa::path(delete, path = $item_path, tag = $tag, params(("name" = String, Path)),
            responses((status = 204, description = "Deleted"), (status = 404, description = "Not found", body = ErrorBody),
                      (status = 409, description = "Still in use", body = ErrorBody)))]
        async fn $delete(State(state): Shared, caller: Caller, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
            remove::<$ty>(&state, &caller, &name).await
        }
    };
}

resource!(
    Contact,
    "alerting",
    "/api/v1/contacts",
    "/api/v1/contacts/{name}",
    list_contacts,
    create_contact,
    get_contact,
    replace_contact,
    delete_contact
);
resource!(
    Policy,
    "alerting",
    "/api/v1/policies",
    "/api/v1/policies/{name}",
    list_policies,
    create_policy,
    get_policy,
    replace_policy,
    delete_policy
);
resource!(
    Gateway,
    "alerting",
    "/api/v1/gateways",
    "/api/v1/gateways/{name}",
    list_gateways,
    create_gateway,
    get_gateway,
    replace_gateway,
    delete_gateway
);
resource!(
    Route,
    "alerting",
    "/api/v1/routes",
    "/api/v1/routes/{name}",
    list_routes,
    create_route,
    get_route,
    replace_route,
    delete_route
);
resource!(
    Maintenance,
    "alerting",
    "/api/v1/maintenance",
    "/api/v1/maintenance/{name}",
    list_maintenance,
    create_maintenance,
    get_maintenance,
    replace_maintenance,
    delete_maintenance
);
