//! The API's OpenAPI document is a contract, and the real binary keeps it.
//!
//! Schemathesis (pinned in `tests/tools/requirements.lock`, installed by
//! `tests/run.sh` into `target/tools/venv`) reads the document a real
//! `tocsin serve` on SQLite serves, sends every operation generated requests
//! (valid ones, and ones the document says are invalid) and checks every
//! answer against the document: its status is declared, its body matches
//! the declared schema, its content type is the declared one, it is not a
//! server error, invalid input is refused with a 4xx. Any finding fails the
//! test, with Schemathesis' report.
//!
//! The server is seeded first (a check, contacts, a policy, gateways, a
//! route, maintenance windows, a silence, an incident, tokens, a node, an
//! uploaded plugin) and the run is told their names, so operations on one
//! object get past "not found".

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tocsin_e2e::Server;
use tocsin_e2e::sites::Api;

/// Where `tests/run.sh` installs it; `TOCSIN_SCHEMATHESIS` overrides.
fn schemathesis() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let path = std::env::var_os("TOCSIN_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target/tools/venv/bin/schemathesis"));
    assert!(
        path.is_file(),
        "Schemathesis is not installed at {}, and this test needs it: run `tests/run.sh --install-only` \
         (it installs tests/tools/requirements.lock into target/tools/venv), or point TOCSIN_SCHEMATHESIS at one",
        path.display()
    );
    path
}

/// Requests per operation and phase, and a fixed seed, so that a run on
/// two cores stays within about three minutes and CI runs the same cases.
const MAX_EXAMPLES: &str = "50";
const SEED: &str = "1";
/// Far above a passing run: a hung run fails rather than stalls the suite.
const DEADLINE: Duration = Duration::from_secs(600);

#[test]
fn the_api_answers_as_its_openapi_document_says() {
    let schemathesis = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    // The sync feed, snapshot and plugin bytes answer only an allowed address.
    let mut server = Server::start(dir.path(), &["--sync-allow", "127.0.0.1"]);
    assert!(server.token.starts_with("tcn_"), "the first start prints an admin token:\n{}", server.proc.log());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seeded = runtime.block_on(seed(&server.url, &server.token));
    let config = dir.path().join("schemathesis.toml");
    let settings = seeded.config(&server.token);
    std::fs::write(&config, &settings).unwrap();

    let args = [
        "--config-file".to_string(),
        config.display().to_string(),
        "run".into(),
        format!("{}/api/v1/openapi.json", server.url),
        // Every check but positive_data_acceptance, which wants every
        // request the schemas allow to succeed. Much the API refuses is
        // valid JSON of the right shape: a check's config against its
        // plugin's own schema, a target its grants do not reach, a policy,
        // contact or gateway that does not exist, a rename through PUT, a
        // firing alert without a summary, a silence that ended, bytes that
        // are not a WebAssembly component. Those refusals are 400s with the
        // field named, which the other checks hold to the document.
        "--checks".into(),
        "all".into(),
        "--exclude-checks".into(),
        "positive_data_acceptance".into(),
        "--max-examples".into(),
        MAX_EXAMPLES.into(),
        "--seed".into(),
        SEED.into(),
        // One worker: the order of the requests, and so the state each one
        // meets, is the same from run to run (only the stateful phase's
        // choice among links varies).
        "--workers".into(),
        "1".into(),
        "--generation-database".into(),
        "none".into(),
        "--request-timeout".into(),
        "30".into(),
        "--continue-on-failure".into(),
        "--no-color".into(),
    ];
    eprintln!("running {} {}\nwith {}:\n{settings}", schemathesis.display(), args.join(" "), config.display());
    let started = Instant::now();
    let log = dir.path().join("schemathesis.log");
    let (success, report) = run(Command::new(&schemathesis).args(&args).current_dir(dir.path()), &log);
    eprintln!("{report}\nschemathesis took {:.0?}", started.elapsed());
    assert!(success, "Schemathesis found answers that break the API's OpenAPI document:\n{report}");

    // The run must not have revoked the token it used (it would have spent
    // itself on 401s) nor broken the server.
    let (status, _) = runtime.block_on(Api::new(&server.url, &server.token).get("/api/v1/tokens"));
    assert_eq!(status, 200, "the run's admin token still works");
    let status = server.proc.terminate(Duration::from_secs(30));
    assert!(status.success(), "the server stops cleanly after the run: {status:?}");
    // The run configures contacts whose channels no route delivers, and
    // raises alerts that notify them: the outbox reports each such
    // notification as an error, as it should. Nothing else may be one.
    let expected = ["a notification cannot be delivered"];
    assert_eq!(server.proc.unexpected_errors(&expected), Vec::<String>::new());
}

