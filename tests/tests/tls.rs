//! TLS end to end, with real processes on ephemeral ports and a CA made on
//! the spot (rcgen, through `tocsin_tls::LocalCa`): a controller serving
//! HTTPS to the CLI and to a `tocsin node`; clients refusing a server whose
//! certificate their CA did not sign, before any token leaves them; a
//! backup site following a primary over HTTPS; a watchdog watching an HTTPS
//! controller and serving its page, views and canary over HTTPS; mutual TLS;
//! and certificate files that cannot be used, refused at start.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tocsin_e2e::*;
use tocsin_tls::LocalCa;

/// A CA and a certificate it signed for 127.0.0.1 and localhost, as files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki_in(dir: &Path, name: &str) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let ca = LocalCa::new(name).unwrap();
    let issued = ca.issue(&["127.0.0.1", "localhost"]).unwrap();
    let files = Pki { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.ca, ca.cert_pem()).unwrap();
    std::fs::write(&files.cert, issued.cert_pem).unwrap();
    std::fs::write(&files.key, issued.key_pem).unwrap();
    files
}

fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A controller serving HTTPS with `pki`'s certificate; its plugins trust
/// `pki`'s CA too (the canary is an https URL). `sections`: more TOML.
fn tls_server(dir: &Path, pki: &Pki, sections: &str, extra: &[&str]) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("tls-serve.toml");
    std::fs::write(
        &file,
        format!(
            "min_interval = \"1s\"\n[runtime]\ncache_dir = {:?}\n[runtime.network]\nextra_roots = [{:?}]\n{sections}",
            tocsin_testkit::plugin_cache(),
            pki.ca
        ),
    )
    .unwrap();
    let mut args = vec!["--config", s(&file), "--tls-cert", s(&pki.cert), "--tls-key", s(&pki.key)];
    args.extend(extra);
    Server::start(&dir.join("data"), &args)
}

/// `tocsin node` in location `location`, talking to `controller`.
fn node(dir: &Path, controller: &str, location: &str, token: &str, tls: &[&str]) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(&config, format!("[runtime]\ncache_dir = {:?}\n", tocsin_testkit::plugin_cache())).unwrap();
    let mut cmd = Command::new(binary("tocsin"));
    cmd.args(["node", "--controller", controller, "--location", location, "--name", location])
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&config)
        .args(tls)
        .env("TOCSIN_TOKEN", token)
        .env("RUST_LOG", "info");
    Proc::spawn(&format!("node {location}"), cmd)
}

/// `curl` of `url` trusting `ca`: (exit code, HTTP status, body).
fn curl(ca: Option<&Path>, url: &str) -> (i32, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "5", "-w", "\n%{http_code}"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    let out = cmd.arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (out.status.code().unwrap_or(-1), status.to_string(), body.to_string())
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_controller_serves_https_to_the_cli_and_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki_in(&tmp.path().join("pki"), "test CA");
    let mut server = tls_server(&tmp.path().join("controller"), &pki, "", &[]);
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    let ca = [("TOCSIN_CA", s(&pki.ca))];

    // Without the CA, the CLI refuses the certificate and says what to do.
    let refused = cli(&server.url, &server.token, &["check", "list"]);
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(
        refused.stderr.contains("certificate not trusted") && refused.stderr.contains("--ca"),
        "a clear certificate error: {}",
        refused.stderr
    );
    // With it, everything works.
    let created = cli_with(&server.url, &server.token, &ca, &["token", "create", "--role", "node", "-o", "json"]);
    assert_eq!(created.code, 0, "{created:?}");
    let node_token = created.json()["token"].as_str().expect("a token").to_string();

    // Plain HTTP to the TLS port is turned away at once, not left hanging.
    let started = Instant::now();
    let mut plain = TcpStream::connect(server.url.trim_start_matches("https://")).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(started.elapsed() < Duration::from_secs(5), "a plain request waited {:?}", started.elapsed());
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1."), "no HTTP answer in clear: {answer:?}");

    // A node enrolls, takes a check of its location and reports over https.
    let target = target(Duration::ZERO);
    let mut edge = node(&tmp.path().join("node"), &server.url, "edge", &node_token, &["--ca", s(&pki.ca)]);
    let add = ["check", "add", "edge-check", "--target", &target.url, "--allow", "127.0.0.1", "--interval", "1s"];
    let added = cli_with(&server.url, &server.token, &ca, &[&add[..], &["--location", "edge"]].concat());
    assert_eq!(added.code, 0, "{added:?}");
    wait_until("the node's runs of edge-check arrive over https", Duration::from_secs(90), || {
        let runs = cli_with(&server.url, &server.token, &ca, &["runs", "edge-check", "-o", "json"]);
        runs.code == 0 && runs.json().as_array().is_some_and(|r| r.iter().any(|r| r["location"] == "edge"))
    });
    assert!(!target.hits.lock().unwrap().is_empty(), "the node probed the target");

    edge.terminate(Duration::from_secs(30));
    server.proc.terminate(Duration::from_secs(30));
    assert_eq!(edge.unexpected_errors(&[]), Vec::<String>::new());
    assert_eq!(server.proc.unexpected_errors(&[]), Vec::<String>::new());
}

