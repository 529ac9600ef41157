//! The README's promise, run as a new user would: one command starts
//! Tocsin, one CLI line adds a check, runs appear seconds later; and the
//! CLI behaves the way scripts need (exit codes, JSON, several servers).

use std::time::Duration;

use tocsin_e2e::*;

const RUNS: Duration = Duration::from_secs(30);

#[test]
fn a_new_user_gets_a_running_monitor() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert!(server.token.starts_with("tcn_"), "the first start prints an admin token:\n{}", server.proc.log());
    let site = target(Duration::ZERO);
    let tocsin = |args: &[&str]| cli(&server.url, &server.token, args);

    let added =
        tocsin(&["check", "add", "homepage", "--target", &site.url, "--interval", "5s", "--allow", "127.0.0.1"]);
    assert_eq!(added.code, 0, "{added:?}");
    assert!(added.stdout.starts_with("Created check homepage (http "), "{}", added.stdout);

    wait_until("a run of the new check", RUNS, || {
        tocsin(&["runs", "homepage", "-o", "json"]).json().as_array().is_some_and(|r| !r.is_empty())
    });
    let runs = tocsin(&["runs", "homepage", "-o", "json"]).json();
    assert_eq!(runs[0]["status"], "up", "{runs}");
    assert!(!site.hits.lock().unwrap().is_empty());

    let list = tocsin(&["check", "list"]);
    assert_eq!(list.code, 0);
    let row = list.stdout.lines().find(|l| l.contains("homepage")).expect("the check is listed");
    assert!(row.contains(" up ") && row.contains(&site.url), "{row}");
    let show = tocsin(&["check", "show", "homepage"]);
    assert!(show.stdout.contains("status  up since"), "{}", show.stdout);

    assert_eq!(tocsin(&["check", "pause", "homepage"]).code, 0);
    assert_eq!(tocsin(&["check", "show", "homepage", "-o", "json"]).json()["paused"], true);
    assert_eq!(tocsin(&["check", "resume", "homepage"]).code, 0);
    let rm = tocsin(&["check", "rm", "homepage"]);
    assert_eq!((rm.code, rm.stdout.trim()), (0, "Deleted check homepage"));

    let mut server = server;
    let status = server.proc.terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM stops the server cleanly: {status:?}");
    assert_eq!(server.proc.unexpected_errors(&[]), Vec::<String>::new());
}

#[test]
fn exit_codes_scripts_can_rely_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let tocsin = |args: &[&str]| cli(&server.url, &server.token, args);

    let missing = tocsin(&["check", "show", "nope"]);
    assert_eq!(missing.code, 3, "{missing:?}");
    assert_eq!(missing.stderr.trim(), "error: check \"nope\" not found (not_found, HTTP 404)");
    let invalid = tocsin(&["check", "add", "x", "--target", "https://example.com", "--set", "keywrod=1"]);
    assert_eq!(invalid.code, 4, "{invalid:?}");
    assert!(invalid.stderr.contains("'keywrod' was unexpected"), "{}", invalid.stderr);
    let no_token = cli(&server.url, "", &["check", "list"]);
    assert_eq!(no_token.code, 6, "{no_token:?}");
    let bad_token =
        cli(&server.url, "tcn_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", &["check", "list"]);
    assert_eq!(bad_token.code, 6);
    let usage = tocsin(&["check", "add", "x"]);
    assert_eq!(usage.code, 2, "clap's usage errors: {usage:?}");
    let bad_json = tocsin(&["check", "add", "x", "--target", "t", "--config", "{"]);
    assert_eq!(bad_json.code, 2);
    assert!(bad_json.stderr.contains("--config is not JSON"), "{}", bad_json.stderr);

    let closed = format!("http://127.0.0.1:{}", tocsin_testkit::free_port());
    let unreachable = cli(&closed, &server.token, &["check", "list"]);
    assert_eq!(unreachable.code, 5, "{unreachable:?}");
    assert!(
        unreachable.stderr.contains("no server answered") && unreachable.stderr.contains("cannot connect"),
        "{}",
        unreachable.stderr
    );
    assert_eq!(server.proc.unexpected_errors(&[]), Vec::<String>::new());
}

