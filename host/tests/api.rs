//! The management API end to end, in process, on both backends: what a
//! client sees, and that bad input changes nothing.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

both!(
    a_check_runs_and_its_history_is_served,
    checks_are_listed_by_filter_and_page,
    updates_pauses_and_deletes_are_audited,
    bad_input_gets_a_clear_error_and_changes_nothing,
    tokens_and_roles,
    editors_cannot_open_non_public_networks,
    no_grant_opens_the_controllers_own_listener,
    every_role_gets_what_the_matrix_says,
    a_checks_secrets_are_hidden_and_kept,
    a_contacts_webhook_url_is_hidden_and_kept,
    plugins_upload_show_and_delete,
    apply_is_idempotent_and_shows_its_plan,
    operations_endpoints,
    the_document_declares_what_the_handlers_enforce,
    check_changes_reach_the_node_and_the_watchdog_levers_work,
);

fn http_check(name: &str, target: &str) -> Value {
    json!({"name": name, "plugin": "http", "target": target, "interval": "1s", "allow": ["127.0.0.1"],
           "config": {"keyword": "hello"}, "tags": ["web"], "locations": ["test"]})
}

/// Even an admin's grant of loopback does not let the node inside the
/// controller probe the controller itself; other loopback services stay
/// reachable with that grant.
async fn no_grant_opens_the_controllers_own_listener(backend: Backend) {
    let app = spawn_app(backend).await;
    let site = target_site().await;
    for (name, target) in [("itself", format!("{}/metrics", app.url)), ("neighbour", format!("{site}/"))] {
        let (status, body) = app.call(Method::POST, "/api/v1/checks", Some(http_check(name, &target))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    app.wait_until(Duration::from_secs(20), async || {
        let itself = app.get("/api/v1/checks/itself").await;
        itself["last_message"].as_str().is_some_and(|m| m.contains("the controller's own listener"))
            && app.get("/api/v1/checks/neighbour").await["status"] == "up"
    })
    .await;
    let itself = app.get("/api/v1/checks/itself").await;
    assert_ne!(itself["status"], "up", "{itself}");
    app.stop().await;
}

/// Counts that must not move when a request is refused.
async fn footprint(app: &TestApp) -> (usize, usize, usize) {
    let checks = app.get("/api/v1/checks").await["checks"].as_array().unwrap().len();
    let audit = app.get("/api/v1/audit?limit=1000").await.as_array().unwrap().len();
    let plugins = app.get("/api/v1/plugins").await.as_array().unwrap().len();
    (checks, audit, plugins)
}

async fn a_check_runs_and_its_history_is_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let site = target_site().await;
    let (status, check) = app.call(Method::POST, "/api/v1/checks", Some(http_check("web", &format!("{site}/")))).await;
    assert_eq!(status, StatusCode::CREATED, "{check}");
    assert_eq!(check["status"], "pending");
    assert_eq!(check["interval"], "1s");
    assert_eq!(check["timeout"], "1s", "the default timeout is capped by the interval");
    let (_, down) =
        app.call(Method::POST, "/api/v1/checks", Some(http_check("web-down", &format!("{site}/down")))).await;
    assert_eq!(down["plugin"], "http");

    // Runs arrive at their slots and move the checks' status.
    app.wait_until(Duration::from_secs(20), async || {
        let runs = app.get("/api/v1/checks/web/runs?limit=5").await;
        runs["runs"].as_array().unwrap().len() >= 3
    })
    .await;
    let web = app.get("/api/v1/checks/web").await;
    assert_eq!(web["status"], "up", "{web}");
    assert!(web["last_message"].as_str().unwrap().starts_with("200 in "), "{web}");
    app.wait_until(Duration::from_secs(10), async || app.get("/api/v1/checks/web-down").await["status"] == "down")
        .await;

    let page = app.get("/api/v1/checks/web/runs?limit=2").await;
    let runs = page["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs[0]["slot"].as_str() > runs[1]["slot"].as_str(), "newest first");
    assert_eq!(runs[0]["node"], "test-node");
    assert_eq!(runs[0]["location"], "test");
    assert!(runs[0]["metrics"].as_array().unwrap().iter().any(|m| m["name"] == "response_time"));
    let next = page["next"].as_str().expect("more pages");
    let older = app.get(&format!("/api/v1/checks/web/runs?limit=2&before={next}")).await;
    assert!(older["runs"][0]["slot"].as_str() < runs[1]["slot"].as_str());

    // Slots are one interval apart: one row per slot.
    let all = app.get("/api/v1/checks/web/runs?limit=100").await;
    let slots: Vec<i64> = all["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| tocsin::model::wire::parse_time(r["slot"].as_str().unwrap()).unwrap())
        .collect();
    assert!(slots.windows(2).all(|w| w[0] - w[1] == 1000), "{slots:?}");

    let latest = app.get("/api/v1/runs/latest").await;
    let names: Vec<&str> = latest.as_array().unwrap().iter().map(|r| r["check"].as_str().unwrap()).collect();
    assert_eq!(names, ["web", "web-down"]);

    tocsin::store::rollup::roll_up(&app.db, tocsin::model::now_ms()).await.unwrap();
    let series = app.get("/api/v1/checks/web-down/series").await;
    let hours = series["hours"].as_array().unwrap();
    assert!(!hours.is_empty(), "{series}");
    assert_eq!(series["availability"], 0.0);
    assert!(hours[0]["down"].as_i64().unwrap() >= 1);

    let metrics = reqwest::get(format!("{}/metrics", app.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tocsin_runs_total{plugin=\"http@0.1.0\",status=\"up\"}"), "{metrics}");
    assert!(metrics.contains("tocsin_run_start_lateness_seconds_bucket"));
    app.stop().await;
}

async fn checks_are_listed_by_filter_and_page(backend: Backend) {
    let app = spawn_app(backend).await;
    for (name, plugin, tags, locations) in [
        ("alpha", "http", vec!["web", "prod"], vec!["eu"]),
        ("beta", "tcp", vec!["db"], vec!["us"]),
        ("gamma", "http", vec!["web"], vec!["us", "eu"]),
        ("delta", "dns", vec![], vec![]),
    ] {
        let target = if plugin == "tcp" { "db.example:5432" } else { "https://example.com" };
        let body = json!({"name": name, "plugin": plugin, "target": target, "tags": tags, "locations": locations, "paused": true});
        let (status, body) = app.call(Method::POST, "/api/v1/checks", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let names = async |query: &str| -> Vec<String> {
        let page = app.get(&format!("/api/v1/checks{query}")).await;
        page["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names("").await, ["alpha", "beta", "delta", "gamma"]);
    assert_eq!(names("?plugin=http").await, ["alpha", "gamma"]);
    assert_eq!(names("?tag=web").await, ["alpha", "gamma"]);
    assert_eq!(names("?tag=we").await, Vec::<String>::new(), "tags match whole");
    assert_eq!(names("?location=eu").await, ["alpha", "gamma"]);
    assert_eq!(names("?location=us&plugin=tcp").await, ["beta"]);
    assert_eq!(names("?status=pending").await.len(), 4);
    assert_eq!(names("?status=down").await.len(), 0);

    let page = app.get("/api/v1/checks?limit=3").await;
    assert_eq!(page["checks"].as_array().unwrap().len(), 3);
    assert_eq!(page["next"], "delta");
    assert_eq!(names("?limit=3&after=delta").await, ["gamma"]);
    app.stop().await;
}

async fn updates_pauses_and_deletes_are_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, _) = app
        .call(
            Method::POST,
            "/api/v1/checks",
            Some(json!({"name": "api", "plugin": "http", "target": "https://example.com"})),
        )
        .await;
    let mut spec = json!({"name": "api", "plugin": "http", "target": "https://example.com/health", "interval": "30s"});
    let (status, updated) = app.call(Method::PUT, "/api/v1/checks/api", Some(spec.clone())).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["target"], "https://example.com/health");
    assert_eq!(updated["interval"], "30s");

    let (status, paused) = app.call(Method::POST, "/api/v1/checks/api/pause", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(paused["paused"], true);
    let (_, resumed) = app.call(Method::POST, "/api/v1/checks/api/resume", None).await;
    assert_eq!(resumed["paused"], false);

    spec["name"] = json!("api-renamed");
    let (status, _) = app.call(Method::PUT, "/api/v1/checks/api", Some(spec)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(Method::GET, "/api/v1/checks/api", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.call(Method::DELETE, "/api/v1/checks/api-renamed", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.call(Method::DELETE, "/api/v1/checks/api-renamed", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");

    let audit = app.get("/api/v1/audit").await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["check.delete", "check.update", "check.resume", "check.pause", "check.update", "check.create", "token.create"]
    );
    let update = &audit[4];
    assert_eq!(update["before"]["target"], "https://example.com");
    assert_eq!(update["after"]["target"], "https://example.com/health");
    assert!(update["actor"].as_str().unwrap().starts_with("test-admin ("));
    let feed = app.get("/api/v1/audit?after=0&limit=2").await;
    assert_eq!(feed[0]["action"], "token.create", "the feed is oldest first");
    app.stop().await;
}

async fn bad_input_gets_a_clear_error_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, _) = app
        .call(
            Method::POST,
            "/api/v1/checks",
            Some(json!({"name": "existing", "plugin": "http", "target": "https://example.com"})),
        )
        .await;
    let before = footprint(&app).await;

    let cases: Vec<(Value, StatusCode, &str, &str)> = vec![
        (
            json!({"name": "x", "plugin": "http", "target": "https://e.com", "intervall": "5s"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "unknown field `intervall`",
        ),
        (
            json!({"name": "x", "plugin": "nope", "target": "https://e.com"}),
            StatusCode::BAD_REQUEST,
            "unknown_plugin",
            "no plugin named \"nope\"",
        ),
        (
            json!({"name": "x", "plugin": "webhook", "target": "https://e.com"}),
            StatusCode::BAD_REQUEST,
            "unknown_plugin",
            "is a notifier plugin, not a check plugin",
        ),
        (
            json!({"name": "x", "plugin": "http", "target": "https://e.com", "config": {"expected_status": ["2xx", "abc"]}}),
            StatusCode::BAD_REQUEST,
            "invalid_config",
            "/expected_status/1",
        ),
        (
            json!({"name": "x", "plugin": "http", "target": "https://e.com", "interval": "200ms"}),
            StatusCode::BAD_REQUEST,
            "invalid_check",
            "interval: 200ms is outside the allowed range",
        ),
        (
            json!({"name": "x", "plugin": "http", "target": "https://e.com", "interval": "soon"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "\"soon\" is not a duration",
        ),
        (
            json!({"name": "Bad Name", "plugin": "http", "target": "https://e.com"}),
            StatusCode::BAD_REQUEST,
            "invalid_check",
            "name \"Bad Name\"",
        ),
        (
            json!({"name": "x", "plugin": "http", "target": ""}),
            StatusCode::BAD_REQUEST,
            "invalid_check",
            "target: must not be empty",
        ),
        (
            json!({"name": "x", "plugin": "http", "target": "https://e.com", "allow": ["http://x"]}),
            StatusCode::BAD_REQUEST,
            "invalid_check",
            "allow:",
        ),
        (
            json!({"name": "existing", "plugin": "http", "target": "https://e.com"}),
            StatusCode::CONFLICT,
            "conflict",
            "a check named \"existing\" already exists",
        ),
    ];
    for (body, status, code, message) in cases {
        let (got, answer) = app.call(Method::POST, "/api/v1/checks", Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        let text = answer["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{body}: {text:?} should mention {message:?}");
    }
    let (_, answer) = app.call(Method::POST, "/api/v1/checks", Some(json!({"name": "x", "plugin": "http", "target": "https://e.com", "config": {"max_response_ms": "fast"}}))).await;
    assert_eq!(answer["error"]["details"]["problems"][0]["pointer"], "/max_response_ms", "{answer}");

    // Malformed JSON, a wrong media type, no token, a bad token.
    let send = |body: &'static str, content_type: &'static str, token: Option<String>| {
        let mut request =
            app.http.post(format!("{}/api/v1/checks", app.url)).header("content-type", content_type).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let response = send("{\"name\": ", "application/json", Some(app.admin.clone())).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "malformed_json");
    let response = send("name=x", "application/x-www-form-urlencoded", Some(app.admin.clone())).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let response = send("{}", "application/json", None).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "no token: send `Authorization: Bearer <token>`");
    // The admin token with its last character changed (to one it is not).
    let last = if app.admin.ends_with('x') { "y" } else { "x" };
    let forged = format!("{}{last}", &app.admin[..app.admin.len() - 1]);
    let response = send("{}", "application/json", Some(forged)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = send("{}", "application/json", Some("hunter2".into())).await.unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["message"],
        "the token is malformed: Tocsin tokens look like tcn_<id>_<secret>"
    );

    // An oversized JSON body.
    let huge = json!({"name": "x", "plugin": "http", "target": "https://e.com", "description": "x".repeat(2 << 20)});
    let (status, answer) = app.call(Method::POST, "/api/v1/checks", Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");

    // Unknown routes and bad queries are JSON errors too.
    let (status, answer) = app.call(Method::GET, "/api/v1/nope", None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    for query in ["status=sideways", "limit=abc", "limit=0"] {
        let (status, answer) = app.call(Method::GET, &format!("/api/v1/checks?{query}"), None).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_query")),
            "{query}: {answer}"
        );
    }
    let (status, answer) = app.call(Method::GET, "/api/v1/checks/x/runs?from=yesterday", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().starts_with("from: \"yesterday\" is not an RFC 3339 time"),
        "{answer}"
    );

    assert_eq!(footprint(&app).await, before, "refused requests wrote nothing");
    app.stop().await;
}

async fn tokens_and_roles(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, viewer) =
        app.call(Method::POST, "/api/v1/tokens", Some(json!({"name": "dashboard", "role": "viewer"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{viewer}");
    let viewer_token = viewer["token"].as_str().unwrap().to_string();
    assert!(viewer_token.starts_with("tcn_"));
    let (_, editor) = app.call(Method::POST, "/api/v1/tokens", Some(json!({"name": "ci", "role": "editor"}))).await;
    let editor_token = editor["token"].as_str().unwrap().to_string();

    let check = json!({"name": "c", "plugin": "http", "target": "https://example.com"});
    let (status, answer) = app.raw(Method::POST, "/api/v1/checks", Some(&viewer_token), Some(check.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer["error"]["message"],
        "POST /api/v1/checks needs `editor` or higher, or `watchdog`; the token \"dashboard\" has the viewer role"
    );
    let (status, _) = app.raw(Method::GET, "/api/v1/checks", Some(&viewer_token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.raw(Method::POST, "/api/v1/checks", Some(&editor_token), Some(check)).await;
    assert_eq!(status, StatusCode::CREATED);
    for path in ["/api/v1/tokens", "/api/v1/audit"] {
        let (status, _) = app.raw(Method::GET, path, Some(&editor_token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }

    let tokens = app.get("/api/v1/tokens").await;
    assert_eq!(tokens.as_array().unwrap().len(), 3);
    assert!(tokens.to_string().find("tcn_").is_none(), "secrets are never listed");
    let (status, revoked) =
        app.call(Method::DELETE, &format!("/api/v1/tokens/{}", viewer["id"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    let (status, _) = app.raw(Method::GET, "/api/v1/checks", Some(&viewer_token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked at once");

    let (status, answer) = app.call(Method::POST, "/api/v1/tokens", Some(json!({"name": "x", "role": "root"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    app.stop().await;
}

/// The role matrix (`api::access`) has a row for every operation of the
/// document and no other, `docs/security.md` shows it as it is, and every
/// operation answers each role as its row says: 401 without a token, 403
/// `forbidden` below the role (before any body is read), anything else at
/// or above it.
async fn every_role_gets_what_the_matrix_says(backend: Backend) {
    use tocsin::api::access::{Access, MATRIX, markdown};
    use tocsin::model::Role;
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md")).unwrap();
    assert!(docs.contains(&markdown()), "docs/security.md must show the role matrix as it is:\n{}", markdown());

    let app = spawn_app(backend).await;
    let document = app.get("/api/v1/openapi.json").await;
    let mut operations: Vec<(String, String)> = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in
            item.as_object().unwrap().keys().filter(|m| ["get", "post", "put", "delete"].contains(&m.as_str()))
        {
            operations.push((method.to_uppercase(), path.clone()));
        }
    }
    // Routes outside the document: the document itself and the answer pages.
    let undocumented = [("GET", "/api/v1/openapi.json"), ("GET", "/respond/{link}"), ("POST", "/respond/{link}")];
    let rows: Vec<(String, String)> = MATRIX
        .iter()
        .filter(|(m, r, _)| !undocumented.contains(&(*m, *r)))
        .map(|(m, r, _)| (m.to_string(), r.to_string()))
        .collect();
    let missing: Vec<_> = operations.iter().filter(|op| !rows.contains(op)).collect();
    let stale: Vec<_> = rows.iter().filter(|row| !operations.contains(row)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "operations without a row: {missing:?}; rows without an operation: {stale:?}"
    );

    let mut tokens = vec![("none", None, None), ("admin", Some(app.admin.clone()), Some(Role::Admin))];
    for role in [Role::Viewer, Role::Editor, Role::Node, Role::Alerts, Role::Watchdog] {
        let body = json!({"name": format!("a {role}"), "role": role.as_str()});
        let (_, made) = app.call(Method::POST, "/api/v1/tokens", Some(body)).await;
        tokens.push((role.as_str(), Some(made["token"].as_str().unwrap().to_string()), Some(role)));
    }
    // The site's own levers last, so that nothing before meets a changed site.
    let mut matrix: Vec<_> = MATRIX.to_vec();
    matrix.sort_by_key(|(_, route, _)| route.starts_with("/api/v1/sync/"));
    for (method, route, access) in matrix {
        let path = route
            .replace("{name}", "x")
            .replace("{id}", "x")
            .replace("{link}", "x")
            .replace("{sha256}", "x")
            .replace("{version}", "1.0.0");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = matches!(method, Method::POST | Method::PUT).then(|| json!({}));
        for (who, token, role) in &tokens {
            let (status, answer) = app.raw(method.clone(), &path, token.as_deref(), body.clone()).await;
            let refused = status == StatusCode::FORBIDDEN && answer["error"]["code"] == "forbidden";
            let allowed = match (access, role) {
                (Access::Public, _) => true,
                (_, None) => false,
                (access, Some(role)) => {
                    access.allows(&tocsin::auth::Caller { token_id: String::new(), name: String::new(), role: *role })
                }
            };
            match (allowed, role) {
                (true, _) => {
                    assert!(status != StatusCode::UNAUTHORIZED && !refused, "{who}: {method} {path}: {status} {answer}")
                }
                (false, None) => assert_eq!(status, StatusCode::UNAUTHORIZED, "{who}: {method} {path}: {answer}"),
                (false, Some(_)) => assert!(refused, "{who} must be refused: {method} {path}: {status} {answer}"),
            }
        }
    }
    app.stop().await;
}

/// A contact's webhook URL (its path is as good as a password) is shown as
/// its origin only, to viewers and in the audit trail; sent back as read
/// it keeps the stored URL, and it cannot be sent elsewhere hidden.
async fn a_contacts_webhook_url_is_hidden_and_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, made) = app.call(Method::POST, "/api/v1/tokens", Some(json!({"name": "v", "role": "viewer"}))).await;
    let viewer = made["token"].as_str().unwrap().to_string();
    let hook = "https://hooks.example.com/services/T0/B0/contactS3cret";
    let contact = json!({"name": "ops", "channels": [{"channel": "webhook", "address": hook},
                                                      {"channel": "sms", "address": "+15550100"}]});
    let (status, created) = app.call(Method::POST, "/api/v1/contacts", Some(contact)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, read) = app.raw(Method::GET, "/api/v1/contacts/ops", Some(&viewer), None).await;
    assert_eq!(read["channels"][0]["address"], "https://hooks.example.com/***", "{read}");
    assert_eq!(read["channels"][1]["address"], "+15550100", "other addresses are shown");
    let (_, listed) = app.raw(Method::GET, "/api/v1/contacts", Some(&viewer), None).await;
    let audit = app.get("/api/v1/audit?limit=100").await;
    for (what, text) in
        [("created", created.to_string()), ("listed", listed.to_string()), ("audited", audit.to_string())]
    {
        assert!(!text.contains("contactS3cret"), "{what}: {text}");
    }
    let mut edited = read.clone();
    edited["full_name"] = json!("Operations");
    let (status, answer) = app.call(Method::PUT, "/api/v1/contacts/ops", Some(edited.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let stored: Option<Value> = {
        let mut conn = app.db.reader().acquire().await.unwrap();
        tocsin::alerting::directory::get_opened(&mut conn, app.db.keys(), tocsin::alerting::directory::CONTACTS, "ops")
            .await
            .unwrap()
    };
    assert_eq!(stored.unwrap()["channels"][0]["address"], hook, "the stored URL is kept");
    edited["channels"][0]["address"] = json!("https://attacker.example/***");
    let (status, answer) = app.call(Method::PUT, "/api/v1/contacts/ops", Some(edited)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("channels[0].address"), "{answer}");
    app.stop().await;
}

/// A check's header values never leave in clear (API, plan, audit), and
/// what was read can be sent back, by PUT or apply, without losing them.
async fn a_checks_secrets_are_hidden_and_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let site = target_site().await;
    let secret = "Bearer s3cret-check-header";
    let mut check = http_check("web", &format!("{site}/"));
    check["config"]["headers"] = json!({"Authorization": secret});
    let (status, created) = app.call(Method::POST, "/api/v1/checks", Some(check)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let read = app.get("/api/v1/checks/web").await;
    for (what, text) in [
        ("created", created.to_string()),
        ("read", read.to_string()),
        ("listed", app.get("/api/v1/checks").await.to_string()),
        ("audited", app.get("/api/v1/audit?limit=100").await.to_string()),
    ] {
        assert!(!text.contains("s3cret"), "{what}: {text}");
    }
    assert_eq!(read["config"]["headers"]["Authorization"], "***");

    // Sent back as read, with a change elsewhere: the secret stays.
    let mut edited = read.clone();
    for field in ["id", "status", "status_since", "last_run_at", "last_message", "created_at", "updated_at"] {
        edited.as_object_mut().unwrap().remove(field);
    }
    edited["description"] = json!("edited as read");
    let (status, answer) = app.call(Method::PUT, "/api/v1/checks/web", Some(edited.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let document = json!({"checks": [edited.clone()]});
    let (status, plan) = app.call(Method::POST, "/api/v1/apply", Some(document)).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["unchanged"], json!(["web"]), "an exported check applies unchanged: {plan}");
    let stored = tocsin::store::checks::get(&app.db, "web").await.unwrap();
    assert_eq!(stored.spec.config["headers"]["Authorization"], secret, "the stored secret is kept");

    // A hidden secret where none is stored is refused, naming the field.
    let mut invented = edited;
    invented["config"]["headers"] = json!({"X-Other": "***"});
    let (status, answer) = app.call(Method::PUT, "/api/v1/checks/web", Some(invented)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("config.headers.X-Other"), "{answer}");
    app.stop().await;
}

/// An editor's check reaches only public addresses, unless an admin (or the
/// operator's `editor_grants`) opened more; nothing refused is stored.
async fn editors_cannot_open_non_public_networks(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.editor_grants = vec!["10.20.0.0/16".parse().unwrap()]).await;
    let (_, editor) = app.call(Method::POST, "/api/v1/tokens", Some(json!({"name": "ci", "role": "editor"}))).await;
    let editor = editor["token"].as_str().unwrap().to_string();
    let check = |name: &str, target: &str, allow: &[&str]| json!({"name": name, "plugin": "http", "target": target, "interval": "10s", "allow": allow});
    let before = footprint(&app).await;
    for allow in
        ["0.0.0.0/0", "127.0.0.1", "169.254.169.254", "10.0.0.0/8", "::1", "fec0::/10", "64:ff9b::7f00:1", "2002::/16"]
    {
        let body = check("probe", "https://example.com", &[allow]);
        let (status, answer) = app.raw(Method::POST, "/api/v1/checks", Some(&editor), Some(body.clone())).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("grant_needs_admin")),
            "{allow}: {answer}"
        );
        assert!(answer["error"]["message"].as_str().unwrap().contains(allow), "{answer}");
        let document = json!({"checks": [body]});
        let (status, answer) = app.raw(Method::POST, "/api/v1/apply", Some(&editor), Some(document)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "apply with {allow}: {answer}");
    }
    assert_eq!(footprint(&app).await, before, "nothing refused was stored");

    // Public ranges, and the ranges the operator opened, are an editor's.
    for (name, allow) in [("public", "93.184.215.0/24"), ("lab", "10.20.30.0/24")] {
        let (status, answer) = app
            .raw(Method::POST, "/api/v1/checks", Some(&editor), Some(check(name, "https://example.com", &[allow])))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{allow}: {answer}");
    }
    // An admin opens loopback; the editor may edit the check as it is, but
    // not open more.
    let (status, _) =
        app.call(Method::POST, "/api/v1/checks", Some(check("local", "http://127.0.0.1:9/", &["127.0.0.1"]))).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut edited = check("local", "http://127.0.0.1:9/", &["127.0.0.1"]);
    edited["description"] = json!("edited by an editor");
    let (status, answer) = app.raw(Method::PUT, "/api/v1/checks/local", Some(&editor), Some(edited.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    edited["allow"] = json!(["127.0.0.1", "192.168.0.0/16"]);
    let (status, answer) = app.raw(Method::PUT, "/api/v1/checks/local", Some(&editor), Some(edited)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(app.get("/api/v1/checks/local").await["allow"], json!(["127.0.0.1"]));
    app.stop().await;
}

/// The example check from `docs/writing-plugins.md`, plus a custom section
/// so that its bytes differ while it describes itself the same way.
fn example_plugin(variant: Option<&str>) -> Vec<u8> {
    let mut wasm = tocsin_builtins::JSON_THRESHOLD.wasm.to_vec();
    if let Some(tag) = variant {
        let name = b"tocsin-test";
        let payload = tag.as_bytes();
        let size = 1 + name.len() + payload.len();
        wasm.push(0);
        wasm.push(size as u8);
        wasm.push(name.len() as u8);
        wasm.extend_from_slice(name);
        wasm.extend_from_slice(payload);
    }
    wasm
}

async fn upload(app: &TestApp, wasm: Vec<u8>, query: &str) -> (StatusCode, Value) {
    let response = app
        .http
        .post(format!("{}/api/v1/plugins{query}", app.url))
        .bearer_auth(&app.admin)
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn plugins_upload_show_and_delete(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, uploaded) = upload(&app, example_plugin(None), "").await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    assert_eq!(uploaded["name"], "json-threshold");
    assert_eq!(uploaded["created"], true);
    let (status, again) = upload(&app, example_plugin(None), "?name=json-threshold&version=0.1.0").await;
    assert_eq!((status, again["created"].as_bool()), (StatusCode::OK, Some(false)), "the same bytes again is fine");
    let (status, conflict) = upload(&app, example_plugin(Some("v2")), "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert!(conflict["error"]["message"].as_str().unwrap().contains("plugins are immutable"), "{conflict}");
    let (status, mismatch) = upload(&app, example_plugin(None), "?version=9.9.9").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{mismatch}");
    let (status, garbage) = upload(&app, b"not wasm at all".to_vec(), "").await;
    assert_eq!((status, garbage["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("not_wasm")));
    let (status, reserved) = upload(&app, tocsin_builtins::HTTP.wasm.to_vec(), "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{reserved}");
    let mut oversized = example_plugin(None);
    oversized.resize(21 << 20, 0);
    let (status, too_large) = upload(&app, oversized, "").await;
    assert_eq!(
        (status, too_large["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("plugin_too_large")),
        "{too_large}"
    );

    // Multipart works too.
    let form = reqwest::multipart::Form::new()
        .text("name", "json-threshold")
        .part("file", reqwest::multipart::Part::bytes(example_plugin(None)).file_name("json_threshold.wasm"));
    let response = app
        .http
        .post(format!("{}/api/v1/plugins", app.url))
        .bearer_auth(&app.admin)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let all = app.get("/api/v1/plugins").await;
    let names: Vec<&str> = all.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "dns",
            "email",
            "http",
            "pagerduty",
            "slack",
            "tcp",
            "tls-expiry",
            "twilio",
            "vonage",
            "webhook",
            "json-threshold"
        ]
    );
    let shown = app.get("/api/v1/plugins/json-threshold/0.1.0").await;
    assert_eq!(shown["config_schema"]["required"], json!(["pointer", "warn_above", "down_above"]));
    assert_eq!(shown["builtin"], false);

    // A check pins the version it was created with; the plugin cannot be
    // deleted while it is used.
    let check = json!({"name": "queue", "plugin": "json-threshold", "target": "https://example.com/stats",
                        "config": {"pointer": "/depth", "warn_above": 10, "down_above": 100}});
    let (status, created) = app.call(Method::POST, "/api/v1/checks", Some(check)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["plugin"], "json-threshold@0.1.0");
    let (status, used) = app.call(Method::DELETE, "/api/v1/plugins/json-threshold/0.1.0", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(used["error"]["message"].as_str().unwrap().contains("used by checks queue"), "{used}");
    let (status, _) = app.call(Method::DELETE, "/api/v1/plugins/http/0.1.0", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "built-ins cannot be deleted");
    app.call(Method::DELETE, "/api/v1/checks/queue", None).await;
    let (status, _) = app.call(Method::DELETE, "/api/v1/plugins/json-threshold/0.1.0", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.call(Method::GET, "/api/v1/plugins/json-threshold", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn apply_is_idempotent_and_shows_its_plan(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut document = json!({"checks": [
        {"name": "home", "plugin": "http", "target": "https://example.com", "interval": "30s", "config": {"expected_status": ["200"]}},
        {"name": "db", "plugin": "tcp", "target": "db.example:5432", "interval": 60},
    ]});
    let (status, plan) = app.call(Method::POST, "/api/v1/apply?dry_run=true", Some(document.clone())).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["created"], json!(["home", "db"]));
    assert_eq!(plan["applied"], false);
    assert_eq!(app.get("/api/v1/checks").await["checks"].as_array().unwrap().len(), 0, "a dry run changes nothing");

    let (_, plan) = app.call(Method::POST, "/api/v1/apply", Some(document.clone())).await;
    assert_eq!(plan["applied"], true);
    let audit_before = app.get("/api/v1/audit?limit=1000").await.as_array().unwrap().len();
    let (_, plan) = app.call(Method::POST, "/api/v1/apply", Some(document.clone())).await;
    assert_eq!(plan["unchanged"], json!(["home", "db"]), "{plan}");
    assert_eq!(plan["applied"], false);
    assert_eq!(
        app.get("/api/v1/audit?limit=1000").await.as_array().unwrap().len(),
        audit_before,
        "nothing written twice"
    );

    document["checks"][0]["interval"] = json!("45s");
    document["checks"].as_array_mut().unwrap().remove(1);
    let (_, plan) = app.call(Method::POST, "/api/v1/apply?prune=true", Some(document.clone())).await;
    assert_eq!(plan["updated"][0]["name"], "home");
    assert_eq!(plan["updated"][0]["changes"], json!([{"field": "interval", "before": "30s", "after": "45s"}]));
    assert_eq!(plan["deleted"], json!(["db"]));
    let names: Vec<String> = app.get("/api/v1/checks").await["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().into())
        .collect();
    assert_eq!(names, ["home"]);

    // A bad entry refuses the whole document, naming the entry.
    let bad = json!({"checks": [{"name": "new", "plugin": "http", "target": "https://e.com"},
                                {"name": "broken", "plugin": "http", "target": "https://e.com", "config": {"keyword": 5}}]});
    let (status, answer) = app.call(Method::POST, "/api/v1/apply", Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("checks[1] (broken): "), "{answer}");
    assert_eq!(app.get("/api/v1/checks").await["checks"].as_array().unwrap().len(), 1, "nothing half-applied");
    app.stop().await;
}

async fn operations_endpoints(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, health) = app.raw(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, health["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, ready) = app.raw(Method::GET, "/readyz", None, None).await;
    assert_eq!((status, ready["status"].as_str()), (StatusCode::OK, Some("ready")));
    let (status, spec) = app.raw(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(spec["info"]["title"], "Tocsin management API");
    for path in [
        "/api/v1/checks",
        "/api/v1/checks/{name}/runs",
        "/api/v1/plugins",
        "/api/v1/apply",
        "/api/v1/tokens",
        "/api/v1/audit",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} is documented");
    }
    assert!(spec["components"]["schemas"].get("CheckSpec").is_some());
    let nodes = app.get("/api/v1/nodes").await;
    assert_eq!(nodes[0]["name"], "test-node");
    assert_eq!(nodes[0]["location"], "test");
    app.stop().await;
}

/// The OpenAPI document's bounds are the handlers' (the contract test runs
/// Schemathesis over all of it; this is the quick check of a few).
async fn the_document_declares_what_the_handlers_enforce(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, doc) = app.raw(Method::GET, "/api/v1/openapi.json", None, None).await;
    let schemas = &doc["components"]["schemas"];
    let confirm = schemas["CheckSpec"]["properties"]["confirm"]["maximum"].as_i64().expect("confirm is bounded");
    let check = |confirm: i64| json!({"name": format!("c{confirm}"), "plugin": "http", "target": "https://example.com", "confirm": confirm});
    for over in [confirm + 1, 2_147_483_648] {
        let (status, answer) = app.call(Method::POST, "/api/v1/checks", Some(check(over))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().starts_with("confirm: "), "{answer}");
    }
    let (status, created) = app.call(Method::POST, "/api/v1/checks", Some(check(confirm))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    // A check is answered with its state: its schema is not the request's.
    assert_eq!(schemas["CheckSpec"]["additionalProperties"], false);
    assert!(schemas["Check"]["allOf"][0].get("additionalProperties").is_none(), "{}", schemas["Check"]);
    assert!(created["id"].is_i64() && created["status"] == "pending");
    // A site's role is not a token's.
    assert_eq!(schemas["Site"]["properties"]["role"]["$ref"], "#/components/schemas/SiteRole");
    assert_eq!(schemas["SiteRole"]["enum"], json!(["active", "passive"]));
    assert_eq!(app.get("/api/v1/sync/status").await["site"]["role"], "active");

    let limit = |path: &str| {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        params.iter().find(|p| p["name"] == "limit").unwrap()["schema"]["maximum"].as_i64().unwrap()
    };
    for path in ["/api/v1/incidents", "/api/v1/audit", "/api/v1/checks"] {
        let max = limit(path);
        let (status, _) = app.call(Method::GET, &format!("{path}?limit={max}"), None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let (status, answer) = app.call(Method::GET, &format!("{path}?limit={}", max + 1), None).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")));
    }

    // Errors the handlers do not list are declared too, as JSON.
    let revoke = &doc["paths"]["/api/v1/tokens/{id}"]["delete"]["responses"];
    for status in ["401", "403", "404", "503"] {
        assert_eq!(revoke[status]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody");
    }
    let (status, answer) = app.call(Method::GET, "/api/v1/incidents/abc", None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_path")));
    let upload = &doc["paths"]["/api/v1/plugins"]["post"]["requestBody"]["content"];
    assert!(upload.get("multipart/form-data").is_some() && upload.get("application/wasm").is_some(), "{upload}");
    app.stop().await;
}

async fn check_changes_reach_the_node_and_the_watchdog_levers_work(backend: Backend) {
    let app = spawn_app(backend).await;
    let site = target_site().await;
    // The levers are pulled with a watchdog token, as a watchdog does.
    let (_, made) = app.call(Method::POST, "/api/v1/tokens", Some(json!({"name": "w1", "role": "watchdog"}))).await;
    let watchdog = made["token"].as_str().unwrap().to_string();
    let as_watchdog =
        async |method: Method, path: &str, body: Option<Value>| app.raw(method, path, Some(&watchdog), body).await;

    // The lease, revoked with the epoch the watchdog saw, to a healthy
    // controller (here the same one, which takes it up afresh), once the
    // controller has taken it at start.
    app.wait_until(Duration::from_secs(10), async || app.get("/api/v1/cluster").await["scheduler"].is_string()).await;
    let cluster = app.get("/api/v1/cluster").await;
    let epoch = cluster["epoch"].as_i64().unwrap();
    let me = cluster["answered_by"].as_str().unwrap().to_string();
    let stale = json!({"epoch": epoch - 1, "to": me, "reason": "test", "agreed_by": ["w1"]});
    let (status, body) = as_watchdog(Method::POST, "/api/v1/cluster/lease/revoke", Some(stale)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["message"], format!("the scheduling lease moved on: epoch is now {epoch} (held by {me})"));
    let current = json!({"epoch": epoch, "to": me, "reason": "wedged", "agreed_by": ["w1", "w2"]});
    let (status, revoked) = as_watchdog(Method::POST, "/api/v1/cluster/lease/revoke", Some(current)).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!((revoked["scheduler"].as_str(), revoked["epoch"].as_i64()), (Some(me.as_str()), Some(epoch + 1)));
    let audit = app.get("/api/v1/audit?limit=1").await;
    assert_eq!(audit[0]["action"], "lease.revoke");
    assert_eq!(audit[0]["before"], json!({"holder": me, "epoch": epoch}));
    assert_eq!(audit[0]["after"]["agreed_by"], json!(["w1", "w2"]));

    // The new holder schedules, and a check's change reaches its node.
    let (status, _) = app.call(Method::POST, "/api/v1/checks", Some(http_check("web", &format!("{site}/")))).await;
    assert_eq!(status, StatusCode::CREATED);
    // Opening a check to loopback stands out in the audit trail.
    let audit = app.get("/api/v1/audit?limit=2").await;
    assert_eq!(
        (audit[0]["action"].as_str(), audit[0]["object_name"].as_str()),
        (Some("check.grant"), Some("web")),
        "{audit}"
    );
    assert_eq!(audit[0]["after"]["non_public"][0]["allow"], "127.0.0.1", "{audit}");

    app.wait_until(Duration::from_secs(20), async || app.get("/api/v1/checks/web").await["status"] == "up").await;
    let nodes = app.get("/api/v1/nodes").await;
    assert_eq!(nodes[0]["expected_last_minute"], 60, "{nodes}");
    assert!(nodes[0]["runs_last_minute"].as_i64().unwrap() >= 1, "{nodes}");
    let (status, _) =
        app.call(Method::PUT, "/api/v1/checks/web", Some(http_check("web", &format!("{site}/down")))).await;
    assert_eq!(status, StatusCode::OK);
    app.wait_until(Duration::from_secs(20), async || app.get("/api/v1/checks/web").await["status"] == "down").await;

    // A watchdog writes its canary, and nothing else.
    let canary = |allow: Value| {
        json!({"name": "watchdog-w1-canary-test", "plugin": "http", "target": format!("{site}/canary/w1/test/1"),
               "interval": "1s", "locations": ["test"], "tags": ["watchdog", "canary"],
               "config": {"context_headers": true}, "allow": allow})
    };
    let before = footprint(&app).await;
    let mut retargeted = canary(json!(["127.0.0.1"]));
    retargeted["plugin"] = json!("tcp");
    let mut reconfigured = canary(json!(["127.0.0.1"]));
    reconfigured["config"]["json_path"] = json!("$.secret");
    for (what, method, path, body) in [
        ("a user's check", Method::POST, "/api/v1/checks", http_check("web-2", &format!("{site}/"))),
        ("a user's check, renamed", Method::PUT, "/api/v1/checks/web", canary(json!(["127.0.0.1"]))),
        ("a grant beyond its target", Method::POST, "/api/v1/checks", canary(json!(["10.0.0.0/8"]))),
        ("another plugin", Method::POST, "/api/v1/checks", retargeted),
        ("another config", Method::POST, "/api/v1/checks", reconfigured),
    ] {
        let (status, body) = as_watchdog(method, path, Some(body)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("not_a_canary")),
            "{what}: {body}"
        );
    }
    let (status, body) = as_watchdog(Method::DELETE, "/api/v1/checks/web", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(footprint(&app).await, before, "refusals change nothing");
    let (status, body) = as_watchdog(Method::POST, "/api/v1/checks", Some(canary(json!(["127.0.0.1"])))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Eviction, audited with its reason, until resumed.
    let id = nodes[0]["id"].as_str().unwrap().to_string();
    let (status, _) = as_watchdog(Method::POST, "/api/v1/nodes/nobody/evict", Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let reason = json!({"reason": "runs nothing", "agreed_by": ["w1"]});
    let (status, node) = as_watchdog(Method::POST, &format!("/api/v1/nodes/{id}/evict"), Some(reason.clone())).await;
    assert_eq!((status, node["state"].as_str()), (StatusCode::OK, Some("evicted")), "{node}");
    let audit = app.get("/api/v1/audit?limit=1").await;
    assert_eq!((audit[0]["action"].as_str(), &audit[0]["after"]), (Some("node.evict"), &reason));
    let (status, node) = app.call(Method::POST, &format!("/api/v1/nodes/{id}/resume"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(node["state"], "evicted");
    app.stop().await;
}
