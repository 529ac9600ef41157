//! The notifiers for email, PagerDuty, Slack and Vonage against local peers
//! that speak the real protocols: an SMTP server (`mailin`'s protocol
//! engine, over plain TCP or implicit TLS) and fakes of the providers' HTTP
//! APIs (`support/providers.rs`).

mod support;

use std::time::Duration;

use mailin::AuthMechanism;
use serde_json::{Value, json};
use support::providers::*;
use support::servers::*;
use support::smtp::*;
use support::*;
use tocsin_builtins::{EMAIL, PAGERDUTY, SLACK, VONAGE};
use tocsin_runtime::{Delivery, DeliveryCall, Event};

/// `(message, retry, failover)` of a failed delivery.
fn failed(d: Delivery) -> (String, bool, bool) {
    match d {
        Delivery::Failed { message, retry, failover } => (message, retry, failover),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn delivered(d: Delivery) -> (String, String) {
    match d {
        Delivery::Delivered { message_id, detail } => (message_id, detail),
        other => panic!("expected a delivery, got {other:?}"),
    }
}

// ---------------------------------------------------------------- email

/// Decodes RFC 2047 encoded words (`=?utf-8?Q?...?=`, `=?utf-8?B?...?=`);
/// blanks between two encoded words are dropped, as the RFC says.
fn decode_words(header: &str) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    let mut previous_encoded = false;
    for token in header.split_whitespace() {
        let word = token.strip_prefix("=?").and_then(|t| t.strip_suffix("?=")).and_then(|t| {
            let mut parts = t.splitn(3, '?');
            Some((parts.next()?, parts.next()?, parts.next()?))
        });
        let decoded = word.and_then(|(charset, encoding, text)| {
            assert!(charset.eq_ignore_ascii_case("utf-8"), "{token}");
            let bytes = match encoding {
                "B" | "b" => base64::engine::general_purpose::STANDARD.decode(text).ok()?,
                "Q" | "q" => {
                    let mut bytes = Vec::new();
                    let mut rest = text.as_bytes();
                    while let Some((&b, tail)) = rest.split_first() {
                        match b {
                            b'_' => bytes.push(b' '),
                            b'=' if tail.len() >= 2 => {
                                bytes.push(u8::from_str_radix(std::str::from_utf8(&tail[..2]).ok()?, 16).ok()?);
                                rest = &tail[2..];
                                continue;
                            }
                            b => bytes.push(b),
                        }
                        rest = tail;
                    }
                    bytes
                }
                _ => return None,
            };
            String::from_utf8(bytes).ok()
        });
        match decoded {
            Some(text) => {
                if !out.is_empty() && !previous_encoded {
                    out.push(' ');
                }
                out.push_str(&text);
                previous_encoded = true;
            }
            None => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(token);
                previous_encoded = false;
            }
        }
    }
    out
}

fn email_config(server: &SmtpServer) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": server.addr.port(),
        "from": "tocsin@alerts.example.com",
        "from_name": "Tocsin Alerts",
    })
}

