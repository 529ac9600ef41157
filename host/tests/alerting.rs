//! Alerting through a whole controller, on both backends: a failing check
//! escalates through a policy until someone accepts by key press; SMS fails
//! over between gateways by source; bad input is refused and changes
//! nothing. The gateways are local fakes of Twilio's REST API.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;
use tocsin_testkit::twilio::{FakeTwilio, Received};

both!(
    an_escalation_runs_until_someone_accepts_by_key_press,
    sms_fails_over_by_source,
    bad_input_changes_nothing,
    maintenance_and_silences_hold_notifications_back,
);

async fn create(app: &TestApp, path: &str, body: Value) {
    let (status, answer) = app.call(Method::POST, path, Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "POST {path} {body}: {answer}");
}

/// Presses a key on a call, as Twilio reports it (signed).
async fn press(app: &TestApp, call: &Received, digits: &str) -> String {
    let (form, signature) = call.key_press(digits);
    let response = app
        .http
        .post(call.callback())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

async fn open_incident(app: &TestApp) -> Value {
    app.wait_until(Duration::from_secs(30), async || {
        app.get("/api/v1/incidents?state=open").await.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    app.get("/api/v1/incidents?state=open").await[0].clone()
}

async fn an_escalation_runs_until_someone_accepts_by_key_press(backend: Backend) {
    let app = spawn_app(backend).await;
    let twilio = FakeTwilio::start(201);
    create(
        &app,
        "/api/v1/contacts",
        json!({"name": "ada", "channels": [{"channel": "voice", "address": "+15550001"}]}),
    )
    .await;
    create(&app, "/api/v1/contacts", json!({"name": "bob", "channels": [{"channel": "sms", "address": "+15550002"}]}))
        .await;
    create(&app, "/api/v1/gateways", twilio.gateway("twilio")).await;
    create(&app, "/api/v1/routes", json!({"name": "voice", "channel": "voice", "gateways": ["twilio"]})).await;
    create(&app, "/api/v1/routes", json!({"name": "sms", "channel": "sms", "gateways": ["twilio"]})).await;
    create(
        &app,
        "/api/v1/policies",
        json!({"name": "default", "repeat": 1, "steps": [
            {"notify": ["ada:voice"], "timeout": "60s"},
            {"notify": ["bob"], "timeout": "2s"}]}),
    )
    .await;
    let site = target_site().await;
    create(
        &app,
        "/api/v1/checks",
        json!({"name": "api", "plugin": "http", "target": format!("{site}/down"), "interval": "2s", "allow": ["127.0.0.1"]}),
    )
    .await;

    let incident = open_incident(&app).await;
    let id = incident["id"].as_i64().unwrap();
    assert_eq!(incident["title"], "api is down");
    assert_eq!(incident["source"], "check:api");

    // Ada is called and presses 2: reject.
    app.wait_until(Duration::from_secs(20), async || twilio.received().len() == 1).await;
    let call = &twilio.received()[0];
    assert_eq!((call.resource.as_str(), call.form["To"].as_str()), ("Calls", "+15550001"));
    assert!(call.form["Twiml"].contains("api is down"), "{:?}", call.form);
    // Whoever learned the link but not the account's auth token cannot
    // answer: no signature, a signature of other fields (a recorded press
    // of 2 replayed as 1) or a made-up one are refused, and the incident
    // is untouched.
    let (form, signature) = call.key_press("1");
    let (forged, _) = call.key_press("2");
    for (what, body, signature) in [
        ("unsigned", form.clone(), None),
        ("signed for other fields", forged, Some(signature.clone())),
        ("signed with a guess", form.clone(), Some("GvWf1cFY/Q7PnoempGyD5oXAezc=".to_string())),
    ] {
        let mut request =
            app.http.post(call.callback()).header("content-type", "application/x-www-form-urlencoded").body(body);
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{what}");
        assert!(response.text().await.unwrap().contains("not signed by Twilio"), "{what}");
    }
    assert_eq!(
        app.get(&format!("/api/v1/incidents/{id}")).await["state"],
        "triggered",
        "a forged key press changed nothing"
    );
    // Her key press arrives twice at once (a retried callback), both having
    // read the unanswered notification: one applies, the other is told.
    #[cfg(feature = "testing")]
    fail::cfg("respond-after-read", "return").unwrap();
    let (first, second) = tokio::join!(press(&app, call, "2"), press(&app, call, "2"));
    #[cfg(feature = "testing")]
    fail::remove("respond-after-read");
    let said = [first, second];
    let count = |text: &str| said.iter().filter(|s| s.contains(text)).count();
    assert_eq!((count("You rejected incident"), count("already answered")), (1, 1), "{said:?}");
    // The same call's key press again: a notification takes one answer.
    assert!(press(&app, call, "1").await.contains("already answered"));

    // Bob gets an SMS with links, does not answer; after 2 s the policy
    // loops and Ada is called again; she presses 1.
    app.wait_until(Duration::from_secs(20), async || twilio.received().len() == 3).await;
    let received = twilio.received();
    assert_eq!((received[1].resource.as_str(), received[1].form["To"].as_str()), ("Messages", "+15550002"));
    assert!(received[1].form["Body"].contains("/respond/"), "{:?}", received[1].form);
    assert_eq!((received[2].resource.as_str(), received[2].form["To"].as_str()), ("Calls", "+15550001"));
    let said = press(&app, &received[2], "1").await;
    assert!(said.contains("You accepted incident"), "{said}");

    let detail = app.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(detail["state"], "acknowledged");
    assert_eq!(detail["owner"], "ada");
    assert_eq!(detail["escalation"], "accepted");
    let kinds: Vec<(String, String)> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] != "delivered" && e["kind"] != "notified")
        .map(|e| (e["kind"].as_str().unwrap().to_string(), e["actor"].as_str().unwrap_or("").to_string()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("opened", ""),
        ("escalated", ""),
        ("rejected", "ada"),
        ("step_ended", ""),
        ("escalated", ""),
        ("step_ended", ""),
        ("looped", ""),
        ("escalated", ""),
        ("accepted", "ada"),
    ]
    .iter()
    .map(|(k, a)| (k.to_string(), a.to_string()))
    .collect();
    assert_eq!(kinds, expected, "{:#}", detail["timeline"]);
    let ended: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "step_ended")
        .map(|e| e["detail"]["why"].as_str().unwrap())
        .collect();
    assert_eq!(ended, ["all_rejected", "timed_out"]);
    let delivered = detail["timeline"].as_array().unwrap().iter().filter(|e| e["kind"] == "delivered").count();
    assert_eq!(delivered, 3, "three notifications, each delivered once");
    assert!(!detail["runs"].as_array().unwrap().is_empty(), "the failing runs are in the timeline");

    // Accepted: the escalation is over and nobody else is notified, though
    // the check still fails.
    let runs_before = app.get("/api/v1/checks/api/runs").await["runs"].as_array().map_or(0, |r| r.len());
    app.wait_until(Duration::from_secs(20), async || {
        app.get("/api/v1/checks/api/runs").await["runs"].as_array().map_or(0, |r| r.len()) >= runs_before + 2
    })
    .await;
    assert_eq!(twilio.received().len(), 3);
    app.stop().await;
}

async fn sms_fails_over_by_source(backend: Backend) {
    let app = spawn_app(backend).await;
    let broken = FakeTwilio::start(500);
    let working = FakeTwilio::start(201);
    create(&app, "/api/v1/contacts", json!({"name": "bob", "channels": [{"channel": "sms", "address": "+15550002"}]}))
        .await;
    create(&app, "/api/v1/gateways", broken.gateway("sms-a")).await;
    create(&app, "/api/v1/gateways", working.gateway("sms-b")).await;
    create(&app, "/api/v1/routes", json!({"name": "sms", "channel": "sms", "gateways": ["sms-a", "sms-b"]})).await;
    create(
        &app,
        "/api/v1/routes",
        json!({"name": "sms-billing", "channel": "sms", "sources": ["billing"], "gateways": ["sms-b", "sms-a"]}),
    )
    .await;
    create(&app, "/api/v1/policies", json!({"name": "default", "steps": [{"notify": ["bob"], "timeout": "5m"}]})).await;

    // From `shop`: the primary (sms-a) fails, the backup delivers.
    let alert = json!({"source": "shop", "key": "checkout", "summary": "checkout errors above 5%"});
    let (status, outcome) = app.call(Method::POST, "/api/v1/alerts", Some(alert)).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["result"], "opened");
    app.wait_until(Duration::from_secs(20), async || working.received().len() == 1).await;
    assert_eq!(broken.received().len(), 1, "the primary was tried first");
    assert_eq!(working.received()[0].form["Body"].lines().next().unwrap(), "[Tocsin] checkout errors above 5%: ");

    // From `billing`: sms-b is primary; sms-a is not tried.
    let alert = json!({"source": "billing", "key": "invoices", "summary": "invoice run failed"});
    assert_eq!(app.call(Method::POST, "/api/v1/alerts", Some(alert)).await.0, StatusCode::OK);
    app.wait_until(Duration::from_secs(20), async || working.received().len() == 2).await;
    assert_eq!(broken.received().len(), 1);

    let totals = app.get("/api/v1/gateways/totals").await;
    let of = |name: &str| totals.as_array().unwrap().iter().find(|t| t["gateway"] == name).unwrap().clone();
    assert_eq!((of("sms-a")["sent"].as_i64(), of("sms-a")["failed_over"].as_i64()), (Some(0), Some(1)));
    assert_eq!((of("sms-b")["sent"].as_i64(), of("sms-b")["failed_over"].as_i64()), (Some(2), Some(0)));
    let metrics = app.http.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"tocsin_notifications_total{gateway="sms-a",outcome="failed_over"} 1"#), "{metrics}");

    // A second alert with the same key updates the incident; resolving closes it.
    let again = json!({"source": "shop", "key": "checkout", "summary": "checkout errors above 5%"});
    assert_eq!(app.call(Method::POST, "/api/v1/alerts", Some(again)).await.1["result"], "updated");
    let resolved = json!({"source": "shop", "key": "checkout", "status": "resolved"});
    assert_eq!(app.call(Method::POST, "/api/v1/alerts", Some(resolved)).await.1["result"], "resolved");
    // Bob, who was texted, is texted that it is over (through the backup again).
    app.wait_until(Duration::from_secs(20), async || working.received().len() == 3).await;
    let body = working.received()[2].form["Body"].clone();
    assert!(body.starts_with("[Tocsin] Resolved: checkout errors above 5%"), "{body}");
    assert!(!body.contains("Accept:"), "no links to answer a resolution: {body}");
    // Secrets are not shown back.
    assert_eq!(app.get("/api/v1/gateways/sms-a").await["config"]["auth_token"], "***");
    app.stop().await;
}

