//! Redundant sites end to end: two sites, each a real `tocsin serve` on its
//! own PostgreSQL schema, the backup following the primary's change feed.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tocsin_e2e::sites::{Api, SiteProc, change, eventually, site};
use tocsin_e2e::{Backend, TestDb, cli};

/// Lines a site may log at ERROR in these tests, by design.
const EXPECTED: &[&str] = &["sync: stopped", "refused a feed read"];

struct Pair {
    _dir: tempfile::TempDir,
    primary_db: TestDb,
    backup_db: TestDb,
    primary: SiteProc,
    backup: SiteProc,
    token: String,
}

impl Pair {
    /// A primary taking changes and a backup following it; each knows the
    /// other as a peer.
    async fn start() -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let primary_db = TestDb::new(Backend::Postgres).await;
        let backup_db = TestDb::new(Backend::Postgres).await;
        let (p_port, b_port) = (tocsin_testkit::free_port(), tocsin_testkit::free_port());
        let (p_url, b_url) = (format!("http://127.0.0.1:{p_port}"), format!("http://127.0.0.1:{b_port}"));
        let primary = site(
            "primary",
            &dir.path().join("p"),
            &format!("127.0.0.1:{p_port}"),
            &primary_db.url,
            &["--sync-allow", "127.0.0.1", "--sync-peer", &b_url],
        );
        let token = primary.token.clone();
        assert!(!token.is_empty(), "the primary printed its first admin token");
        let backup = start_backup(&dir, &backup_db, b_port, &p_url, &token);
        Pair { _dir: dir, primary_db, backup_db, primary, backup, token }
    }

    fn primary(&self) -> Api {
        Api::new(&self.primary.url, &self.token)
    }

    fn backup(&self) -> Api {
        Api::new(&self.backup.url, &self.token)
    }

    /// The primary, back on its port and database after a kill: it knows
    /// the backup as a peer and can read its feed.
    fn restart_old_primary(&mut self) {
        let port = self.primary.url.rsplit(':').next().unwrap().to_string();
        let b_url = self.backup.url.clone();
        self.primary = site(
            "primary",
            &self._dir.path().join("p"),
            &format!("127.0.0.1:{port}"),
            &self.primary_db.url,
            &["--sync-allow", "127.0.0.1", "--sync-peer", &b_url, "--sync-token", &self.token],
        );
    }

    fn assert_clean_logs(&self) {
        for proc in [&self.primary.proc, &self.backup.proc] {
            let errors = proc.unexpected_errors(EXPECTED);
            assert!(errors.is_empty(), "{} logged errors: {errors:#?}", proc.name);
        }
    }
}

fn start_backup(dir: &tempfile::TempDir, db: &TestDb, port: u16, primary: &str, token: &str) -> SiteProc {
    site(
        "backup",
        &dir.path().join("b"),
        &format!("127.0.0.1:{port}"),
        &db.url,
        &["--follow", primary, "--sync-token", token, "--sync-peer", primary, "--sync-allow", "127.0.0.1"],
    )
}

async fn caught_up(primary: &Api, backup: &Api, timeout: Duration) {
    let target = primary.head().await;
    eventually(&format!("the backup holds change {target}"), timeout, || async { backup.head().await >= target }).await;
}

/// The snapshots without the site's own row, which differs by design.
async fn objects(api: &Api) -> Value {
    api.snapshot().await["objects"].clone()
}