/// Runs `cmd` to completion (or the deadline) with its stdout and stderr
/// together in `log`; whether it succeeded, and what it wrote.
fn run(cmd: &mut Command, log: &Path) -> (bool, String) {
    let file = std::fs::File::create(log).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let report = std::fs::read_to_string(log).unwrap_or_default();
            panic!("Schemathesis did not finish within {DEADLINE:?}; so far:\n{report}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (status.success(), std::fs::read_to_string(log).unwrap_or_default())
}

/// What the seeding made, by the names the run must use.
struct Seeded {
    node_token: String,
    spare_token: String,
    incident: i64,
    silence: i64,
    plugin: (String, String),
    sha256: String,
}

/// Objects the operations on one object can find. Each kind has one that
/// stays and one to delete; PUT replaces the one that stays (renames are
/// refused, or for checks a separate one takes them).
async fn seed(url: &str, token: &str) -> Seeded {
    let api = Api::new(url, token);
    let post = |path: &'static str, body: Value| {
        let api = api.clone();
        async move { api.ok(Method::POST, path, Some(body)).await }
    };
    // The seeded checks watch the server itself, so they run and stay up.
    // `homepage` is the document's example check with other settings:
    // applying the example document updates it, so apply answers with
    // changed fields.
    for name in ["seeded", "put-me", "delete-me", "homepage"] {
        let check = json!({"name": name, "plugin": "http", "target": format!("{url}/healthz"),
                           "allow": ["127.0.0.1"], "interval": "5s", "confirm": 2});
        post("/api/v1/checks", check).await;
    }
    for name in ["ada", "delete-me"] {
        let channels = [json!({"channel": "webhook", "address": "https://example.com/hook"})];
        post("/api/v1/contacts", json!({"name": name, "channels": channels})).await;
    }
    for name in ["default", "delete-me"] {
        post("/api/v1/policies", json!({"name": name, "steps": [{"notify": ["ada"], "timeout": "5m"}]})).await;
    }
    for name in ["hook", "delete-me"] {
        let gateway = json!({"name": name, "plugin": "webhook", "config": {"url": "https://example.com/hook"}});
        post("/api/v1/gateways", gateway).await;
    }
    for name in ["hooks", "delete-me"] {
        post("/api/v1/routes", json!({"name": name, "channel": "webhook", "gateways": ["hook"]})).await;
    }
    for name in ["nightly", "delete-me"] {
        post("/api/v1/maintenance", json!({"name": name, "schedule": "0 2 * * SUN", "duration": "2h"})).await;
    }
    let silence = post("/api/v1/silences", json!({"sources": ["check:delete-me"], "ends_at": "2099-01-01T00:00:00Z"}))
        .await["id"]
        .as_i64()
        .unwrap();
    let alert = json!({"source": "billing", "key": "backlog", "summary": "queue backlog"});
    let incident = post("/api/v1/alerts", alert).await["incident"].as_i64().unwrap();
    let spare = post("/api/v1/tokens", json!({"name": "spare", "role": "viewer"})).await["id"].as_str().unwrap().into();
    let node_token: String =
        post("/api/v1/tokens", json!({"name": "probe", "role": "node"})).await["token"].as_str().unwrap().into();
    let hello = json!({"node_id": "node-seeded", "name": "probe", "location": "elsewhere", "version": "0.1.0"});
    reqwest::Client::new()
        .post(format!("{url}/api/v1/node/enroll"))
        .bearer_auth(&node_token)
        .header("tocsin-node-key", "tcnk_the-seeded-node-key-of-at-least-32-characters")
        .json(&hello)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("enrolling a node");
    let uploaded: Value = reqwest::Client::new()
        .post(format!("{url}/api/v1/plugins"))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(tocsin_builtins::JSON_THRESHOLD.wasm)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("uploading a plugin")
        .json()
        .await
        .unwrap();
    let text = |key: &str| uploaded[key].as_str().unwrap().to_string();
    Seeded {
        node_token,
        spare_token: spare,
        incident,
        silence,
        plugin: (text("name"), text("version")),
        sha256: text("sha256"),
    }
}

