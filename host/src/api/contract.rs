//! The served OpenAPI document is a contract: every answer must match it,
//! and the test suite holds the real binary to it with Schemathesis
//! (`tests/tests/contract.rs`). utoipa derives the document from the
//! handlers; this completes it with what the derive cannot know:
//!
//! - the errors any operation can answer whatever its handler does: 401,
//!   403 and 429 where a token is needed, 400, 413 and 415 where a body is read, 400
//!   where parameters are parsed, 404 where the path names an object, 503
//!   when the database is down or the site is passive;
//! - the bounds the handlers enforce, declared from the very constants (and
//!   this server's settings) they enforce them with: utoipa's attributes
//!   take only literals, which would drift from the code.

use serde_json::{Map, Value, json};

use super::AppState;
use crate::alerting::directory;
use crate::alerting::model::{CHANNELS, SEVERITIES};

/// The document as served.
pub fn complete(doc: utoipa::openapi::OpenApi, state: &AppState) -> Value {
    let mut doc = serde_json::to_value(doc).expect("an OpenAPI document is JSON");
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths {
            let Some(item) = item.as_object_mut() else { continue };
            for (method, operation) in item {
                if METHODS.contains(&method.as_str()) {
                    add_errors(path, operation);
                }
            }
        }
    }
    for (target, bound) in bounds(state) {
        declare(&mut doc, &target, bound);
    }
    doc
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

/// Adds the errors `operation` can answer that it does not list yet.
fn add_errors(path: &str, operation: &mut Value) {
    // `security: [{}]` marks an operation open to all; none means the
    // document's default, a token.
    let secured = match operation.get("security").and_then(Value::as_array) {
        None => true,
        Some(requirements) => requirements.iter().any(|r| r.as_object().is_some_and(|r| !r.is_empty())),
    };
    let params = operation.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
    let in_path = params.iter().any(|p| p["in"] == "path");
    let mut errors = Vec::new();
    if operation.get("requestBody").is_some() {
        errors.extend([
            ("400", "The body is not what this operation takes: the error names what is wrong"),
            ("413", "The body is over the size limit"),
            ("415", "The body is not of a media type this operation takes"),
        ]);
    }
    if !params.is_empty() {
        errors.push(("400", "A parameter is malformed or out of range: the error names it"));
    }
    if secured {
        errors.extend([
            ("401", "No token, or an unknown or revoked one"),
            ("403", "The token's role does not allow this"),
            ("429", "Too many wrong tokens from this address: wait, then send a valid one"),
        ]);
        if in_path {
            errors.push(("404", "Not found"));
        }
    }
    if path.starts_with("/api/v1/") {
        errors.push((
            "503",
            "The database is unavailable, or this site is passive and takes no changes: try another server",
        ));
    }
    let responses = operation["responses"].as_object_mut().expect("every operation has responses");
    for (status, description) in errors {
        responses.entry(status).or_insert_with(|| {
            json!({
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
            })
        });
    }
}