/// A TLS server with a certificate of its own CA that answers anything with
/// `{}` and records every request, with the token it carried.
struct Impostor {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn impostor(pki: &Pki) -> Impostor {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorded = seen.clone();
    let tls = tocsin_tls::ServerTls::load(&pki.cert, &pki.key, None).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                let recorded = recorded.clone();
                async move {
                    recorded.lock().unwrap().push(format!("{uri} {:?}", headers.get("authorization")));
                    "{}"
                }
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            tocsin_tls::serve(listener, Some(tls), app, std::future::pending()).await.unwrap();
        });
    });
    Impostor { url: format!("https://{}", rx.recv().unwrap()), seen }
}

#[test]
fn clients_refuse_a_server_their_ca_did_not_sign_and_send_it_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let real = pki_in(&tmp.path().join("real"), "the operator's CA");
    let forged = pki_in(&tmp.path().join("forged"), "an impostor's CA");
    let impostor = impostor(&forged);

    // The CLI, trusting the operator's CA, meets a server with another CA's certificate.
    let out = cli_with(&impostor.url, "tcn_admin_secret", &[("TOCSIN_CA", s(&real.ca))], &["token", "list"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("certificate not trusted"), "{}", out.stderr);

    // So does a node: it does not enroll, and says why.
    let mut edge = node(&tmp.path().join("node"), &impostor.url, "edge", "tcn_node_secret", &["--ca", s(&real.ca)]);
    edge.wait_for("certificate not trusted", Duration::from_secs(60));
    edge.kill();

    // Neither token, nor any request, reached the impostor.
    assert_eq!(*impostor.seen.lock().unwrap(), Vec::<String>::new());
}

#[test]
fn unusable_certificate_files_are_refused_at_start_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki_in(&tmp.path().join("pki"), "test CA");
    let other = pki_in(&tmp.path().join("other"), "another CA");
    let missing = tmp.path().join("missing.pem");
    let cases: [(&Path, &Path, String); 3] = [
        (&missing, &pki.key, format!("TLS certificate {}: cannot read it", missing.display())),
        (&pki.key, &pki.cert, format!("TLS certificate {}: holds no PEM certificate", pki.key.display())),
        (&pki.cert, &other.key, format!("TLS key {}: does not fit the certificate", other.key.display())),
    ];
    for (i, (cert, key, expected)) in cases.iter().enumerate() {
        let mut cmd = Command::new(binary("tocsin"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(tmp.path().join(format!("data-{i}"))).args([
            "--tls-cert",
            s(cert),
            "--tls-key",
            s(key),
        ]);
        let mut serve = Proc::spawn("serve", cmd);
        let status = serve.wait(Duration::from_secs(30));
        assert!(!status.success(), "case {i} started: {}", serve.log());
        assert!(serve.log().contains(expected.as_str()), "case {i}: wanted {expected:?} in:\n{}", serve.log());
    }
}

#[test]
fn a_backup_site_follows_a_primary_over_https() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki_in(&tmp.path().join("pki"), "test CA");
    let mut primary = tls_server(&tmp.path().join("primary"), &pki, "", &["--sync-allow", "127.0.0.1"]);
    let ca = [("TOCSIN_CA", s(&pki.ca))];
    let follow = ["--site", "backup", "--follow", &primary.url, "--sync-token", &primary.token, "--ca", s(&pki.ca)];
    let mut backup = tls_server(&tmp.path().join("backup"), &pki, "", &follow);

    let added = cli_with(
        &primary.url,
        &primary.token,
        &ca,
        &["check", "add", "synced", "--target", "https://example.com", "--interval", "30s"],
    );
    assert_eq!(added.code, 0, "{added:?}");
    // The primary's admin token reached the backup through the feed too.
    wait_until("the backup site holds the primary's new check", Duration::from_secs(60), || {
        let shown = cli_with(&backup.url, &primary.token, &ca, &["check", "show", "synced", "-o", "json"]);
        shown.code == 0 && shown.json()["target"] == "https://example.com"
    });
    let status = cli_with(&backup.url, &primary.token, &ca, &["sync", "status", "-o", "json"]);
    assert_eq!(status.code, 0, "{status:?}");

    backup.proc.terminate(Duration::from_secs(30));
    primary.proc.terminate(Duration::from_secs(30));
    assert_eq!(backup.proc.unexpected_errors(&[]), Vec::<String>::new());
    assert_eq!(primary.proc.unexpected_errors(&[]), Vec::<String>::new());
}