#[tokio::test]
async fn email_speaks_smtp_with_headers_links_and_dot_stuffing() {
    let server = smtp_server(SmtpOptions::default());
    let plugin = load(&runtime(), EMAIL).await;
    let mut n = notification("email", "ada@example.com");
    // Lines that end DATA early or lose a dot unless the client stuffs them.
    n.message = "status 503 from 2 of 2 locations\n.hidden line\n.\n..two dots".into();
    let (message_id, detail) = delivered(delivery(deliver(&plugin, email_config(&server), n).await));
    assert_eq!(message_id, "tocsin.ntf-42@alerts.example.com");
    assert_eq!(detail, "250 2.0.0 Ok: queued as Q0001");

    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.helo, "alerts.example.com");
    assert_eq!(mail.from, "tocsin@alerts.example.com");
    assert_eq!(mail.to, ["ada@example.com"]);
    assert_eq!(mail.user, None);

    let header = |name: &str| mail.header(name).unwrap_or_else(|| panic!("no {name} header in\n{}", mail.data));
    assert_eq!(header("Subject"), "[Tocsin] api.example.com is down");
    assert_eq!(header("From"), "\"Tocsin Alerts\" <tocsin@alerts.example.com>");
    assert_eq!(header("To"), "\"Ada\" <ada@example.com>");
    assert_eq!(header("Message-ID"), "<tocsin.ntf-42@alerts.example.com>");
    assert_eq!(header("MIME-Version"), "1.0");
    assert_eq!(header("Content-Type"), "text/plain; charset=\"utf-8\"");
    assert_eq!(header("Content-Transfer-Encoding"), "7bit");
    assert_eq!(header("Auto-Submitted"), "auto-generated");
    assert_eq!(header("X-Tocsin-Incident"), "inc-7");
    let date = header("Date");
    let year = time::OffsetDateTime::now_utc().year().to_string();
    assert!(date.contains(&year) && date.ends_with("+0000"), "{date}");

    let body = mail.body();
    assert!(body.starts_with("api.example.com is down\r\n\r\nstatus 503 from 2 of 2 locations\r\n"), "{body}");
    assert!(body.contains("\r\n.hidden line\r\n.\r\n..two dots\r\n"), "dot-stuffing lost a dot:\n{body}");
    for line in [
        "Source: check:api",
        "Severity: critical",
        "Accept: https://tocsin.example/a/accept-token",
        "Reject: https://tocsin.example/a/reject-token",
        "View the incident: https://tocsin.example/incidents/inc-7",
    ] {
        assert!(body.contains(&format!("\r\n{line}\r\n")), "{line:?} not in\n{body}");
    }
    assert!(body.ends_with("\r\n\r\nSent by Tocsin to Ada.\r\n"), "{body}");
    assert!(!body.replace("\r\n", "").contains(['\r', '\n']), "a bare CR or LF in\n{body}");
}

#[tokio::test]
async fn email_encodes_what_is_not_ascii_and_labels_the_event() {
    let server = smtp_server(SmtpOptions::default());
    let plugin = load(&runtime(), EMAIL).await;
    let mut n = notification("email", "ada@example.com");
    n.event = Event::Resolved;
    n.title = "Überlast auf api.example.com".into();
    n.message = "Die Warteschlange ist wieder unter 100 — alles gut.".into();
    let mut config = email_config(&server);
    config["subject_prefix"] = json!("[ops]");
    delivered(delivery(deliver(&plugin, config, n).await));

    let mail = &server.mails()[0];
    let subject = mail.header("Subject").unwrap();
    assert!(subject.starts_with("=?utf-8?"), "an RFC 2047 encoded word: {subject}");
    assert_eq!(mail.header("Content-Transfer-Encoding").as_deref(), Some("quoted-printable"));
    assert!(mail.body().contains("=C3=9Cberlast auf api.example.com"), "{}", mail.body());
    assert!(mail.data.is_ascii(), "the message must be 7-bit after encoding:\n{}", mail.data);
    assert_eq!(decode_words(&subject), "[ops] Resolved: Überlast auf api.example.com");
}

