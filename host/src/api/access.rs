//! Who may call what: the role matrix, as one table, enforced before any
//! handler runs (and before its body is read).
//!
//! Every route has a row: a route without one is refused to everyone, and
//! a test fails until every operation has one (`host/tests/api.rs`), as it
//! fails when `docs/security.md` does not show this very table. Handlers still check
//! finer rules themselves (an editor's network grants, a node's key).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::model::Role;

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token: health, metrics, the document, signed links and callbacks.
    Public,
    /// A token with this role (or a higher one; scoped roles stand apart).
    Role(Role),
    /// A token with the first role (or a higher one), or with the scoped
    /// role second: the integration that needs exactly this route.
    RoleOr(Role, Role),
}

impl Access {
    pub fn allows(self, caller: &Caller) -> bool {
        match self {
            Public => true,
            Access::Role(role) => caller.has(role),
            Access::RoleOr(role, scoped) => caller.has(role) || caller.has(scoped),
        }
    }

    /// Who may, in words (the table's last column, and refusals).
    fn needs(self) -> String {
        match self {
            Public => "no token".to_string(),
            Access::Role(role) if role.is_scoped() => format!("`{role}`"),
            // A watchdog reads what a viewer reads (`Caller::has`).
            Access::Role(Role::Viewer) => "`viewer` or higher, or `watchdog`".to_string(),
            Access::Role(role) => format!("`{role}` or higher"),
            Access::RoleOr(role, scoped) => format!("`{role}` or higher, or `{scoped}`"),
        }
    }
}

use Access::Public;
const VIEWER: Access = Access::Role(Role::Viewer);
const EDITOR: Access = Access::Role(Role::Editor);
const ADMIN: Access = Access::Role(Role::Admin);
const NODE: Access = Access::Role(Role::Node);
/// Raising and resolving inbound alerts: editors and alert sources.
const ALERTS: Access = Access::RoleOr(Role::Editor, Role::Alerts);
/// A watchdog's levers: its canary checks (the handler holds it to
/// those), evicting a node, revoking the lease.
const EDITOR_OR_WATCHDOG: Access = Access::RoleOr(Role::Editor, Role::Watchdog);
const ADMIN_OR_WATCHDOG: Access = Access::RoleOr(Role::Admin, Role::Watchdog);