#[test]
fn a_watchdog_watches_an_https_controller_and_serves_https() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki_in(&tmp.path().join("pki"), "test CA");
    let mut server = tls_server(&tmp.path().join("controller"), &pki, "", &[]);
    let port = free_port();
    let dir = tmp.path().join("watchdog");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("watchdog.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"w1\"\nlisten = \"127.0.0.1:{port}\"\nstate = {:?}\ninterval = \"1s\"\ndown_after = 2\n\
             controllers = [{:?}]\ntoken = {:?}\n\n\
             [canary]\nlocations = [\"local\"]\ninterval = \"1s\"\nrotate = \"3s\"\ndeadline = \"6s\"\n\n\
             [tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\n",
            dir.join("state.db"),
            server.url,
            server.token,
            pki.cert,
            pki.key,
            pki.ca
        ),
    )
    .unwrap();
    let mut cmd = Command::new(binary("tocsin-watchdog"));
    cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
    let mut watchdog = Proc::spawn("watchdog", cmd);
    let line = watchdog.wait_for("listening on https://", Duration::from_secs(60));
    assert!(line.contains(&format!("canary at https://127.0.0.1:{port}")), "{line}");
    let url = format!("https://127.0.0.1:{port}");

    // The lease comes from the controller's API over https; the canary is an
    // https URL the controller's node fetches, trusting the same CA.
    let health = |id: &str| -> String {
        let (_, _, body) = curl(Some(&pki.ca), &format!("{url}/api/v1/view"));
        let view: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let components = view["components"].as_array().cloned().unwrap_or_default();
        components.iter().find(|c| c["id"] == id).and_then(|c| c["health"].as_str()).unwrap_or("").to_string()
    };
    wait_until("the watchdog sees the scheduler and the canary up", Duration::from_secs(90), || {
        health("scheduler") == "up" && health("canary:local") == "up"
    });

    let (code, status, body) = curl(Some(&pki.ca), &format!("{url}/"));
    assert_eq!((code, status.as_str()), (0, "200"), "the status page over https");
    assert!(body.contains("<html"), "{body}");
    // Without the CA, curl refuses the certificate (60: cannot verify it).
    assert_eq!(curl(None, &format!("{url}/")).0, 60);
    // Plain HTTP gets no page.
    let (_, status, _) = curl(None, &format!("http://127.0.0.1:{port}/"));
    assert_ne!(status, "200");

    watchdog.terminate(Duration::from_secs(30));
    server.proc.terminate(Duration::from_secs(30));
    assert_eq!(watchdog.unexpected_errors(&[]), Vec::<String>::new());
    assert_eq!(server.proc.unexpected_errors(&[]), Vec::<String>::new());
}

#[test]
fn with_a_client_ca_only_clients_holding_its_certificates_get_in() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki_in(&tmp.path().join("pki"), "server CA");
    let clients = pki_in(&tmp.path().join("clients"), "client CA");
    let strangers = pki_in(&tmp.path().join("strangers"), "someone else's CA");
    let mut server = tls_server(&tmp.path().join("controller"), &pki, "", &["--client-ca", s(&clients.ca)]);
    let ca = ("TOCSIN_CA", s(&pki.ca));

    // No client certificate, or one another CA signed: refused, saying why, nothing done.
    let bare = cli_with(&server.url, &server.token, &[ca], &["token", "create", "--role", "node", "-o", "json"]);
    assert_eq!(bare.code, 5, "{bare:?}");
    assert!(bare.stderr.contains("--tls-client-cert"), "says what to give: {}", bare.stderr);
    let stranger = [ca, ("TOCSIN_TLS_CLIENT_CERT", s(&strangers.cert)), ("TOCSIN_TLS_CLIENT_KEY", s(&strangers.key))];
    let refused = cli_with(&server.url, &server.token, &stranger, &["token", "create", "--role", "node"]);
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(refused.stderr.contains("refused this client's certificate"), "{}", refused.stderr);

    let member = [ca, ("TOCSIN_TLS_CLIENT_CERT", s(&clients.cert)), ("TOCSIN_TLS_CLIENT_KEY", s(&clients.key))];
    let tokens = cli_with(&server.url, &server.token, &member, &["token", "list", "-o", "json"]);
    assert_eq!(tokens.code, 0, "{tokens:?}");
    assert_eq!(tokens.json().as_array().map(Vec::len), Some(1), "the refused calls created no token");
    let created = cli_with(&server.url, &server.token, &member, &["token", "create", "--role", "node", "-o", "json"]);
    assert_eq!(created.code, 0, "{created:?}");
    let node_token = created.json()["token"].as_str().unwrap().to_string();

    // A node with the client certificate enrolls.
    let identity = ["--ca", s(&pki.ca), "--tls-client-cert", s(&clients.cert), "--tls-client-key", s(&clients.key)];
    let mut edge = node(&tmp.path().join("node"), &server.url, "edge", &node_token, &identity);
    wait_until("the node with a client certificate is live", Duration::from_secs(60), || {
        let nodes = cli_with(&server.url, &server.token, &member, &["node", "list", "-o", "json"]);
        nodes.code == 0 && nodes.json().as_array().is_some_and(|n| n.iter().any(|n| n["location"] == "edge"))
    });

    edge.terminate(Duration::from_secs(30));
    server.proc.terminate(Duration::from_secs(30));
    assert_eq!(edge.unexpected_errors(&[]), Vec::<String>::new());
}