#[tokio::test]
async fn email_authenticates_over_implicit_tls() {
    let pki = Pki::new();
    let server = smtp_server(SmtpOptions {
        tls: Some(pki.leaf(&["127.0.0.1"], 90)),
        auth: Some((vec![AuthMechanism::Plain, AuthMechanism::Login], "tocsin", "s3cret")),
        ..Default::default()
    });
    let runtime = runtime_with(|c| c.network.extra_roots = vec![pki.ca_file.path().to_path_buf()]);
    let plugin = load(&runtime, EMAIL).await;
    let mut config = email_config(&server);
    config["tls"] = json!(true);
    config["username"] = json!("tocsin");
    config["password"] = json!("s3cret");
    delivered(delivery(deliver(&plugin, config.clone(), notification("email", "ada@example.com")).await));
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].user.as_deref(), Some("tocsin"));
    assert_eq!(mails[0].to, ["ada@example.com"]);

    config["password"] = json!("wrong");
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, config, notification("email", "ada@example.com")).await));
    assert_eq!(
        message,
        format!(
            "the SMTP server 127.0.0.1:{} answered AUTH PLAIN with 535 5.7.8 Authentication credentials invalid",
            server.addr.port()
        )
    );
    assert!(!retry && failover);
    assert!(!message.contains("wrong"), "the password leaked into the message: {message}");
    assert_eq!(server.mails().len(), 1);

    // The certificate is checked: without the test CA the handshake fails.
    let untrusting = load(&runtime_with(|_| {}), EMAIL).await;
    let mut config = email_config(&server);
    config["tls"] = json!(true);
    let (message, _, failover) =
        failed(delivery(deliver(&untrusting, config, notification("email", "ada@example.com")).await));
    assert!(message.contains("TLS failed"), "{message}");
    assert!(failover);
}

#[tokio::test]
async fn email_uses_auth_login_when_plain_is_not_offered() {
    let server = smtp_server(SmtpOptions {
        auth: Some((vec![AuthMechanism::Login], "relay-user", "relay-pass")),
        plaintext_auth: true,
        ..Default::default()
    });
    let plugin = load(&runtime(), EMAIL).await;
    let mut config = email_config(&server);
    config["username"] = json!("relay-user");
    config["password"] = json!("relay-pass");
    config["allow_plaintext_auth"] = json!(true);
    config["helo_name"] = json!("probe-1.tocsin.example");
    delivered(delivery(deliver(&plugin, config, notification("email", "ada@example.com")).await));
    let mail = &server.mails()[0];
    assert_eq!(mail.user.as_deref(), Some("relay-user"));
    assert_eq!(mail.helo, "probe-1.tocsin.example");
}

#[tokio::test]
async fn email_refuses_to_send_a_password_without_tls() {
    let server = smtp_server(SmtpOptions {
        auth: Some((vec![AuthMechanism::Plain], "u", "p")),
        plaintext_auth: true,
        ..Default::default()
    });
    let plugin = load(&runtime(), EMAIL).await;
    let mut config = email_config(&server);
    config["username"] = json!("u");
    config["password"] = json!("p");
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, config, notification("email", "ada@example.com")).await));
    assert!(message.starts_with("refusing to send the SMTP password without TLS"), "{message}");
    assert!(!retry && failover);
    assert!(server.mails().is_empty());

    // A username needs its password (the schema says so before any run).
    let mut config = email_config(&server);
    config["username"] = json!("u");
    assert!(plugin.validate_config(&config).is_err());

    // A server that requires AUTH, and a gateway without credentials
    // (`mailin` says 503 where Postfix says 530: both are permanent).
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, email_config(&server), notification("email", "ada@example.com")).await));
    assert!(message.contains("answered MAIL FROM with 503 Bad sequence of commands"), "{message}");
    assert!(!retry && failover);
}

#[tokio::test]
async fn email_recipient_rejections_say_whether_to_retry_or_fail_over() {
    let server = smtp_server(SmtpOptions {
        reject: vec![
            ("nobody@example.com", 550, "5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"),
            ("full@example.com", 452, "4.2.2 <full@example.com>: Mailbox full"),
            ("far@elsewhere.example", 554, "5.7.1 <far@elsewhere.example>: Relay access denied"),
            ("old@example.com", 550, "Mailbox unavailable"),
        ],
        ..Default::default()
    });
    let plugin = load(&runtime(), EMAIL).await;
    let port = server.addr.port();
    for (address, code, retry, failover) in [
        // The address does not exist: no gateway will deliver to it.
        ("nobody@example.com", "550 5.1.1", false, false),
        // Temporary: try again later, or elsewhere now.
        ("full@example.com", "452 4.2.2", true, true),
        // This relay's policy: another gateway may relay it.
        ("far@elsewhere.example", "554 5.7.1", false, true),
        // Permanent but not said to be about the address.
        ("old@example.com", "550 Mailbox", false, true),
    ] {
        let (message, r, f) =
            failed(delivery(deliver(&plugin, email_config(&server), notification("email", address)).await));
        assert!(
            message.starts_with(&format!("the SMTP server 127.0.0.1:{port} answered RCPT TO <{address}> with {code}")),
            "{message}"
        );
        assert_eq!((r, f), (retry, failover), "{address}: {message}");
    }
    assert!(server.mails().is_empty());

    // Not an address at all: refused before connecting, for every gateway.
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, email_config(&server), notification("email", "Ada <ada@example.com>")).await));
    assert!(message.contains("is not an email address"), "{message}");
    assert!(!retry && !failover);
}

