//! The watchdog's status page, as a person sees it in a real browser
//! (headless Chromium, JavaScript off, a phone and a desktop): a real
//! `tocsin serve` watched by a real `tocsin-watchdog`, then the controller
//! killed. Screenshots land in target/test-artifacts/.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use tocsin_e2e::browser::{Browser, Viewport};
use tocsin_e2e::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A page that rewrites itself if scripts run.
fn scripted_page() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/",
                axum::routing::get(|| async {
                    axum::response::Html(
                        "<!doctype html><html lang=en><meta name=viewport content='width=device-width'>\
                         <title>t</title><p id=x>static</p>\
                         <script>document.getElementById('x').textContent = 'scripted'</script>",
                    )
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}/", rx.recv().unwrap())
}

#[test]
fn the_browser_runs_no_javascript_unless_asked() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let url = scripted_page();
    let phone = Browser::phone();
    phone.goto(&url);
    assert_eq!(phone.text("#x"), "static", "JavaScript must be off");
    let layout = phone.layout();
    assert_eq!(layout.viewport_width, 375.0, "{layout:?}");
    drop(phone);
    let with_js = Browser::launch(Viewport::Desktop, true);
    with_js.goto(&url);
    assert_eq!(with_js.text("#x"), "scripted", "the control: with JavaScript on, the script runs");
    assert_eq!(with_js.layout().viewport_width, 1280.0);
}

/// Serves `html` at `/` on loopback.
fn serve_html(html: String) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app =
                axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(html) }));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}/", rx.recv().unwrap())
}

#[test]
fn a_crowded_page_with_long_words_fits_a_phone() {
    use tocsin_watchdog::model::{Health, Observation};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let html = rt.block_on(async {
        let state = tocsin_watchdog::state::State::open(&dir.path().join("w.db")).await.unwrap();
        let long = "x".repeat(300);
        let now = tocsin_watchdog::model::now_ms();
        for (i, health) in [Health::Up, Health::Degraded, Health::Down].into_iter().enumerate() {
            let mut round = vec![
                Observation::new(
                    "controller",
                    "controller-with-a-very-long-host-name.example.internal:8080",
                    health,
                    &long,
                )
                .latency(12.0),
                Observation::new("database", "database", health, format!("cannot connect: {long}")).latency(3.0),
            ];
            for n in 0..40 {
                round.push(Observation::new("node", &format!("eu-{n}-{long}"), Health::Up, "ok"));
            }
            state.record(now - 3000 + i as i64 * 1000, &round).await.unwrap();
        }
        state
            .record_action(now, "evict_node", &format!("node {long}"), &long, &["w1".into(), long.clone()], "done")
            .await
            .unwrap();
        let view = tocsin_watchdog::page::view(&state, now, "w1").await.unwrap();
        tocsin_watchdog::page::render(&view)
    });
    let url = serve_html(html);
    let phone = Browser::phone();
    phone.goto(&url);
    assert_eq!(phone.text(".banner .state"), "Major outage");
    assert_eq!(phone.count("li.component"), 42);
    let layout = phone.layout();
    assert!(!layout.scrolls_sideways(), "300-character words must wrap on a phone: {layout:?}");
    phone.screenshot("status-page-crowded-phone.png");
}

fn watchdog_config(dir: &Path, port: u16, controller: &str, token: &str, database: &Path) -> std::path::PathBuf {
    let path = dir.join("watchdog.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"w1\"\nlisten = \"127.0.0.1:{port}\"\nstate = {state:?}\ninterval = \"1s\"\ndown_after = 2\n\
             controllers = [{controller:?}]\ntoken = {token:?}\ndatabase_url = {db:?}\n",
            state = dir.join("w1.db").display().to_string(),
            db = format!("sqlite://{}", database.display()),
        ),
    )
    .unwrap();
    path
}

/// The row of the first component whose id starts with `prefix`.
fn row(prefix: &str) -> String {
    format!("li.component[data-id^='{prefix}']")
}

