//! One error type for every handler, mapped to a status code and a JSON
//! body with a stable `code`. Server-side failures are logged here, where
//! they are turned into responses; client errors are not (they are the
//! client's to read).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::catalog::CatalogError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for scripts: `not_found`, `invalid_config`, `conflict`, ...
    pub code: String,
    /// For people: names what is wrong.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: None }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn from_json_rejection(rejection: JsonRejection) -> Self {
        let text = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => Self::bad_request("invalid_body", text),
            JsonRejection::JsonSyntaxError(_) => Self::bad_request("malformed_json", text),
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(_) if text.contains("length limit") => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", text)
            }
            _ => Self::bad_request("invalid_body", text),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail { code: self.code.to_string(), message: self.message, details: self.details },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            // 503, so a client with several servers tries the next one.
            StoreError::Passive(message) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "site_passive", message),
            StoreError::Db(db) => {
                tracing::error!(error = %db, "database error while serving a request");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; try again",
                )
            }
            other => {
                tracing::error!(error = %other, "storage error while serving a request");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", other.to_string())
            }
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(store) => store.into(),
            AuthError::Throttled(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_failures", e.to_string()),
            other => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", other.to_string()),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Unknown(name) => ApiError::not_found(format!("no plugin named {name:?}")),
            CatalogError::Invalid(message) => ApiError::bad_request("invalid_plugin", message),
            CatalogError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            CatalogError::Load(load) => {
                let status = match load {
                    tocsin_runtime::LoadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    // Not the upload's fault: the node is overloaded.
                    tocsin_runtime::LoadError::Describe(tocsin_runtime::RunErrorKind::NoSlot { .. }) => {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                    _ => StatusCode::BAD_REQUEST,
                };
                ApiError::new(status, load.code(), format!("the upload is not a plugin Tocsin accepts: {load}"))
            }
            CatalogError::Store(store) => store.into(),
        }
    }
}