#[test]
fn servers_are_tried_in_order_until_one_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let dead = format!("http://127.0.0.1:{}", tocsin_testkit::free_port());
    let both = format!("{dead},{}", server.url);
    let list = cli(&both, &server.token, &["check", "list", "-o", "json"]);
    assert_eq!(list.code, 0, "{list:?}");
    assert_eq!(list.json(), serde_json::json!([]));

    // The same with repeated --server flags.
    let out = std::process::Command::new(binary("tocsin"))
        .args(["--server", &dead, "--server", &server.url, "--token", &server.token, "plugin", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tls-expiry"));

    let other_dead = format!("http://127.0.0.1:{}", tocsin_testkit::free_port());
    let none = cli(&format!("{dead},{other_dead}"), &server.token, &["check", "list"]);
    assert_eq!(none.code, 5);
    assert!(none.stderr.contains(&dead) && none.stderr.contains(&other_dead), "{}", none.stderr);
}

#[test]
fn apply_yaml_and_toml_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let tocsin = |args: &[&str]| cli(&server.url, &server.token, args);
    let yaml = dir.path().join("checks.yaml");
    std::fs::write(
        &yaml,
        "checks:\n  - name: site\n    plugin: http\n    target: https://example.com\n    interval: 30s\n    config:\n      expected_status: [\"200\"]\n  - name: resolver\n    plugin: dns\n    target: example.com\n    tags: [dns]\n",
    )
    .unwrap();
    let yaml = yaml.to_str().unwrap();
    let dry = tocsin(&["apply", "-f", yaml, "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(
        dry.stdout,
        "+ create site\n+ create resolver\nDry run: 2 to create, 0 to update, 0 to delete; nothing changed.\n"
    );
    let applied = tocsin(&["apply", "-f", yaml]);
    assert_eq!(applied.stdout.lines().last(), Some("Applied: 2 create, 0 update, 0 delete."), "{applied:?}");
    let again = tocsin(&["apply", "-f", yaml]);
    assert_eq!(again.stdout, "= 2 unchanged\nNothing to change.\n");

    let toml = dir.path().join("checks.toml");
    std::fs::write(&toml, "[[checks]]\nname = \"site\"\nplugin = \"http\"\ntarget = \"https://example.com\"\ninterval = \"1m\"\nconfig = { expected_status = [\"200\"] }\n").unwrap();
    let changed = tocsin(&["apply", "-f", toml.to_str().unwrap(), "--prune"]);
    assert_eq!(changed.code, 0, "{changed:?}");
    assert!(changed.stdout.contains("~ update site\n    interval: \"30s\" -> \"1m\"\n"), "{}", changed.stdout);
    assert!(changed.stdout.contains("- delete resolver\n"), "{}", changed.stdout);

    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "checks:\n  - name: x\n    plugin: http\n    target: t\n    intervall: 5s\n").unwrap();
    let refused = tocsin(&["apply", "-f", broken.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("unknown field `intervall`") && refused.stderr.contains("line 5 column 5"),
        "{}",
        refused.stderr
    );
}

#[test]
fn plugins_are_pushed_shown_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let tocsin = |args: &[&str]| cli(&server.url, &server.token, args);
    let wasm = dir.path().join("json_threshold.wasm");
    std::fs::write(&wasm, tocsin_builtins::JSON_THRESHOLD.wasm).unwrap();
    let pushed = tocsin(&["plugin", "push", wasm.to_str().unwrap()]);
    assert_eq!(pushed.code, 0, "{pushed:?}");
    assert!(pushed.stdout.starts_with("Uploaded check plugin json-threshold@0.1.0 (sha256 "), "{}", pushed.stdout);
    let again = tocsin(&["plugin", "push", wasm.to_str().unwrap()]);
    assert!(again.stdout.starts_with("Already had check plugin json-threshold@0.1.0"), "{}", again.stdout);
    let list = tocsin(&["plugin", "list"]);
    assert!(list.stdout.lines().any(|l| l.contains("json-threshold") && l.contains("uploaded")), "{}", list.stdout);
    let show = tocsin(&["plugin", "show", "json-threshold"]);
    assert!(show.stdout.contains("\"pointer\""), "the schema is shown: {}", show.stdout);

    let notwasm = dir.path().join("notes.txt");
    std::fs::write(&notwasm, "hello").unwrap();
    let refused = tocsin(&["plugin", "push", notwasm.to_str().unwrap()]);
    assert_eq!(refused.code, 4);
    assert!(refused.stderr.contains("not a WebAssembly file"), "{}", refused.stderr);
}