#[test]
fn the_status_page_shows_the_platform_and_then_the_outage() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    browser::require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("serve");
    let mut server = Server::start(&data, &[]);
    assert!(!server.token.is_empty(), "the first start prints an admin token");

    let port = tocsin_testkit::free_port();
    let config = watchdog_config(dir.path(), port, &server.url, &server.token, &data.join("tocsin.db"));
    let mut cmd = Command::new(binary("tocsin-watchdog"));
    cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
    let mut watchdog = Proc::spawn("watchdog", cmd);
    watchdog.wait_for("listening on http://", Duration::from_secs(60));
    let page = format!("http://127.0.0.1:{port}/");

    let desktop = Browser::desktop();
    desktop.goto(&page);
    desktop.reload_until("the page shows every component operational", Duration::from_secs(60), |b| {
        b.try_text(".banner .state").as_deref() == Some("All systems operational")
            && b.count(&row("controller:")) == 1
            && b.count(&row("database")) == 1
    });

    // What a person sees on a desktop.
    assert_eq!(desktop.count("script"), 0, "the page needs no JavaScript");
    assert_eq!(desktop.count("h1"), 1);
    assert_eq!(desktop.attrs("html", "lang"), [Some("en".to_string())]);
    assert!(desktop.title().contains("All systems operational"), "{}", desktop.title());
    let controller = desktop.text(&row("controller:"));
    assert!(controller.contains("Controller 127.0.0.1:") && controller.contains("Operational"), "{controller}");
    let database = desktop.text(&row("database"));
    assert!(database.starts_with("Database") && database.contains("Operational"), "{database}");
    let components = desktop.count("li.component");
    assert!(components >= 4, "controller, scheduler, database, this watchdog at least: {components}");
    assert_eq!(desktop.count("li.component svg.bars"), components, "history bars for every component");
    assert_eq!(desktop.count("li.component svg.bars rect"), 90 * components, "90 days each");
    let uptime = desktop.text(&format!("{} dl.uptime", row("controller:")));
    assert!(uptime.contains("Uptime 24 h") && uptime.contains('%'), "{uptime}");
    let chart = desktop.attrs(&format!("{} svg.chart", row("controller:")), "aria-label");
    assert_eq!(chart.len(), 1, "a response-time chart for the controller");
    let label = chart[0].clone().unwrap_or_default();
    assert!(label.starts_with("Response time of Controller 127.0.0.1:"), "{label}");
    assert_eq!(desktop.attrs(&format!("{} svg.chart", row("controller:")), "role"), [Some("img".to_string())]);
    let bars_label = desktop.attrs(&format!("{} svg.bars", row("database")), "aria-label");
    assert!(bars_label[0].as_deref().unwrap_or_default().starts_with("Database, last 90 days:"), "{bars_label:?}");
    assert!(desktop.text("#incidents-h").contains("Incidents"));
    desktop.screenshot("status-page.png");

    // On a phone: nothing scrolls sideways.
    let phone = Browser::phone();
    phone.goto(&page);
    assert_eq!(phone.text(".banner .state"), "All systems operational");
    let layout = phone.layout();
    assert_eq!(layout.viewport_width, 375.0, "the viewport meta makes the layout 375 px wide: {layout:?}");
    assert!(!layout.scrolls_sideways(), "the page is wider than the phone: {layout:?}");
    assert!(phone.text(&row("controller:")).contains("Operational"));
    phone.screenshot("status-page-phone.png");

    // The controller dies.
    server.proc.kill();
    desktop.reload_until("the controller shows as down, with an incident", Duration::from_secs(30), |b| {
        b.attrs(&row("controller:"), "data-state") == [Some("down".to_string())]
            && b.count("li.incident[data-status='open']") >= 1
    });
    let controller = desktop.text(&row("controller:"));
    assert!(controller.contains("Down"), "the state in words, not only in colour: {controller}");
    assert!(!controller.contains("Operational"), "{controller}");
    let banner = desktop.text(".banner .state");
    assert_eq!(banner, "Major outage", "the only controller is down");
    let incidents = desktop.texts("li.incident[data-status='open']");
    let incident = incidents
        .iter()
        .find(|t| t.starts_with("Controller 127.0.0.1:") && t.contains("down"))
        .unwrap_or_else(|| panic!("an open incident for the controller among {incidents:#?}"));
    assert!(incident.contains("Ongoing") && incident.contains("Started"), "{incident}");
    let timeline = desktop.texts("li.incident[data-status='open'][data-component^='controller:'] ol.timeline li");
    assert!(!timeline.is_empty(), "the incident has a timeline");
    assert!(timeline.iter().any(|t| t.contains("down")), "{timeline:#?}");
    desktop.screenshot("status-page-outage.png");

    phone.reload();
    let layout = phone.layout();
    assert!(!layout.scrolls_sideways(), "the outage page is wider than the phone: {layout:?}");
    phone.screenshot("status-page-outage-phone.png");

    drop((desktop, phone));
    watchdog.terminate(Duration::from_secs(10));
}