#[tokio::test]
async fn email_network_failures_retry_and_fail_over() {
    let plugin = load(&runtime(), EMAIL).await;
    let closed = closed_port().await;
    let config = json!({"host": "127.0.0.1", "port": closed.port(), "from": "tocsin@alerts.example.com"});
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, config, notification("email", "ada@example.com")).await));
    assert!(
        message.starts_with(&format!("the SMTP server 127.0.0.1:{}: connection failed", closed.port())),
        "{message}"
    );
    assert!(retry && failover);

    // Something that is not an SMTP server.
    let banner = tcp_server("SSH-2.0-OpenSSH_9.6\r\n", None).await;
    let config = json!({"host": "127.0.0.1", "port": banner.port(), "from": "tocsin@alerts.example.com"});
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, config, notification("email", "ada@example.com")).await));
    assert!(message.contains("does not speak SMTP"), "{message}");
    assert!(!retry && failover);

    // The SMTP server must be granted like any destination.
    let server = smtp_server(SmtpOptions::default());
    let report = plugin
        .deliver(DeliveryCall {
            config: email_config(&server).to_string(),
            notification: notification("email", "ada@example.com"),
            allow: vec![],
            timeout: Duration::from_secs(5),
        })
        .await;
    assert_eq!(report.refusals.len(), 1);
    assert!(matches!(report.outcome.unwrap(), Delivery::Failed { retry: false, failover: true, .. }));
    assert!(server.mails().is_empty());
}

// ------------------------------------------------------------ PagerDuty

fn pagerduty_config(fake: &Fake) -> Value {
    json!({"routing_key": PAGERDUTY_KEY, "api_base": format!("http://{}", fake.addr)})
}

#[tokio::test]
async fn pagerduty_triggers_an_alert_keyed_by_the_incident() {
    let fake = fake_pagerduty(Behaviour::Normal).await;
    let plugin = load(&runtime(), PAGERDUTY).await;
    let (message_id, detail) =
        delivered(delivery(deliver(&plugin, pagerduty_config(&fake), notification("webhook", "")).await));
    assert_eq!(message_id, "inc-7");
    assert_eq!(detail, "trigger: Event processed");

    let received = fake.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.path, "/v2/enqueue");
    assert_eq!(r.headers["content-type"], "application/json");
    let event: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(event["routing_key"], PAGERDUTY_KEY);
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["dedup_key"], "inc-7");
    assert_eq!(event["payload"]["summary"], "api.example.com is down");
    assert_eq!(event["payload"]["source"], "check:api");
    assert_eq!(event["payload"]["severity"], "critical");
    assert_eq!(event["payload"]["custom_details"]["message"], "status 503 from 2 of 2 locations");
    assert_eq!(event["payload"]["custom_details"]["links"]["accept"], "https://tocsin.example/a/accept-token");
    assert_eq!(event["payload"]["custom_details"]["links"]["reject"], "https://tocsin.example/a/reject-token");
    assert_eq!(
        event["links"],
        json!([{"href": "https://tocsin.example/incidents/inc-7", "text": "View the incident in Tocsin"}])
    );
    assert_eq!(event["client"], "Tocsin");
    assert_eq!(event["client_url"], "https://tocsin.example/incidents/inc-7");
}

