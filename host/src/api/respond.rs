//! Answers without a token: the signed links in SMS, chat and email
//! (`/respond/{link}`), and Twilio's key-press callback
//! (`/api/v1/callbacks/twilio/{link}`).
//!
//! Opening a link shows a page with one button; only pressing it (a POST)
//! answers. Chat apps and mail scanners open links to preview them, and a
//! preview must not accept an incident on someone's behalf.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, context};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Path, Shared};
use crate::alerting::links::{Action, LinkError};
use crate::alerting::model::Gateway;
use crate::alerting::respond::{self, Answer, RespondError};
use crate::alerting::{directory, twilio};
use crate::model::now_ms;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(twilio_callback))
        .route("/respond/{link}", axum::routing::get(show_link).post(use_link))
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Tocsin: {{ heading }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}
button{font-size:1.2rem;padding:.6rem 1.4rem}</style></head>
<body><h1>{{ heading }}</h1><p>{{ text }}</p>
{% if action %}<form method="post"><button type="submit">{{ action }}</button></form>{% endif %}
</body></html>"#;

fn page(status: StatusCode, heading: &str, text: &str, action: Option<&str>) -> Response {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    let html = env
        .template_from_str(PAGE)
        .and_then(|t| t.render(context! { heading, text, action }))
        .unwrap_or_else(|e| format!("template error: {e}"));
    (status, Html(html)).into_response()
}

fn link_problem(e: &LinkError) -> Response {
    let status = match e {
        LinkError::Expired => StatusCode::GONE,
        LinkError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::FORBIDDEN,
    };
    page(status, "This link does not work", &e.to_string(), None)
}

/// The notification and answer a link stands for; `None` for a link made
/// for a phone call.
async fn read_link(state: &AppState, link: &str) -> Result<(i64, Answer), Option<LinkError>> {
    let claim = state.alerting.signer.verify(link, now_ms()).await.map_err(Some)?;
    match claim.action {
        Action::Accept => Ok((claim.notification, Answer::Accept)),
        Action::Reject => Ok((claim.notification, Answer::Reject)),
        Action::Call => Err(None),
    }
}

/// The page for a link that does not work.
fn bad_link(why: Option<LinkError>) -> Response {
    match why {
        Some(e) => link_problem(&e),
        None => page(StatusCode::FORBIDDEN, "This link does not work", "it is for a phone call", None),
    }
}

async fn show_link(State(state): Shared, Path(link): Path<String>) -> Response {
    let (notification, answer) = match read_link(&state, &link).await {
        Ok(read) => read,
        Err(why) => return bad_link(why),
    };
    let incident: Result<Option<(String, String)>, _> = sqlx::query_as(
        "SELECT i.title, i.state FROM outbox o JOIN incidents i ON i.id = o.incident_id WHERE o.id = $1",
    )
    .bind(notification)
    .fetch_optional(state.db.reader())
    .await;
    let (title, status) = match incident {
        Ok(Some(found)) => found,
        Ok(None) => return page(StatusCode::NOT_FOUND, "Not found", "The notification no longer exists.", None),
        Err(e) => return answer_problem(RespondError::Store(e.into())),
    };
    let (verb, button) = match answer {
        Answer::Accept => ("Accept", "Accept the incident"),
        Answer::Reject => ("Reject", "Reject: notify the next on call"),
    };
    page(StatusCode::OK, &format!("{verb}: {title}"), &format!("The incident is {status}."), Some(button))
}

async fn use_link(State(state): Shared, Path(link): Path<String>) -> Response {
    let (notification, answer) = match read_link(&state, &link).await {
        Ok(read) => read,
        Err(why) => return bad_link(why),
    };
    match respond::respond(&state.db, notification, answer, "link").await {
        Ok(said) => {
            state.alerting.wake.notify_one();
            page(StatusCode::OK, "Thank you", &said, None)
        }
        Err(e) => answer_problem(e),
    }
}

fn answer_problem(e: RespondError) -> Response {
    match e {
        RespondError::NotFound(_) => page(StatusCode::NOT_FOUND, "Not found", &e.to_string(), None),
        RespondError::Used(_) | RespondError::Closed(_) => page(StatusCode::CONFLICT, "Too late", &e.to_string(), None),
        RespondError::Store(s) => {
            tracing::error!(error = %s, "recording an answer failed");
            page(StatusCode::SERVICE_UNAVAILABLE, "Try again", "Tocsin could not record your answer.", None)
        }
    }
}

fn twiml(status: StatusCode, say: &str) -> Response {
    let say = say.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    (status, [(header::CONTENT_TYPE, "text/xml")], format!("<Response><Say>{say}</Say></Response>")).into_response()
}