/// The log as text: tracing colours its fields.
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_changes_arrive_in_order_and_identical_across_a_follower_crash() {
    let mut pair = Pair::start().await;
    let primary = pair.primary();
    let started = primary.head().await;
    for i in 0..400 {
        change(&primary, i).await;
    }
    // The follower dies mid-stream; the primary goes on taking changes.
    caught_up(&primary, &pair.backup(), Duration::from_secs(30)).await;
    pair.backup.proc.kill();
    for i in 400..1000 {
        change(&primary, i).await;
    }
    let head = primary.head().await;
    assert_eq!(head - started, 1000, "every change is one feed entry");
    let restarted = Instant::now();
    let port = pair.backup.url.rsplit(':').next().unwrap().parse().unwrap();
    pair.backup = start_backup(&pair._dir, &pair.backup_db, port, &pair.primary.url, &pair.token);
    let backup = pair.backup();
    caught_up(&primary, &backup, Duration::from_secs(60)).await;
    eprintln!("the restarted follower caught up on 600 changes in {:?}", restarted.elapsed());

    // The same entries in the same order, and the same objects, field by
    // field (ids, token hashes, timestamps included).
    let (theirs, ours) = (primary.feed().await, backup.feed().await);
    assert_eq!(theirs.len(), ours.len());
    for (a, b) in theirs.iter().zip(&ours) {
        assert_eq!(a, b, "feed entry {} differs", a["seq"]);
    }
    let seqs: Vec<i64> = ours.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "entries are numbered without gaps");
    let (p, b) = (objects(&primary).await, objects(&backup).await);
    assert_eq!(p.as_array().unwrap().len(), b.as_array().unwrap().len());
    for (x, y) in p.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
        assert_eq!(x, y, "object {} {} differs", x["kind"], x["name"]);
    }
    let kinds: std::collections::BTreeSet<&str> = ours.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["check", "contact", "gateway", "policy", "token", "silence"] {
        assert!(kinds.contains(kind), "the feed carried {kind}s: {kinds:?}");
    }
    let deletions = ours.iter().filter(|e| e["body"].is_null()).count();
    assert!(deletions >= 200, "deletions are entries too: {deletions}");

    // The API shows the same checks on both sites, and a token minted at
    // the primary works at the backup.
    let list = |api: &Api| {
        let api = api.clone();
        async move {
            let checks = api.ok(Method::GET, "/api/v1/checks", None).await;
            let mut specs: Vec<Value> = checks["checks"]
                .as_array()
                .or(checks.as_array())
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|c| json!([c["name"], c["target"], c["description"], c["paused"], c["tags"]]))
                .collect();
            specs.sort_by_key(|v| v.to_string());
            specs
        }
    };
    let (pc, bc) = (list(&primary).await, list(&backup).await);
    assert!(!pc.is_empty());
    assert_eq!(pc, bc);

    // The verbose sync log has every entry the restarted follower applied, in order.
    let log = without_colours(&pair.backup.proc.log());
    let applied: Vec<i64> = log
        .lines()
        .filter(|l| l.contains("sync: applied"))
        .filter_map(|l| l.split(" seq=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(applied.len() >= 600, "the log shows each applied entry: {} lines", applied.len());
    assert!(applied.windows(2).all(|w| w[1] == w[0] + 1), "applied in order");
    assert_eq!(*applied.last().unwrap(), head);
    pair.assert_clean_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passive_site_refuses_changes_nodes_and_alerts_and_is_not_ready() {
    let pair = Pair::start().await;
    let (primary, backup) = (pair.primary(), pair.backup());
    change(&primary, 0).await;
    caught_up(&primary, &backup, Duration::from_secs(30)).await;
    let before = backup.snapshot().await;

    let refused = [
        backup
            .post("/api/v1/checks", json!({"name": "local", "plugin": "http", "target": "https://example.com/"}))
            .await,
        backup.call(Method::DELETE, "/api/v1/checks/c0", None).await,
        backup.post("/api/v1/alerts", json!({"source": "billing", "key": "k", "summary": "down"})).await,
        backup.post("/api/v1/tokens", json!({"name": "x", "role": "admin"})).await,
        backup.get("/api/v1/node/work?node=n&version=0").await,
    ];
    for (status, body) in &refused {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(body["error"]["code"], "site_passive", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(&pair.primary.url), "{body}");
    }
    assert_eq!(backup.snapshot().await["objects"], before["objects"], "nothing changed");
    // Reading works.
    assert_eq!(backup.get("/api/v1/checks/c0").await.0, 200);
    assert_eq!(backup.readyz().await, 503);
    assert_eq!(primary.readyz().await, 200);

    // The CLI given both sites goes on to the active one.
    let out = cli(
        &format!("{},{}", pair.backup.url, pair.primary.url),
        &pair.token,
        &["check", "add", "from-cli", "--target", "https://example.com/cli"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let alone = cli(&pair.backup.url, &pair.token, &["check", "add", "nope", "--target", "https://example.com/"]);
    assert_ne!(alone.code, 0);
    assert!(alone.stderr.contains("passive"), "{alone:?}");
    caught_up(&primary, &backup, Duration::from_secs(30)).await;
    assert_eq!(backup.get("/api/v1/checks/from-cli").await.0, 200);
    pair.assert_clean_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn only_allowlisted_peers_with_an_admin_token_read_the_feed() {
    let pair = Pair::start().await;
    let url = &pair.primary.url;
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    for path in ["/api/v1/sync/feed?after=0", "/api/v1/sync/snapshot"] {
        let (status, body) = Api::from_address(url, &pair.token, Some(other)).get(path).await;
        assert_eq!(status, 403, "{path} from 127.0.0.2: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("127.0.0.2 is not on this site's sync allowlist"));
        assert_eq!(Api::new(url, "").get(path).await.0, 401, "{path} without a token");
    }
    let viewer = pair.primary().ok(Method::POST, "/api/v1/tokens", Some(json!({"name": "v", "role": "viewer"}))).await;
    let (status, body) = Api::new(url, viewer["token"].as_str().unwrap()).get("/api/v1/sync/feed?after=0").await;
    assert_eq!(status, 403, "a viewer token: {body}");
    assert_eq!(pair.primary().get("/api/v1/sync/feed?after=0").await.0, 200, "allowed address and admin token");
    assert!(pair.primary.proc.log().contains("refused a feed read from an address not on the sync allowlist"));
}

#[tokio::test(flavor = "multi_thread")]
async fn promotion_then_the_old_primary_returns_passive_and_follows() {
    let mut pair = Pair::start().await;
    let (primary, backup) = (pair.primary(), pair.backup());
    for i in 0..24 {
        change(&primary, i).await;
    }
    caught_up(&primary, &backup, Duration::from_secs(30)).await;

    pair.primary.proc.kill();
    let promoted = cli(&pair.backup.url, &pair.token, &["sync", "promote", "-o", "json"]);
    assert_eq!(promoted.code, 0, "{promoted:?}");
    assert_eq!(promoted.json()["role"], "active");
    assert_eq!(promoted.json()["epoch"], 2);
    eventually("the promoted site is ready", Duration::from_secs(10), || async { backup.readyz().await == 200 }).await;
    backup
        .ok(
            Method::POST,
            "/api/v1/checks",
            Some(json!({"name": "after-promotion", "plugin": "http", "target": "https://example.com/p"})),
        )
        .await;
    // Promoting again is refused: it is active already.
    let again = cli(&pair.backup.url, &pair.token, &["sync", "promote"]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("active already"), "{again:?}");

    // The old primary comes back with its old epoch: it must never say it
    // is ready, and it follows the new one.
    let b_url = pair.backup.url.clone();
    pair.restart_old_primary();
    let old = pair.primary();
    let mut readiness = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        readiness.push(old.readyz().await);
        let passive = old.status().await["site"]["role"] == "passive";
        if passive && old.get("/api/v1/checks/after-promotion").await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the old primary did not follow the new one: {}", old.status().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!readiness.contains(&200), "the old primary never said it was ready: {readiness:?}");
    let status = old.status().await;
    assert_eq!(status["site"]["source"], b_url.as_str());
    assert_eq!(status["site"]["epoch"], 2);
    assert!(pair.primary.proc.log().contains("stepping down to follow it"));
    let (_, trail) = old.get("/api/v1/audit?limit=1000").await;
    let stepped =
        trail.as_array().unwrap().iter().any(|e| {
            e["action"] == "site.step_down" && e["actor"].as_str().is_some_and(|a| a.contains(b_url.as_str()))
        });
    assert!(stepped, "the step-down is in the old primary's audit trail: {trail}");
    let (status, body) =
        old.post("/api/v1/checks", json!({"name": "x", "plugin": "http", "target": "https://example.com/x"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("site_passive")));
    assert_eq!(objects(&old).await, objects(&backup).await);
    pair.assert_clean_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_diverged_site_stops_and_recover_reports_what_it_discarded() {
    let mut pair = Pair::start().await;
    let (p_url, b_url) = (pair.primary.url.clone(), pair.backup.url.clone());
    let b_port = b_url.rsplit(':').next().unwrap().to_string();
    for i in 0..6 {
        change(&pair.primary(), i).await;
    }
    caught_up(&pair.primary(), &pair.backup(), Duration::from_secs(30)).await;

    // A partition: the backup is promoted while the primary, cut off, takes
    // a change of its own (here: the backup is stopped instead).
    pair.backup.proc.kill();
    pair.primary()
        .ok(
            Method::POST,
            "/api/v1/checks",
            Some(json!({"name": "lost-in-partition", "plugin": "http", "target": "https://example.com/l"})),
        )
        .await;
    pair.primary.proc.kill();
    let backup_args = ["--sync-token", pair.token.as_str(), "--sync-peer", p_url.as_str(), "--sync-allow", "127.0.0.1"];
    pair.backup =
        site("backup", &pair._dir.path().join("b"), &format!("127.0.0.1:{b_port}"), &pair.backup_db.url, &backup_args);
    assert_eq!(cli(&b_url, &pair.token, &["sync", "promote"]).code, 0);
    pair.backup()
        .ok(
            Method::POST,
            "/api/v1/checks",
            Some(json!({"name": "made-at-backup", "plugin": "http", "target": "https://example.com/m"})),
        )
        .await;

    // The old primary returns: it steps down, but its newest change is not
    // the new primary's, so it stops and says how to go on.
    pair.restart_old_primary();
    let old = pair.primary();
    eventually("the old primary reports divergence", Duration::from_secs(30), || async {
        old.status().await["following"]["diverged"] == true
    })
    .await;
    let status = cli(&p_url, &pair.token, &["sync", "status"]);
    assert!(status.stdout.contains("diverged") || status.stdout.contains("took changes of its own"), "{status:?}");
    assert!(pair.primary.proc.log().contains("run `tocsin sync recover --from"));
    assert_eq!(old.get("/api/v1/checks/made-at-backup").await.0, 404, "nothing applied past the divergence");

    let recovered = cli(&p_url, &pair.token, &["sync", "recover", "--from", &b_url]);
    assert_eq!(recovered.code, 0, "{recovered:?}");
    assert!(
        recovered.stdout.contains("lost-in-partition"),
        "the report names what was discarded: {}",
        recovered.stdout
    );
    assert!(recovered.stdout.contains("only here"), "{}", recovered.stdout);
    let backup = pair.backup();
    assert_eq!(objects(&old).await, objects(&backup).await);
    assert_eq!(old.get("/api/v1/checks/lost-in-partition").await.0, 404);
    // It follows from there on.
    backup
        .ok(
            Method::POST,
            "/api/v1/checks",
            Some(json!({"name": "later", "plugin": "http", "target": "https://example.com/z"})),
        )
        .await;
    eventually("a later change arrives", Duration::from_secs(30), || async {
        old.get("/api/v1/checks/later").await.0 == 200
    })
    .await;
    let audit = old.ok(Method::GET, "/api/v1/audit?limit=20", None).await;
    assert!(audit.to_string().contains("site.recover"), "the recovery is in the audit trail");
    pair.assert_clean_logs();
}

/// Whoever answers at a `--sync-peer` address (a forged peer) reports itself
/// active at a far higher epoch. It cannot sign the site's challenge with
/// the peer secret, so the site ignores it: it stays active and ready,
/// takes changes, and its sync token never reaches the forger.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_peer_neither_demotes_a_site_nor_learns_its_token() {
    use std::sync::{Arc, Mutex};
    /// Each request the forger got: its URI and Authorization header.
    type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let forger = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let log = log.clone();
        async move {
            let auth = request.headers().get("authorization").map(|v| v.to_str().unwrap_or("?").to_string());
            log.lock().unwrap().push((request.uri().to_string(), auth));
            axum::Json(json!({
                "site": {"name": "forged", "role": "active", "epoch": 99, "head": 0, "head_epoch": 0,
                         "head_chain": "", "source": null, "changed_at": 0},
                "ready": true, "following": null, "proof": "00".repeat(32)
            }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forger_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, forger).await });

    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    let port = tocsin_testkit::free_port();
    let sync_token = "tcn_forgedtarget_ThisSyncTokenMustNeverReachTheForger000000";
    let primary = site(
        "primary",
        &dir.path().join("p"),
        &format!("127.0.0.1:{port}"),
        &db.url,
        &["--sync-peer", &forger_url, "--sync-token", sync_token],
    );
    let api = Api::new(&primary.url, &primary.token);
    let asked =
        || seen.lock().unwrap().iter().filter(|(uri, _)| uri.contains("/api/v1/sync/status?challenge=")).count();
    eventually("the site asked the forger three times", Duration::from_secs(30), || async { asked() >= 3 }).await;

    let status = api.status().await;
    assert_eq!(
        (status["site"]["role"].as_str(), status["site"]["epoch"].as_i64()),
        (Some("active"), Some(1)),
        "{status}"
    );
    assert_eq!(status["ready"], true, "{status}");
    let head = api.head().await;
    change(&api, 0).await;
    assert_eq!(api.head().await, head + 1, "the site still takes changes");
    let requests = seen.lock().unwrap().clone();
    assert!(requests.iter().all(|(_, auth)| auth.is_none()), "the forger got a token: {requests:?}");
    let metrics = reqwest::get(format!("{}/metrics", primary.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tocsin_auth_failures_total{reason=\"sync_peer\"}"), "{metrics}");
}