#[tokio::test]
async fn pagerduty_follows_the_incident_and_maps_severities() {
    let fake = fake_pagerduty(Behaviour::Normal).await;
    let plugin = load(&runtime(), PAGERDUTY).await;
    for (event, action) in [
        (Event::Acknowledged, "acknowledge"),
        (Event::Resolved, "resolve"),
        (Event::Escalated, "trigger"),
        (Event::Test, "trigger"),
    ] {
        let mut n = notification("webhook", "");
        n.event = event;
        let (message_id, detail) = delivered(delivery(deliver(&plugin, pagerduty_config(&fake), n).await));
        assert_eq!(message_id, "inc-7");
        assert_eq!(detail, format!("{action}: Event processed"));
        let sent: Value = serde_json::from_str(&fake.received().last().unwrap().body).unwrap();
        assert_eq!(sent["event_action"], action, "{event:?}");
        assert_eq!(sent["dedup_key"], "inc-7");
        assert_eq!(sent.get("payload").is_some(), action == "trigger", "{sent}");
    }

    for (ours, theirs) in
        [("warning", "warning"), ("MINOR", "warning"), ("error", "error"), ("info", "info"), ("whatever", "critical")]
    {
        let mut n = notification("webhook", "");
        n.severity = ours.into();
        n.title = "x".repeat(2000);
        delivered(delivery(deliver(&plugin, pagerduty_config(&fake), n).await));
        let sent: Value = serde_json::from_str(&fake.received().last().unwrap().body).unwrap();
        assert_eq!(sent["payload"]["severity"], theirs, "{ours}");
        assert_eq!(sent["payload"]["summary"].as_str().unwrap().chars().count(), 1024);
    }
}

#[tokio::test]
async fn pagerduty_failures_say_whether_to_retry_or_fail_over() {
    let plugin = load(&runtime(), PAGERDUTY).await;
    let fake = fake_pagerduty(Behaviour::Normal).await;
    let mut config = pagerduty_config(&fake);
    config["routing_key"] = json!("Z".repeat(32));
    let (message, retry, failover) = failed(delivery(deliver(&plugin, config, notification("webhook", "")).await));
    assert_eq!(message, "PagerDuty answered 400: Event object is invalid (Invalid routing key)");
    assert!(!retry && failover);

    let throttled = fake_pagerduty(Behaviour::Throttled).await;
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, pagerduty_config(&throttled), notification("webhook", "")).await));
    assert!(message.starts_with("PagerDuty answered 429"), "{message}");
    assert!(retry && failover);

    let failing = fake_pagerduty(Behaviour::Failing).await;
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, pagerduty_config(&failing), notification("webhook", "")).await));
    assert!(message.starts_with("PagerDuty answered 500"), "{message}");
    assert!(retry && failover);

    let closed = closed_port().await;
    let config = json!({"routing_key": PAGERDUTY_KEY, "api_base": format!("http://{closed}")});
    let (message, retry, failover) = failed(delivery(deliver(&plugin, config, notification("webhook", "")).await));
    assert!(message.starts_with("PagerDuty: connection failed"), "{message}");
    assert!(retry && failover);

    // The schema refuses a key PagerDuty would refuse for its length.
    assert!(plugin.validate_config(&json!({"routing_key": "short"})).is_err());
}

// ---------------------------------------------------------------- Slack

fn slack_config(fake: &Fake) -> Value {
    json!({"token": SLACK_TOKEN, "api_base": format!("http://{}", fake.addr)})
}