#[test]
fn tokens_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let created =
        cli(&server.url, &server.token, &["token", "create", "--role", "viewer", "--name", "grafana", "-o", "json"]);
    assert_eq!(created.code, 0, "{created:?}");
    let viewer = created.json()["token"].as_str().unwrap().to_string();
    assert_eq!(cli(&server.url, &viewer, &["check", "list"]).code, 0);
    let denied = cli(&server.url, &viewer, &["check", "add", "x", "--target", "https://example.com"]);
    assert_eq!(denied.code, 6, "{denied:?}");
    let audit = cli(&server.url, &server.token, &["audit"]);
    assert!(audit.stdout.contains("token.create"), "{}", audit.stdout);
}

/// Runs in flight when SIGTERM arrives are finished and written; a restart
/// keeps every check, prints no new token, and carries on.
#[test]
fn shutdown_writes_runs_in_flight_and_a_restart_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let token = server.token.clone();
    let slow = target(Duration::from_millis(1500));
    let add = cli(
        &server.url,
        &token,
        &["check", "add", "slow", "--target", &slow.url, "--interval", "5s", "--allow", "127.0.0.1"],
    );
    assert_eq!(add.code, 0, "{add:?}");
    wait_until("the target is hit", RUNS, || !slow.hits.lock().unwrap().is_empty());
    // The run is now waiting on the slow target.
    let status = server.proc.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    assert!(server.proc.log().contains("finishing runs in flight"));
    assert_eq!(server.proc.unexpected_errors(&[]), Vec::<String>::new());

    let server = Server::start(dir.path(), &[]);
    assert_eq!(server.token, "", "the admin token is printed on first start only");
    let runs = cli(&server.url, &token, &["runs", "slow", "-o", "json"]).json();
    assert_eq!(runs.as_array().map(|r| r.len()), Some(1), "the run in flight was written: {runs}");
    assert_eq!(runs[0]["status"], "up");
    wait_until("runs carry on after the restart", RUNS, || {
        cli(&server.url, &token, &["runs", "slow", "-o", "json"]).json().as_array().is_some_and(|r| r.len() >= 2)
    });
}

#[test]
fn the_same_binary_runs_on_postgresql() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Postgres));
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--database-url", &db.url]);
    assert!(server.proc.log().contains("(PostgreSQL;"), "{}", server.proc.log());
    assert!(!server.proc.log().contains(&db.url), "the database URL is not logged");
    let site = target(Duration::ZERO);
    let add = cli(
        &server.url,
        &server.token,
        &["check", "add", "pg", "--target", &site.url, "--interval", "5s", "--allow", "127.0.0.1"],
    );
    assert_eq!(add.code, 0, "{add:?}");
    wait_until("a run on PostgreSQL", RUNS, || {
        cli(&server.url, &server.token, &["runs", "pg", "-o", "json"]).json().as_array().is_some_and(|r| !r.is_empty())
    });
    assert_eq!(server.proc.unexpected_errors(&[]), Vec::<String>::new());
}
