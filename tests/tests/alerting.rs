//! Alerting with the real binaries: a controller SIGKILLed in the middle of
//! an escalation continues it after a restart without losing or repeating
//! a notification; a real Prometheus Alertmanager opens and resolves an
//! incident through its webhook.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tocsin_e2e::*;
use tocsin_testkit::twilio::{FakeTwilio, Received};

fn ok(out: Outcome) -> Outcome {
    assert_eq!(out.code, 0, "{out:?}");
    out
}

fn incident(server: &str, token: &str, id: i64) -> Value {
    ok(cli(server, token, &["incident", "show", &id.to_string(), "-o", "json"])).json()
}

fn kinds(detail: &Value, kind: &str) -> usize {
    detail["timeline"].as_array().unwrap().iter().filter(|e| e["kind"] == kind).count()
}

/// Presses a key on a call, as Twilio reports it (signed); returns what
/// is said back.
fn press(call: &Received, digits: &str) -> String {
    let (form, signature) = call.key_press(digits);
    let (said, code) =
        curl(&["-X", "POST", "-H", &format!("X-Twilio-Signature: {signature}"), "--data", &form, &call.callback()]);
    assert_eq!(code, "200", "{said}");
    said
}

#[test]
fn a_confirmed_failure_escalates_until_someone_accepts_by_key_press() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--location", "eu"]);
    let (url, token) = (server.url.clone(), server.token.clone());
    let node_token = ok(cli(&url, &token, &["token", "create", "--role", "node", "--name", "probes", "-o", "json"]))
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let remote = cluster::node("us-1", "us", &dir.path().join("us-1"), &[&url], &node_token, None);
    wait_until("two nodes in two locations", Duration::from_secs(30), || {
        ok(cli(&url, &token, &["node", "list", "-o", "json"])).json().as_array().is_some_and(|n| n.len() == 2)
    });
    let twilio = FakeTwilio::start(201);
    ok(cli(&url, &token, &["contact", "add", "ada", "--channel", "voice=+15550001"]));
    ok(cli(&url, &token, &["contact", "add", "bob", "--channel", "sms=+15550002"]));
    let gateway = twilio.gateway("twilio");
    ok(cli(
        &url,
        &token,
        &["gateway", "add", "twilio", "--plugin", "twilio", "--config", &gateway["config"].to_string()],
    ));
    ok(cli(&url, &token, &["route", "add", "voice", "--channel", "voice", "--gateway", "twilio"]));
    ok(cli(&url, &token, &["route", "add", "sms", "--channel", "sms", "--gateway", "twilio"]));
    ok(cli(&url, &token, &["policy", "add", "oncall", "--step", "ada:voice@60s", "--step", "bob@2s", "--repeat", "1"]));
    ok(cli(
        &url,
        &token,
        &[
            "check",
            "add",
            "api",
            "--target",
            "http://127.0.0.1:1/",
            "--interval",
            "5s",
            "--allow",
            "127.0.0.1",
            "--confirm",
            "1",
            "--policy",
            "oncall",
        ],
    ));

    let list = || ok(cli(&url, &token, &["incident", "list", "-o", "json"])).json();
    wait_until("the confirmed failure opens an incident", Duration::from_secs(30), || {
        list().as_array().is_some_and(|a| !a.is_empty())
    });
    let id = list()[0]["id"].as_i64().unwrap();
    let message = list()[0]["message"].as_str().unwrap().to_string();
    // Seen failing from where the check runs, confirmed from the other location.
    assert!(message.contains("confirmed from eu") || message.contains("confirmed from us"), "{message}");

    wait_until("ada is called", Duration::from_secs(20), || twilio.received().len() == 1);
    let first = twilio.received()[0].clone();
    assert_eq!((first.resource.as_str(), first.form["To"].as_str()), ("Calls", "+15550001"));
    assert!(press(&first, "2").contains("You rejected"));
    wait_until("bob is texted, then ada called again", Duration::from_secs(20), || twilio.received().len() == 3);
    let received = twilio.received();
    assert_eq!((received[1].resource.as_str(), received[1].form["To"].as_str()), ("Messages", "+15550002"));
    assert_eq!((received[2].resource.as_str(), received[2].form["To"].as_str()), ("Calls", "+15550001"));
    assert!(press(&received[2], "1").contains("You accepted"));

    let detail = incident(&url, &token, id);
    assert_eq!((detail["state"].as_str(), detail["owner"].as_str()), (Some("acknowledged"), Some("ada")));
    let story: Vec<String> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !matches!(e["kind"].as_str(), Some("notified" | "delivered")))
        .map(|e| {
            let why = e["detail"]["why"].as_str().map(|w| format!(" ({w})")).unwrap_or_default();
            format!(
                "{}{}{why}",
                e["kind"].as_str().unwrap(),
                e["actor"].as_str().map(|a| format!(" by {a}")).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        story,
        [
            "opened",
            "escalated",
            "rejected by ada",
            "step_ended (all_rejected)",
            "escalated",
            "step_ended (timed_out)",
            "looped",
            "escalated",
            "accepted by ada"
        ],
        "{:#}",
        detail["timeline"]
    );
    let runs = detail["runs"].as_array().unwrap();
    let home = runs.iter().find(|r| r["attempt"] == "scheduled").unwrap()["location"].clone();
    assert!(runs.iter().any(|r| r["attempt"] == "confirmation" && r["location"] != home), "{runs:?}");
    // Accepted: nobody else is called while the check keeps failing.
    let before = list()[0]["escalation"].clone();
    assert_eq!(before, "accepted");
    wait_until("two more failed runs", Duration::from_secs(30), || {
        incident(&url, &token, id)["runs"].as_array().unwrap().len() >= runs.len() + 2
    });
    assert_eq!(twilio.received().len(), 3);
    assert_eq!(server.proc.unexpected_errors(&[]), Vec::<String>::new());
    assert_eq!(remote.proc.unexpected_errors(&[]), Vec::<String>::new());
}

#[test]
fn a_controller_killed_mid_escalation_continues_it_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[]);
    let (url, token) = (server.url.clone(), server.token.clone());
    let sink = Sink::start();
    for name in ["ada", "bob", "carol"] {
        ok(cli(&url, &token, &["contact", "add", name, "--channel", &format!("webhook=http://example.com/{name}")]));
    }
    ok(cli(&url, &token, &sink.gateway_add("hook").iter().map(String::as_str).collect::<Vec<_>>()));
    ok(cli(&url, &token, &["route", "add", "web", "--channel", "webhook", "--gateway", "hook"]));
    ok(cli(&url, &token, &["policy", "add", "default", "--step", "ada@2s", "--step", "bob@2s", "--step", "carol@10m"]));
    let sent = ok(cli(
        &url,
        &token,
        &["alert", "send", "--source", "shop", "--key", "checkout", "--summary", "checkout fails", "-o", "json"],
    ));
    let id = sent.json()["incident"].as_i64().unwrap();

    wait_until("ada is notified", Duration::from_secs(20), || sink.contacts() == ["ada"]);
    wait_until("the delivery is recorded", Duration::from_secs(10), || {
        kinds(&incident(&url, &token, id), "delivered") == 1
    });
    server.proc.kill();
    // Down for longer than ada's step: her step ends while no controller runs.
    let killed = Instant::now();
    wait_until("ada's step is over", Duration::from_secs(10), || killed.elapsed() >= Duration::from_secs(3));
    assert_eq!(sink.contacts(), ["ada"], "nothing is sent while the controller is down");

    let server = Server::start(&data, &[]);
    let url = server.url.clone();
    wait_until("bob, then carol, are notified", Duration::from_secs(30), || sink.contacts().len() >= 3);
    assert_eq!(sink.contacts(), ["ada", "bob", "carol"]);
    let keys: std::collections::HashSet<String> =
        sink.received.lock().unwrap().iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys.len(), 3, "three notifications, each sent once");

    let detail = incident(&url, &token, id);
    assert_eq!(
        (kinds(&detail, "escalated"), kinds(&detail, "step_ended"), kinds(&detail, "delivered")),
        (3, 2, 3),
        "{detail:#}"
    );
    let accepted = ok(cli(&url, &token, &["incident", "ack", &id.to_string(), "--contact", "carol", "-o", "json"]));
    assert_eq!(accepted.json()[0]["owner"], "carol");
    assert_eq!(incident(&url, &token, id)["escalation"], "accepted");
    // Senders that know several servers try each in turn.
    let dead = "http://127.0.0.1:9";
    let other = ok(cli(
        &format!("{dead},{url}"),
        &token,
        &["alert", "send", "--source", "shop", "--key", "other", "--summary", "x", "-o", "json"],
    ));
    assert_eq!(other.json()["result"], "opened");
    assert_eq!(server.proc.unexpected_errors(&[]), Vec::<String>::new());
}

