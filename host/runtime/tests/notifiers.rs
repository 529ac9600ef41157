//! The built-in notifiers against local gateways that speak the real
//! formats: a webhook sink, and a fake of Twilio's REST API. The other
//! providers (email, PagerDuty, Slack, Vonage) are in `gateways.rs`.

mod support;

use std::time::Duration;

use serde_json::json;
use support::servers::*;
use support::*;
use tocsin_builtins::{TWILIO, WEBHOOK};
use tocsin_runtime::{Delivery, DeliveryCall};

#[tokio::test]
async fn webhook_posts_tocsin_json_with_an_idempotency_key() {
    let (gateway, inbox) = recording_gateway(200, r#"{"id": "msg-1"}"#).await;
    let plugin = load(&runtime(), WEBHOOK).await;
    let config = json!({"url": format!("http://{gateway}/hooks/tocsin"), "headers": {"authorization": "Bearer abc"}});
    let d = delivery(deliver(&plugin, config, notification("webhook", "")).await);
    assert!(matches!(&d, Delivery::Delivered { message_id, .. } if message_id == "msg-1"), "{d:?}");

    let received = inbox.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.path, "/hooks/tocsin");
    assert_eq!(r.headers["idempotency-key"], "ntf-42");
    assert_eq!(r.headers["authorization"], "Bearer abc");
    assert_eq!(r.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["event"], "triggered");
    assert_eq!(body["title"], "api.example.com is down");
    assert_eq!(body["links"]["accept"], "https://tocsin.example/a/accept-token");
}

#[tokio::test]
async fn webhook_speaks_slack() {
    let (gateway, inbox) = recording_gateway(200, "ok").await;
    let plugin = load(&runtime(), WEBHOOK).await;
    let config = json!({"url": format!("http://{gateway}/services/T000/B000/XXXX"), "format": "slack"});
    let d = delivery(deliver(&plugin, config, notification("chat", "#ops")).await);
    assert!(matches!(d, Delivery::Delivered { .. }), "{d:?}");
    let body: serde_json::Value = serde_json::from_str(&inbox.lock().unwrap()[0].body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("*[TRIGGERED]* api.example.com is down\nstatus 503"), "{text}");
    assert!(text.contains("<https://tocsin.example/a/accept-token|Accept>"), "{text}");
}

#[tokio::test]
async fn webhook_failures_say_whether_to_retry_or_fail_over() {
    let plugin = load(&runtime(), WEBHOOK).await;
    for (status, retry) in [(500, true), (503, true), (429, true), (400, false), (404, false)] {
        let (gateway, _) = recording_gateway(status, r#"{"error": "nope"}"#).await;
        let d =
            delivery(deliver(&plugin, json!({"url": format!("http://{gateway}/")}), notification("webhook", "")).await);
        match d {
            Delivery::Failed { message, retry: r, failover } => {
                assert_eq!(r, retry, "{status}: {message}");
                assert!(failover, "{status}");
                assert!(message.starts_with(&format!("the webhook answered {status}")), "{message}");
            }
            other => panic!("{status}: {other:?}"),
        }
    }
    let closed = closed_port().await;
    let d = delivery(deliver(&plugin, json!({"url": format!("http://{closed}/")}), notification("webhook", "")).await);
    assert!(matches!(d, Delivery::Failed { retry: true, failover: true, .. }), "{d:?}");
}

#[tokio::test]
async fn webhook_urls_must_be_granted() {
    let plugin = load(&runtime(), WEBHOOK).await;
    let report = plugin
        .deliver(DeliveryCall {
            config: json!({"url": "http://127.0.0.1:9/"}).to_string(),
            notification: notification("webhook", ""),
            allow: vec![],
            timeout: Duration::from_secs(5),
        })
        .await;
    assert_eq!(report.refusals.len(), 1);
    assert!(matches!(report.outcome.unwrap(), Delivery::Failed { retry: false, .. }));
}

fn twilio_config(gateway: std::net::SocketAddr) -> serde_json::Value {
    json!({
        "account_sid": TWILIO_SID,
        "auth_token": TWILIO_TOKEN,
        "from": "+15017122661",
        "api_base": format!("http://{gateway}"),
    })
}

#[tokio::test]
async fn twilio_calls_and_asks_for_a_key_press() {
    let twilio = fake_twilio(false).await;
    let plugin = load(&runtime(), TWILIO).await;
    let d = delivery(deliver(&plugin, twilio_config(twilio.addr), notification("voice", "+14155550100")).await);
    match &d {
        Delivery::Delivered { message_id, detail } => {
            assert!(message_id.starts_with("CA") && message_id.len() == 34, "{message_id}");
            assert_eq!(detail, "call queued");
        }
        other => panic!("{other:?}"),
    }
    let requests = twilio.requests.lock().unwrap().clone();
    let (resource, form) = &requests[0];
    assert_eq!(resource, "Calls.json");
    assert_eq!(form["To"], "+14155550100");
    assert_eq!(form["From"], "+15017122661");
    let twiml = &form["Twiml"];
    assert!(
        twiml.starts_with(
            "<Response><Gather numDigits=\"1\" timeout=\"10\" method=\"POST\" action=\"https://tocsin.example/callbacks/twilio/cb-token\">"
        ),
        "{twiml}"
    );
    assert!(twiml.contains("api.example.com is down. status 503 from 2 of 2 locations."), "{twiml}");
    assert!(twiml.contains("Press 1 to accept. Press 2 to reject."), "{twiml}");
}

#[tokio::test]
async fn twilio_texts_with_accept_and_reject_links() {
    let twilio = fake_twilio(false).await;
    let plugin = load(&runtime(), TWILIO).await;
    let d = delivery(deliver(&plugin, twilio_config(twilio.addr), notification("sms", "+14155550100")).await);
    assert!(matches!(&d, Delivery::Delivered { message_id, .. } if message_id.starts_with("SM")), "{d:?}");
    let requests = twilio.requests.lock().unwrap().clone();
    let (resource, form) = &requests[0];
    assert_eq!(resource, "Messages.json");
    let body = &form["Body"];
    assert!(body.starts_with("[Tocsin] api.example.com is down: status 503"), "{body}");
    assert!(
        body.contains("\nAccept: https://tocsin.example/a/accept-token\nReject: https://tocsin.example/a/reject-token"),
        "{body}"
    );
}

#[tokio::test]
async fn twilio_errors_are_reported_in_twilios_words() {
    let twilio = fake_twilio(false).await;
    let plugin = load(&runtime(), TWILIO).await;
    let d = delivery(deliver(&plugin, twilio_config(twilio.addr), notification("sms", "+15550001234")).await);
    match d {
        Delivery::Failed { message, retry, failover } => {
            assert_eq!(message, "Twilio error 21211 (400): The 'To' number +15550001234 is not a valid phone number.");
            assert!(!retry);
            assert!(failover);
        }
        other => panic!("{other:?}"),
    }

    let mut config = twilio_config(twilio.addr);
    config["auth_token"] = json!("wrong");
    let d = delivery(deliver(&plugin, config, notification("sms", "+14155550100")).await);
    assert!(
        matches!(&d, Delivery::Failed { message, retry: false, failover: true } if message.contains("20003")),
        "{d:?}"
    );

    let down = fake_twilio(true).await;
    let d = delivery(deliver(&plugin, twilio_config(down.addr), notification("voice", "+14155550100")).await);
    assert!(matches!(&d, Delivery::Failed { retry: true, failover: true, .. }), "{d:?}");
}