async fn bad_input_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    create(
        &app,
        "/api/v1/contacts",
        json!({"name": "ada", "channels": [{"channel": "voice", "address": "+15550001"}]}),
    )
    .await;
    let refused = [
        (
            "/api/v1/policies",
            json!({"name": "p", "steps": [{"notify": ["nobody"], "timeout": "1m"}]}),
            "unknown contact \"nobody\"",
        ),
        ("/api/v1/policies", json!({"name": "p", "steps": []}), "at least one step"),
        (
            "/api/v1/policies",
            json!({"name": "p", "repeat": 10, "steps": [{"notify": ["ada"], "timeout": "1m"}]}),
            "repeat 0 to 9",
        ),
        (
            "/api/v1/policies",
            json!({"name": "p", "steps": [{"notify": ["ada:sms"], "timeout": "1m"}]}),
            "has no sms channel",
        ),
        ("/api/v1/contacts", json!({"name": "bob", "channels": [{"channel": "sms", "address": "0800-BOB"}]}), "E.164"),
        ("/api/v1/routes", json!({"name": "r", "channel": "sms", "gateways": ["ghost"]}), "unknown gateway"),
        ("/api/v1/gateways", json!({"name": "g", "plugin": "http", "config": {}}), "not a notifier"),
        ("/api/v1/gateways", json!({"name": "g", "plugin": "twilio", "config": {"account_sid": "nope"}}), "config"),
    ];
    for (path, body, needle) in refused {
        let (status, answer) = app.call(Method::POST, path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{path} {body}: {message}");
    }
    assert_eq!(app.get("/api/v1/policies").await, json!([]));
    assert_eq!(app.get("/api/v1/routes").await, json!([]));
    assert_eq!(app.get("/api/v1/gateways").await, json!([]));
    assert_eq!(app.get("/api/v1/contacts").await.as_array().unwrap().len(), 1);

    // Links: forged, expired, garbage.
    for (link, status) in [("eyJuIjoxLCJhIjoiYWNjZXB0IiwieCI6OTk5OTk5OTk5OTk5OX0.AAAA", 403), ("garbage", 403)] {
        let response = app.http.post(format!("{}/respond/{link}", app.url)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{link}");
    }
    let signer = tocsin::alerting::links::Signer::load(&app.db).await.unwrap();
    let expired = signer.current().await.unwrap().sign(&tocsin::alerting::links::Claim {
        notification: 1,
        action: tocsin::alerting::links::Action::Accept,
        expires_at: 1,
    });
    let response = app.http.post(format!("{}/respond/{expired}", app.url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::GONE);

    // Alertmanager payloads that are not.
    for body in [
        json!({"version": "4", "status": "firing"}),
        json!({"version": "3", "status": "firing", "alerts": []}),
        json!({"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {}}]}),
    ] {
        let (status, answer) = app.call(Method::POST, "/api/v1/alerts/alertmanager", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    let (status, answer) =
        app.call(Method::POST, "/api/v1/alerts", Some(json!({"source": "x", "key": "y", "status": "burning"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(app.get("/api/v1/incidents").await, json!([]));
    let check = json!({"name": "c", "plugin": "http", "target": "http://127.0.0.1/", "policy": "ghost"});
    let (status, answer) = app.call(Method::POST, "/api/v1/checks", Some(check)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("no escalation policy named \"ghost\""), "{answer}");
    // Contacts are the admin's: an editor cannot change them.
    let (_, editor) = app.call(Method::POST, "/api/v1/tokens", Some(json!({"name": "ed", "role": "editor"}))).await;
    let (status, _) = app
        .raw(
            Method::POST,
            "/api/v1/contacts",
            editor["token"].as_str(),
            Some(json!({"name": "eve", "channels": [{"channel": "sms", "address": "+15550003"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

async fn maintenance_and_silences_hold_notifications_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let twilio = FakeTwilio::start(201);
    create(&app, "/api/v1/contacts", json!({"name": "bob", "channels": [{"channel": "sms", "address": "+15550002"}]}))
        .await;
    create(&app, "/api/v1/gateways", twilio.gateway("sms")).await;
    create(&app, "/api/v1/routes", json!({"name": "sms", "channel": "sms", "gateways": ["sms"]})).await;
    create(&app, "/api/v1/policies", json!({"name": "default", "steps": [{"notify": ["bob"], "timeout": "5m"}]})).await;
    let now = tocsin::model::now_ms();
    let at = tocsin::model::wire::format_ms;
    create(
        &app,
        "/api/v1/maintenance",
        json!({"name": "db-upgrade", "sources": ["db-*"], "starts_at": at(now - 60_000), "ends_at": at(now + 3_600_000)}),
    )
    .await;
    // A recurring window that covers every minute, for the `shop` source only.
    create(
        &app,
        "/api/v1/maintenance",
        json!({"name": "always", "sources": ["shop"], "schedule": "* * * * *", "duration": "2m"}),
    )
    .await;
    let (status, answer) = app
        .call(Method::POST, "/api/v1/silences", Some(json!({"sources": ["billing"], "ends_at": at(now + 3_600_000)})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let silence = answer["id"].as_i64().unwrap();

    for source in ["db-main", "shop", "billing"] {
        let alert = json!({"source": source, "key": "k", "summary": format!("{source} trouble")});
        assert_eq!(app.call(Method::POST, "/api/v1/alerts", Some(alert)).await.1["result"], "opened");
    }
    let incidents = app.get("/api/v1/incidents?state=open").await;
    assert_eq!(incidents.as_array().unwrap().len(), 3, "incidents are recorded");
    for incident in incidents.as_array().unwrap() {
        assert_eq!(incident["escalation"], "suppressed", "{incident}");
    }
    let billing =
        incidents.as_array().unwrap().iter().find(|i| i["source"] == "billing").unwrap()["id"].as_i64().unwrap();
    let timeline = app.get(&format!("/api/v1/incidents/{billing}")).await["timeline"].clone();
    assert_eq!(timeline[1]["kind"], "suppressed");
    assert_eq!(timeline[1]["detail"]["by"], format!("silence {silence}"));

    // The silence ends: billing's incident, still open, is escalated now;
    // the others stay held back.
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/silences/{silence}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    app.wait_until(Duration::from_secs(20), async || twilio.received().len() == 1).await;
    assert!(twilio.received()[0].form["Body"].contains("billing trouble"));
    let (status, _) = app.call(Method::DELETE, "/api/v1/maintenance/db-upgrade", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    app.wait_until(Duration::from_secs(20), async || twilio.received().len() == 2).await;
    assert!(twilio.received()[1].form["Body"].contains("db-main trouble"));
    let shop = app.get("/api/v1/incidents?state=open").await;
    let shop = shop.as_array().unwrap().iter().find(|i| i["source"] == "shop").unwrap().clone();
    assert_eq!(shop["escalation"], "suppressed", "the recurring window still holds");
    app.stop().await;
}