fn alertmanager_binary() -> String {
    for candidate in ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"] {
        if Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    panic!("Prometheus Alertmanager is not installed: apt-get install prometheus-alertmanager");
}

fn curl(args: &[&str]) -> (String, String) {
    let out =
        Command::new("curl").args(["-s", "--max-time", "5", "-w", "\n%{http_code}"]).args(args).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (body.to_string(), code.to_string())
}

#[test]
fn alertmanager_opens_and_resolves_an_incident() {
    let binary = alertmanager_binary();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (url, admin) = (server.url.clone(), server.token.clone());
    // Alertmanager holds a token that may raise alerts and nothing else.
    let token = ok(cli(&url, &admin, &["token", "create", "--role", "alerts", "--name", "alertmanager", "-o", "json"]))
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: tocsin\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: tocsin\n    webhook_configs:\n      - url: {url}/api/v1/alerts/alertmanager\n        \
             send_resolved: true\n        http_config:\n          authorization:\n            type: Bearer\n            \
             credentials: {token}\n"
        ),
    )
    .unwrap();
    let port = tocsin_testkit::free_port();
    let mut cmd = Command::new(binary);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.path().join("am").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=");
    let mut am = Proc::spawn("alertmanager", cmd);
    let api = format!("http://127.0.0.1:{port}");
    wait_until("Alertmanager is ready", Duration::from_secs(30), || curl(&[&format!("{api}/-/ready")]).1 == "200");

    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let later = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(3600)).to_string();
    let alert = |ends: &str| {
        format!(
            r#"[{{"labels": {{"alertname": "DiskFull", "instance": "db1", "severity": "warning"}},
                 "annotations": {{"summary": "disk 95% full on db1"}}, "startsAt": "{now}", "endsAt": "{ends}"}}]"#
        )
    };
    let post = |body: String| {
        let (answer, code) =
            curl(&["-X", "POST", "-H", "content-type: application/json", "-d", &body, &format!("{api}/api/v2/alerts")]);
        assert_eq!(code, "200", "{answer}");
    };
    post(alert(&later));
    let list = || ok(cli(&url, &admin, &["incident", "list", "-o", "json"])).json();
    wait_until("the incident opens", Duration::from_secs(30), || list().as_array().is_some_and(|a| !a.is_empty()));
    let opened = list()[0].clone();
    assert_eq!(opened["title"], "disk 95% full on db1");
    let read = cli(&url, &token, &["incident", "list", "-o", "json"]);
    assert_ne!(read.code, 0, "an alerts token reads nothing: {read:?}");
    assert_eq!(opened["source"], "alertmanager");
    assert_eq!(opened["severity"], "warning");
    assert_eq!(opened["state"], "triggered");

    // The alert ends: Alertmanager sends it resolved.
    let ended = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    post(alert(&ended));
    wait_until("the incident resolves", Duration::from_secs(30), || list()[0]["state"] == "resolved");
    assert_eq!(list().as_array().unwrap().len(), 1, "the same incident, not a new one");
    am.kill();
    assert_eq!(server.proc.unexpected_errors(&[]), Vec::<String>::new());
}