impl Seeded {
    /// Schemathesis' configuration: the tokens, and the seeded objects'
    /// names for the operations' path parameters.
    fn config(&self, admin: &str) -> String {
        let mut fixed: Vec<(Vec<String>, Value)> = vec![
            (
                labels(&[
                    "GET /api/v1/checks/{name}",
                    "POST /api/v1/checks/{name}/pause",
                    "POST /api/v1/checks/{name}/resume",
                    "GET /api/v1/checks/{name}/runs",
                    "GET /api/v1/checks/{name}/series",
                ]),
                json!({"path.name": "seeded"}),
            ),
            (labels(&["PUT /api/v1/checks/{name}"]), json!({"path.name": "put-me"})),
            (labels(&["DELETE /api/v1/checks/{name}"]), json!({"path.name": "delete-me"})),
            (
                labels(&["GET /api/v1/plugins/{name}", "GET /api/v1/plugins/{name}/{version}"]),
                json!({"path.name": "webhook", "path.version": "0.1.0"}),
            ),
            (
                labels(&["DELETE /api/v1/plugins/{name}/{version}"]),
                json!({"path.name": self.plugin.0, "path.version": self.plugin.1}),
            ),
            (
                labels(&[
                    "GET /api/v1/incidents/{id}",
                    "POST /api/v1/incidents/{id}/accept",
                    "POST /api/v1/incidents/{id}/reject",
                    "POST /api/v1/incidents/{id}/resolve",
                ]),
                json!({"path.id": self.incident}),
            ),
            (labels(&["DELETE /api/v1/silences/{id}"]), json!({"path.id": self.silence})),
            (
                labels(&[
                    "DELETE /api/v1/nodes/{id}",
                    "POST /api/v1/nodes/{id}/drain",
                    "POST /api/v1/nodes/{id}/evict",
                    "POST /api/v1/nodes/{id}/resume",
                ]),
                json!({"path.id": "node-seeded"}),
            ),
            (
                labels(&["GET /api/v1/sync/plugins/{sha256}", "GET /api/v1/node/plugins/{sha256}"]),
                json!({"path.sha256": self.sha256}),
            ),
            // The seeded node, answered at once: a long-poll of the node's
            // current version would hold each request for up to 30 s.
            (labels(&["GET /api/v1/node/work"]), json!({"query.node": "node-seeded", "query.wait_ms": 0})),
            // Pruning deletes every check the document does not list, the
            // seeded ones too, leaving the rest of the run nothing but 404s.
            (labels(&["POST /api/v1/apply"]), json!({"query.prune": false})),
        ];
        for (kind, kept) in [
            ("contacts", "ada"),
            ("policies", "default"),
            ("gateways", "hook"),
            ("routes", "hooks"),
            ("maintenance", "nightly"),
        ] {
            let item = format!("/api/v1/{kind}/{{name}}");
            fixed.push((vec![format!("GET {item}"), format!("PUT {item}")], json!({"path.name": kept})));
            fixed.push((vec![format!("DELETE {item}")], json!({"path.name": "delete-me"})));
        }
        let mut toml = format!("headers = {{ Authorization = {} }}\n", quoted(&format!("Bearer {admin}")));
        // The node protocol takes node tokens only.
        toml += &format!(
            "\n[[operations]]\ninclude-path-regex = \"^/api/v1/node/\"\nheaders = {{ Authorization = {} }}\n",
            quoted(&format!("Bearer {}", self.node_token))
        );
        // Revoking a token is tested on a spare one. The stateful phase
        // follows links from the token list to this operation, and would
        // revoke the tokens the run itself uses.
        toml += &format!(
            "\n[[operations]]\ninclude-name = \"DELETE /api/v1/tokens/{{id}}\"\n\
             parameters = {{ \"path.id\" = {} }}\nphases = {{ stateful = {{ enabled = false }} }}\n",
            quoted(&self.spare_token)
        );
        for (names, parameters) in fixed {
            let pairs: Vec<String> = parameters
                .as_object()
                .unwrap()
                .iter()
                .map(|(key, value)| format!("{} = {value}", quoted(key)))
                .collect();
            toml += &format!(
                "\n[[operations]]\ninclude-name = {}\nparameters = {{ {} }}\n",
                Value::from(names),
                pairs.join(", ")
            );
        }
        toml
    }
}

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// A TOML basic string (JSON's escapes are TOML's for what we write).
fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}