/// Where a bound goes: a property of a component schema, or a parameter
/// of an operation.
enum Target {
    Field(&'static str, &'static str),
    Param(&'static str, &'static str, &'static str),
}

/// A duration on the wire: `30s`-style text, or a number of seconds (which
/// `minimum` and `maximum` bound).
fn duration(min_secs: f64, max_secs: f64) -> Value {
    json!({"type": ["string", "number"], "minimum": min_secs, "maximum": max_secs})
}

fn name() -> Value {
    json!({"pattern": super::checks::NAME_PATTERN})
}

/// Every bound the handlers enforce that a schema can say.
fn bounds(state: &AppState) -> Vec<(Target, Value)> {
    use super::checks::{MAX_CONFIRM, MAX_DESCRIPTION, MAX_INTERVAL, MAX_ITEMS, MAX_LIST, MAX_TIMEOUT, NAME_PATTERN};
    use super::{MAX_PAGE, MAX_WAIT_MS};
    use Target::{Field, Param};
    let names = json!({"maxItems": MAX_ITEMS, "items": {"type": "string", "pattern": NAME_PATTERN}});
    let max_target = state.catalog.runtime().limits().max_target_bytes;
    let page = |max: i64| json!({"minimum": 1, "maximum": max});
    vec![
        (Field("CheckSpec", "name"), name()),
        (Field("CheckSpec", "description"), json!({"maxLength": MAX_DESCRIPTION})),
        (Field("CheckSpec", "target"), json!({"minLength": 1, "maxLength": max_target})),
        (Field("CheckSpec", "interval"), duration(state.min_interval.as_secs_f64(), MAX_INTERVAL.as_secs_f64())),
        // 0: the default timeout.
        (Field("CheckSpec", "timeout"), duration(0.0, MAX_TIMEOUT.as_secs_f64())),
        (Field("CheckSpec", "locations"), names.clone()),
        (Field("CheckSpec", "tags"), names),
        (Field("CheckSpec", "allow"), json!({"maxItems": MAX_ITEMS})),
        (Field("CheckSpec", "confirm"), json!({"minimum": 0, "maximum": MAX_CONFIRM})),
        (Field("CheckSpec", "policy"), name()),
        (Param("get", "/api/v1/checks", "limit"), page(MAX_LIST)),
        (Param("get", "/api/v1/checks/{name}/runs", "limit"), page(MAX_PAGE)),
        (Param("get", "/api/v1/audit", "limit"), page(MAX_PAGE)),
        (Param("get", "/api/v1/incidents", "limit"), page(MAX_PAGE)),
        (
            Param("get", "/api/v1/incidents", "state"),
            json!({"enum": ["triggered", "acknowledged", "resolved", "open"]}),
        ),
        (Param("get", "/api/v1/sync/feed", "limit"), page(MAX_PAGE)),
        (Param("get", "/api/v1/sync/feed", "wait_ms"), json!({"maximum": MAX_WAIT_MS})),
        (Param("get", "/api/v1/node/work", "wait_ms"), json!({"maximum": MAX_WAIT_MS})),
        (Field("TokenRequest", "name"), json!({"minLength": 1, "maxLength": super::tokens::MAX_NAME})),
        (Field("Alert", "source"), json!({"minLength": 1, "maxLength": super::alerts::MAX_KEY})),
        (Field("Alert", "key"), json!({"minLength": 1, "maxLength": super::alerts::MAX_KEY})),
        (Field("Alert", "status"), json!({"enum": super::alerts::STATUSES})),
        (Field("Alert", "severity"), json!({"enum": SEVERITIES})),
        (Field("NewSilence", "sources"), json!({"minItems": 1})),
        (Field("Contact", "name"), name()),
        (Field("Contact", "channels"), json!({"minItems": 1})),
        (Field("ContactChannel", "channel"), json!({"enum": CHANNELS})),
        (Field("Policy", "name"), name()),
        (Field("Policy", "steps"), json!({"minItems": 1, "maxItems": directory::MAX_STEPS})),
        (Field("Policy", "repeat"), json!({"minimum": 0, "maximum": directory::MAX_REPEAT})),
        (Field("Step", "notify"), json!({"minItems": 1})),
        (
            Field("Step", "timeout"),
            duration(*directory::STEP_TIMEOUT_SECS.start(), *directory::STEP_TIMEOUT_SECS.end()),
        ),
        (Field("Gateway", "name"), name()),
        (
            Field("Gateway", "timeout"),
            duration(*directory::GATEWAY_TIMEOUT_SECS.start(), *directory::GATEWAY_TIMEOUT_SECS.end()),
        ),
        (Field("Route", "name"), name()),
        (Field("Route", "channel"), json!({"enum": CHANNELS})),
        (Field("Route", "gateways"), json!({"minItems": 1})),
        (Field("Maintenance", "name"), name()),
        // utoipa writes `u64` as `int64`, whose range ends at 2^63 - 1; these
        // take any `u64`. (`uint64`, as the OpenAPI format registry names it.)
        (Field("Beat", "running"), json!({"format": "uint64"})),
        (Field("Beat", "buffered"), json!({"format": "uint64"})),
        (Field("Beat", "assigned"), json!({"format": "uint64"})),
    ]
}

/// Merges `bound` into the schema at `target`. A target the document lacks
/// is a bug here (a renamed type or field), caught by any test that builds
/// the router.
fn declare(doc: &mut Value, target: &Target, bound: Value) {
    let schema = match *target {
        Target::Field(schema, field) => doc.pointer_mut(&format!("/components/schemas/{schema}/properties/{field}")),
        Target::Param(method, path, name) => doc["paths"]
            .get_mut(path)
            .and_then(|item| item.get_mut(method))
            .and_then(|op| op.get_mut("parameters"))
            .and_then(Value::as_array_mut)
            .and_then(|params| params.iter_mut().find(|p| p["name"] == name))
            .and_then(|p| p.get_mut("schema")),
    };
    let Some(Value::Object(schema)) = schema else {
        let (what, name) = match *target {
            Target::Field(schema, field) => ("schema property", format!("{schema}.{field}")),
            Target::Param(method, path, name) => ("parameter", format!("{method} {path} {name}")),
        };
        panic!("the API contract bounds the {what} {name}, which the OpenAPI document does not have");
    };
    merge(schema, &bound);
}

fn merge(schema: &mut Map<String, Value>, bound: &Value) {
    for (key, value) in bound.as_object().into_iter().flatten() {
        match (schema.get_mut(key), value) {
            (Some(Value::Object(inner)), Value::Object(_)) => merge(inner, value),
            _ => {
                schema.insert(key.clone(), value.clone());
            }
        }
    }
}