/// Every route: method, route as the router names it, what it needs.
pub const MATRIX: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/metrics", Public),
    ("GET", "/api/v1/openapi.json", Public),
    ("GET", "/respond/{link}", Public),
    ("POST", "/respond/{link}", Public),
    ("POST", "/api/v1/callbacks/twilio/{link}", Public),
    ("GET", "/api/v1/sync/status", Public),
    ("GET", "/api/v1/checks", VIEWER),
    ("POST", "/api/v1/checks", EDITOR_OR_WATCHDOG),
    ("GET", "/api/v1/checks/{name}", VIEWER),
    ("PUT", "/api/v1/checks/{name}", EDITOR_OR_WATCHDOG),
    ("DELETE", "/api/v1/checks/{name}", EDITOR),
    ("POST", "/api/v1/checks/{name}/pause", EDITOR),
    ("POST", "/api/v1/checks/{name}/resume", EDITOR),
    ("GET", "/api/v1/checks/{name}/runs", VIEWER),
    ("GET", "/api/v1/checks/{name}/series", VIEWER),
    ("GET", "/api/v1/runs/latest", VIEWER),
    ("POST", "/api/v1/apply", EDITOR),
    ("GET", "/api/v1/plugins", VIEWER),
    ("POST", "/api/v1/plugins", EDITOR),
    ("GET", "/api/v1/plugins/{name}", VIEWER),
    ("GET", "/api/v1/plugins/{name}/{version}", VIEWER),
    ("DELETE", "/api/v1/plugins/{name}/{version}", EDITOR),
    ("GET", "/api/v1/incidents", VIEWER),
    ("GET", "/api/v1/incidents/{id}", VIEWER),
    ("POST", "/api/v1/incidents/{id}/accept", EDITOR),
    ("POST", "/api/v1/incidents/{id}/reject", EDITOR),
    ("POST", "/api/v1/incidents/{id}/resolve", EDITOR),
    ("POST", "/api/v1/alerts", ALERTS),
    ("POST", "/api/v1/alerts/alertmanager", ALERTS),
    ("GET", "/api/v1/silences", VIEWER),
    ("POST", "/api/v1/silences", EDITOR),
    ("DELETE", "/api/v1/silences/{id}", EDITOR),
    ("GET", "/api/v1/policies", VIEWER),
    ("POST", "/api/v1/policies", EDITOR),
    ("GET", "/api/v1/policies/{name}", VIEWER),
    ("PUT", "/api/v1/policies/{name}", EDITOR),
    ("DELETE", "/api/v1/policies/{name}", EDITOR),
    ("GET", "/api/v1/maintenance", VIEWER),
    ("POST", "/api/v1/maintenance", EDITOR),
    ("GET", "/api/v1/maintenance/{name}", VIEWER),
    ("PUT", "/api/v1/maintenance/{name}", EDITOR),
    ("DELETE", "/api/v1/maintenance/{name}", EDITOR),
    ("GET", "/api/v1/contacts", VIEWER),
    ("POST", "/api/v1/contacts", ADMIN),
    ("GET", "/api/v1/contacts/{name}", VIEWER),
    ("PUT", "/api/v1/contacts/{name}", ADMIN),
    ("DELETE", "/api/v1/contacts/{name}", ADMIN),
    ("GET", "/api/v1/gateways", VIEWER),
    ("POST", "/api/v1/gateways", ADMIN),
    ("GET", "/api/v1/gateways/totals", VIEWER),
    ("GET", "/api/v1/gateways/{name}", VIEWER),
    ("PUT", "/api/v1/gateways/{name}", ADMIN),
    ("DELETE", "/api/v1/gateways/{name}", ADMIN),
    ("GET", "/api/v1/routes", VIEWER),
    ("POST", "/api/v1/routes", ADMIN),
    ("GET", "/api/v1/routes/{name}", VIEWER),
    ("PUT", "/api/v1/routes/{name}", ADMIN),
    ("DELETE", "/api/v1/routes/{name}", ADMIN),
    ("GET", "/api/v1/nodes", VIEWER),
    ("DELETE", "/api/v1/nodes/{id}", ADMIN),
    ("POST", "/api/v1/nodes/{id}/drain", ADMIN),
    ("POST", "/api/v1/nodes/{id}/evict", ADMIN_OR_WATCHDOG),
    ("POST", "/api/v1/nodes/{id}/resume", ADMIN),
    ("GET", "/api/v1/cluster", VIEWER),
    ("POST", "/api/v1/cluster/lease/revoke", ADMIN_OR_WATCHDOG),
    ("GET", "/api/v1/tokens", ADMIN),
    ("POST", "/api/v1/tokens", ADMIN),
    ("DELETE", "/api/v1/tokens/{id}", ADMIN),
    ("GET", "/api/v1/audit", ADMIN),
    ("POST", "/api/v1/link-keys/rotate", ADMIN),
    ("GET", "/api/v1/sync/feed", ADMIN),
    ("GET", "/api/v1/sync/snapshot", ADMIN),
    ("GET", "/api/v1/sync/plugins/{sha256}", ADMIN),
    ("POST", "/api/v1/sync/follow", ADMIN),
    ("POST", "/api/v1/sync/recover", ADMIN),
    ("POST", "/api/v1/sync/promote", ADMIN),
    ("POST", "/api/v1/node/enroll", NODE),
    ("POST", "/api/v1/node/heartbeat", NODE),
    ("GET", "/api/v1/node/work", NODE),
    ("POST", "/api/v1/node/results", NODE),
    ("GET", "/api/v1/node/plugins/{sha256}", NODE),
];

/// What `method` on `route` needs; `None` for a route without a row.
pub fn required(method: &Method, route: &str) -> Option<Access> {
    // HEAD is answered by a GET route.
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    MATRIX.iter().find(|(m, r, _)| *m == method && *r == route).map(|(_, _, access)| *access)
}

/// The matrix as the Markdown table `docs/security.md` shows.
pub fn markdown() -> String {
    let mut table = String::from("| Method | Route | Needs |\n|--------|-------|-------|\n");
    for (method, route, access) in MATRIX {
        table.push_str(&format!("| {method} | `{route}` | {} |\n", access.needs()));
    }
    table
}

/// Refuses a caller the matrix does not allow, before the handler (and
/// its body parsing) runs; passes the authenticated caller on.
pub async fn enforce(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let access = match required(request.method(), &route) {
        Some(Public) => return next.run(request).await,
        Some(access) => access,
        // A method the route does not take: the router answers 405. (Every
        // method a route does take has a row: the matrix test checks.)
        None if MATRIX.iter().any(|(_, r, _)| *r == route) => return next.run(request).await,
        None => {
            tracing::error!(method = %request.method(), %route, "a route without a row in the role matrix: refused");
            return ApiError::forbidden(format!("{} {route} has no rule in the role matrix", request.method()))
                .into_response();
        }
    };
    let (mut parts, body) = request.into_parts();
    let caller = match super::authenticate(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    if !access.allows(&caller) {
        return ApiError::forbidden(format!(
            "{} {route} needs {}; the token {:?} has the {} role",
            parts.method,
            access.needs(),
            caller.name,
            caller.role
        ))
        .into_response();
    }
    parts.extensions.insert(caller);
    request = Request::from_parts(parts, body);
    next.run(request).await
}