#[tokio::test]
async fn slack_posts_to_the_gateways_channel_with_links() {
    let fake = fake_slack(Behaviour::Normal).await;
    let plugin = load(&runtime(), SLACK).await;
    let mut config = slack_config(&fake);
    config["channel"] = json!("#ops");
    let (message_id, detail) = delivered(delivery(deliver(&plugin, config, notification("chat", "#alerts")).await));
    assert_eq!(message_id, "C0OPS00001:1700000000.000001");
    assert_eq!(detail, "posted to C0OPS00001");

    let received = fake.received();
    let r = &received[0];
    assert_eq!(r.path, "/api/chat.postMessage");
    assert_eq!(r.headers["authorization"], format!("Bearer {SLACK_TOKEN}"));
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["channel"], "#ops");
    assert_eq!(
        body["text"],
        "*[TRIGGERED]* api.example.com is down\nstatus 503 from 2 of 2 locations\n\
         <https://tocsin.example/a/accept-token|Accept> · <https://tocsin.example/a/reject-token|Reject> · \
         <https://tocsin.example/incidents/inc-7|Incident>"
    );
    assert_eq!(body["unfurl_links"], false);
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["text"], "*[TRIGGERED]* api.example.com is down\nstatus 503 from 2 of 2 locations");
    let buttons = blocks.iter().find(|b| b["type"] == "actions").unwrap()["elements"].as_array().unwrap();
    assert_eq!(buttons[0]["url"], "https://tocsin.example/a/accept-token");
    assert_eq!(buttons[0]["style"], "primary");
    assert_eq!(buttons[1]["url"], "https://tocsin.example/a/reject-token");
}

#[tokio::test]
async fn slack_posts_to_the_contacts_address_and_escapes_mrkdwn() {
    let fake = fake_slack(Behaviour::Normal).await;
    let plugin = load(&runtime(), SLACK).await;
    let mut n = notification("chat", "C0ALERTS02");
    n.title = "queue <critical> & growing".into();
    let mut config = slack_config(&fake);
    config["blocks"] = json!(false);
    let (message_id, _) = delivered(delivery(deliver(&plugin, config, n).await));
    assert_eq!(message_id, "C0ALERTS02:1700000000.000001");
    let body: Value = serde_json::from_str(&fake.received()[0].body).unwrap();
    assert_eq!(body["channel"], "C0ALERTS02");
    assert!(body["text"].as_str().unwrap().starts_with("*[TRIGGERED]* queue &lt;critical&gt; &amp; growing\n"));
    assert!(body.get("blocks").is_none(), "{body}");
}

#[tokio::test]
async fn slack_errors_say_whether_to_retry_or_fail_over() {
    let plugin = load(&runtime(), SLACK).await;
    let fake = fake_slack(Behaviour::Normal).await;

    let mut config = slack_config(&fake);
    config["token"] = json!("xoxb-revoked");
    let (message, retry, failover) = failed(delivery(deliver(&plugin, config, notification("chat", "#ops")).await));
    assert_eq!(message, "Slack error invalid_auth (posting to #ops)");
    assert!(!retry && failover);

    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, slack_config(&fake), notification("chat", "#nowhere")).await));
    assert_eq!(message, "Slack error channel_not_found (posting to #nowhere)");
    assert!(!retry && failover);

    let throttled = fake_slack(Behaviour::Throttled).await;
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, slack_config(&throttled), notification("chat", "#ops")).await));
    assert_eq!(message, "Slack answered 429: ratelimited (retry after 30 s)");
    assert!(retry && failover);

    let failing = fake_slack(Behaviour::Failing).await;
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, slack_config(&failing), notification("chat", "#ops")).await));
    assert_eq!(message, "Slack error internal_error (posting to #ops)");
    assert!(retry && failover);

    let (message, retry, _) = failed(delivery(deliver(&plugin, slack_config(&fake), notification("chat", "")).await));
    assert!(message.starts_with("Slack: no channel"), "{message}");
    assert!(!retry);
}

// --------------------------------------------------------------- Vonage

fn vonage_config(fake: &Fake) -> Value {
    json!({
        "api_key": VONAGE_KEY,
        "api_secret": VONAGE_SECRET,
        "from": "+15017122661",
        "api_base": format!("http://{}", fake.addr),
    })
}