/// Twilio posts the key pressed on a call (`Digits`): 1 accepts, 2 rejects.
/// The answer is spoken back to the caller. The post must carry Twilio's
/// signature (`X-Twilio-Signature`) made with the auth token of a
/// gateway of the account it names (`AccountSid`); anything else is refused and changes
/// nothing.
#[utoipa::path(post, path = "/api/v1/callbacks/twilio/{link}", tag = "incidents", security(()),
    params(("link" = String, Path, description = "The signed link from the call's script"),
           ("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the callback")),
    request_body(content = inline(HashMap<String, String>), content_type = "application/x-www-form-urlencoded", description = "Twilio's Gather callback: Digits, CallSid, ..."),
    responses((status = 200, description = "TwiML to speak", content_type = "text/xml"),
              (status = 400, description = "Not a form", body = ErrorBody),
              (status = 403, description = "Forged link, or not signed by Twilio", content_type = "text/xml"),
              (status = 410, description = "Expired link", content_type = "text/xml"),
              (status = 415, description = "Not `application/x-www-form-urlencoded`", body = ErrorBody),
              (status = 503, description = "The answer could not be recorded", content_type = "text/xml")))]
async fn twilio_callback(
    State(state): Shared,
    Path(link): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match form {
        Ok(Form(fields)) => fields,
        Err(FormRejection::InvalidFormContentType(e)) => {
            return ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", e.body_text())
                .into_response();
        }
        Err(e) => return ApiError::bad_request("invalid_body", e.body_text()).into_response(),
    };
    let claim = match state.alerting.signer.verify(&link, now_ms()).await {
        Ok(claim) if claim.action == Action::Call => claim,
        Ok(_) => return twiml(StatusCode::FORBIDDEN, "This link is not for calls."),
        Err(LinkError::Expired) => return twiml(StatusCode::GONE, "This alert expired."),
        Err(LinkError::Unavailable) => {
            return twiml(StatusCode::SERVICE_UNAVAILABLE, "Tocsin could not check this link. Please try again.");
        }
        Err(_) => return twiml(StatusCode::FORBIDDEN, "This link is not valid."),
    };
    let url = format!("{}/api/v1/callbacks/twilio/{link}", state.alerting.rules.public_url.trim_end_matches('/'));
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok());
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match auth_tokens(&state, field("AccountSid")).await {
        Ok(tokens) if signature.is_some_and(|s| tokens.iter().any(|t| twilio::verify(t, &url, &fields, s))) => {}
        Ok(tokens) => {
            tracing::warn!(
                notification = claim.notification,
                signed = signature.is_some(),
                account_known = !tokens.is_empty(),
                "a key-press callback without a valid Twilio signature: refused"
            );
            state
                .metrics
                .auth_failures
                .get_or_create(&crate::metrics::ReasonLabels { reason: "twilio_signature".into() })
                .inc();
            return twiml(StatusCode::FORBIDDEN, "This request is not signed by Twilio.");
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the call's gateway failed");
            return twiml(StatusCode::SERVICE_UNAVAILABLE, "Tocsin could not check this request. Please try again.");
        }
    }
    let answer = match field("Digits") {
        Some("1") => Answer::Accept,
        Some("2") => Answer::Reject,
        other => {
            tracing::info!(digits = ?other, notification = claim.notification, "a key press that means nothing");
            return twiml(StatusCode::OK, "Press 1 to accept or 2 to reject. Goodbye.");
        }
    };
    let call = field("CallSid").unwrap_or("unknown call");
    match respond::respond(&state.db, claim.notification, answer, &format!("key press ({call})")).await {
        Ok(said) => {
            state.alerting.wake.notify_one();
            twiml(StatusCode::OK, &said)
        }
        Err(RespondError::Store(e)) => {
            tracing::error!(error = %e, "recording a key press failed");
            twiml(StatusCode::SERVICE_UNAVAILABLE, "Tocsin could not record your answer. Please try again.")
        }
        Err(e) => twiml(StatusCode::OK, &e.to_string()),
    }
}

/// The auth tokens of the gateways of Twilio account `account` (the
/// callback's `AccountSid`): one of them signed a real callback.
async fn auth_tokens(state: &AppState, account: Option<&str>) -> Result<Vec<String>, crate::store::StoreError> {
    let Some(account) = account else { return Ok(Vec::new()) };
    let mut conn = state.db.reader().acquire().await?;
    let gateways: Vec<Gateway> = directory::list_opened(&mut conn, state.db.keys(), directory::GATEWAYS).await?;
    let field = |g: &Gateway, name: &str| g.config.get(name).and_then(|v| v.as_str()).map(str::to_string);
    Ok(gateways
        .iter()
        .filter(|g| field(g, "account_sid").as_deref() == Some(account))
        .filter_map(|g| field(g, "auth_token"))
        .collect())
}