#[tokio::test]
async fn vonage_texts_with_accept_and_reject_links() {
    let fake = fake_vonage(Behaviour::Normal).await;
    let plugin = load(&runtime(), VONAGE).await;
    let (message_id, detail) =
        delivered(delivery(deliver(&plugin, vonage_config(&fake), notification("sms", "+14155550100")).await));
    assert_eq!(message_id, "0A00000000000064");
    assert_eq!(detail, "sms to 14155550100");

    let r = &fake.received()[0];
    assert_eq!(r.path, "/sms/json");
    assert_eq!(r.headers["content-type"], "application/x-www-form-urlencoded");
    let form = form(&r.body);
    assert_eq!(form["api_key"], VONAGE_KEY);
    assert_eq!(form["api_secret"], VONAGE_SECRET);
    assert_eq!(form["from"], "15017122661");
    assert_eq!(form["to"], "14155550100");
    assert_eq!(form["client-ref"], "ntf-42");
    assert_eq!(
        form["text"],
        "[Tocsin] api.example.com is down: status 503 from 2 of 2 locations\n\
         Accept: https://tocsin.example/a/accept-token\nReject: https://tocsin.example/a/reject-token"
    );
    assert!(!form.contains_key("type"), "GSM-7 text needs no type: {form:?}");
}

#[tokio::test]
async fn vonage_texts_voice_contacts_and_sends_unicode() {
    let fake = fake_vonage(Behaviour::Normal).await;
    let plugin = load(&runtime(), VONAGE).await;
    let mut n = notification("voice", "+44 7700 900123");
    n.title = "API 停止 ⚠".into();
    n.message = "Üble Lage: ".repeat(10);
    let (message_id, detail) = delivered(delivery(deliver(&plugin, vonage_config(&fake), n).await));
    let form = form(&fake.received()[0].body);
    assert_eq!(form["to"], "447700900123");
    assert_eq!(form["type"], "unicode");
    assert!(form["text"].starts_with("[Tocsin] API 停止 ⚠: Üble Lage"), "{}", form["text"]);
    // A long unicode text goes in parts; the first part's id stands for it.
    assert_eq!(message_id, "0A00000000000064");
    assert!(detail.starts_with("sms to 447700900123 in ") && detail.ends_with(" parts"), "{detail}");
}

#[tokio::test]
async fn vonage_statuses_say_whether_to_retry_or_fail_over() {
    let plugin = load(&runtime(), VONAGE).await;
    let fake = fake_vonage(Behaviour::Normal).await;

    let mut config = vonage_config(&fake);
    config["api_secret"] = json!("wrong");
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, config, notification("sms", "+14155550100")).await));
    assert_eq!(message, "Vonage status 4: Bad Credentials");
    assert!(!retry && failover);

    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, vonage_config(&fake), notification("sms", "+99123456789")).await));
    assert_eq!(message, "Vonage status 7: Number barred");
    assert!(!retry && failover);

    let throttled = fake_vonage(Behaviour::Throttled).await;
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, vonage_config(&throttled), notification("sms", "+14155550100")).await));
    assert!(message.starts_with("Vonage status 1: Throughput Rate Exceeded"), "{message}");
    assert!(retry && failover);

    let failing = fake_vonage(Behaviour::Failing).await;
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, vonage_config(&failing), notification("sms", "+14155550100")).await));
    assert_eq!(message, "Vonage status 5: Internal Error");
    assert!(retry && failover);

    // Not a number: no SMS provider can use it.
    let sent = fake.received().len();
    let (message, retry, failover) =
        failed(delivery(deliver(&plugin, vonage_config(&fake), notification("sms", "ada@example.com")).await));
    assert!(message.contains("is not a phone number"), "{message}");
    assert!(!retry && !failover);
    assert_eq!(fake.received().len(), sent);

    let closed = closed_port().await;
    let mut config = vonage_config(&fake);
    config["api_base"] = json!(format!("http://{closed}"));
    let (_, retry, failover) = failed(delivery(deliver(&plugin, config, notification("sms", "+14155550100")).await));
    assert!(retry && failover);
}
