//! A real browser for end-to-end tests: Debian's headless Chromium driven
//! through chromedriver (WebDriver) with `fantoccini`, on a phone-sized or
//! a desktop viewport, JavaScript off unless asked for, so a test sees a
//! page as a person would and saves a screenshot of it.
//!
//! chromedriver runs on a free port in a process group of its own; the
//! session is closed and the group killed when the [`Browser`] drops. Every
//! WebDriver call is bounded in time. A machine without Chromium fails the
//! test, naming the packages: a browser test never skips silently.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The longest any one WebDriver call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewport {
    /// 375 × 812 CSS pixels at 2× with mobile emulation (an iPhone X-sized
    /// phone): the page's viewport meta decides the layout width, as on a phone.
    Phone,
    /// 1280 × 900.
    Desktop,
}

impl Viewport {
    pub fn size(self) -> (u32, u32) {
        match self {
            Viewport::Phone => (375, 812),
            Viewport::Desktop => (1280, 900),
        }
    }
}

/// The page's laid-out size in CSS pixels, from Chromium itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    /// The width of everything on the page; more than `viewport_width`
    /// means the page scrolls sideways.
    pub content_width: f64,
    pub content_height: f64,
    /// The width of the layout viewport (the window, on a phone the
    /// `width=device-width` of the viewport meta).
    pub viewport_width: f64,
}

impl Layout {
    pub fn scrolls_sideways(&self) -> bool {
        self.content_width > self.viewport_width + 0.5
    }
}

/// chromedriver, killed with its process group on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver and the Chromium it started lead a process group of
        // their own (started below): end that group, then reap chromedriver.
        let _ =
            Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Browser {
    client: Option<Client>,
    viewport: Viewport,
    // Dropped after the runtime, which the client's session task runs on.
    runtime: tokio::runtime::Runtime,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// Panics unless Chromium and chromedriver are installed.
pub fn require_chromium() {
    for path in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(path).is_file(),
            "{path} is missing: this test drives a real browser; install them: apt-get install chromium chromium-driver"
        );
    }
}

impl Browser {
    /// A phone (375 × 812) with JavaScript off.
    pub fn phone() -> Browser {
        Browser::launch(Viewport::Phone, false)
    }

    /// A desktop window (1280 × 900) with JavaScript off.
    pub fn desktop() -> Browser {
        Browser::launch(Viewport::Desktop, false)
    }

    /// Starts chromedriver and a headless Chromium session.
    pub fn launch(viewport: Viewport, javascript: bool) -> Browser {
        require_chromium();
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime for the browser");
        let driver = start_driver();
        let profile = tempfile::tempdir().expect("a profile directory for Chromium");
        let (width, height) = viewport.size();
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-extensions".into(),
            "--no-first-run".into(),
            "--hide-scrollbars".into(),
            "--force-color-profile=srgb".into(),
            "--lang=en-US".into(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let mut options = json!({
            "binary": CHROMIUM,
            "args": args,
            // 2 blocks JavaScript for every site.
            "prefs": { "profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 } },
        });
        if viewport == Viewport::Phone {
            options["mobileEmulation"] = json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2.0, "mobile": true, "touch": true },
            });
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), options);
        capabilities.insert("pageLoadStrategy".into(), json!("normal"));
        let url = driver.url.clone();
        let client = runtime.block_on(async {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let mut builder = ClientBuilder::new(connector);
            builder.capabilities(capabilities);
            let connect = builder.connect(&url);
            match tokio::time::timeout(CALL_TIMEOUT, connect).await {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => panic!("starting a Chromium session through chromedriver at {url}: {e}"),
                Err(_) => panic!("starting a Chromium session took over {CALL_TIMEOUT:?}"),
            }
        });
        // Headless, the window has no frame: --window-size is the viewport.
        Browser { client: Some(client), viewport, runtime, _driver: driver, _profile: profile }
    }

    pub fn viewport(&self) -> Viewport {
        self.viewport
    }

    fn client(&self) -> Client {
        self.client.clone().expect("an open session")
    }

    /// Runs one WebDriver call, bounded in time; panics naming `what`.
    fn call<T, F>(&self, what: &str, f: impl FnOnce(Client) -> F) -> T
    where
        F: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let client = self.client();
        match self.runtime.block_on(async { tokio::time::timeout(CALL_TIMEOUT, f(client)).await }) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("browser: {what}: {e}"),
            Err(_) => panic!("browser: {what}: no answer within {CALL_TIMEOUT:?}"),
        }
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        let u = url.to_string();
        self.call(&format!("open {url}"), |c| async move { c.goto(&u).await });
    }

    /// Reloads the page, as the page's own refresh would.
    pub fn reload(&self) {
        self.call("reload", |c| async move { c.refresh().await });
    }

    pub fn title(&self) -> String {
        self.call("read the title", |c| async move { c.title().await })
    }

    /// The page's HTML as the browser parsed it.
    pub fn source(&self) -> String {
        self.call("read the source", |c| async move { c.source().await })
    }

    /// How many elements match `css`.
    pub fn count(&self, css: &str) -> usize {
        let sel = css.to_string();
        self.call(&format!("find {css}"), |c| async move { c.find_all(Locator::Css(&sel)).await }).len()
    }

    /// The rendered text (what a person reads) of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let sel = css.to_string();
        self.call(&format!("read {css}"), |c| async move {
            let mut out = Vec::new();
            for e in c.find_all(Locator::Css(&sel)).await? {
                out.push(e.text().await?);
            }
            Ok(out)
        })
    }

    /// The rendered text of the first element matching `css`; panics if none.
    pub fn text(&self, css: &str) -> String {
        self.texts(css).into_iter().next().unwrap_or_else(|| panic!("browser: nothing matches {css}"))
    }

    /// The text of the first element matching `css`, if any.
    pub fn try_text(&self, css: &str) -> Option<String> {
        self.texts(css).into_iter().next()
    }

    /// An attribute of every element matching `css`.
    pub fn attrs(&self, css: &str, attr: &str) -> Vec<Option<String>> {
        let (sel, attr) = (css.to_string(), attr.to_string());
        self.call(&format!("read {attr} of {css}"), |c| async move {
            let mut out = Vec::new();
            for e in c.find_all(Locator::Css(&sel)).await? {
                out.push(e.attr(&attr).await?);
            }
            Ok(out)
        })
    }

    /// Reloads until `condition` holds, at most `timeout`; panics naming
    /// `what` with the page's text when it does not.
    pub fn reload_until(&self, what: &str, timeout: Duration, mut condition: impl FnMut(&Browser) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return;
            }
            if Instant::now() >= deadline {
                let body = self.try_text("body").unwrap_or_default();
                panic!("{what}: not within {timeout:?}; the page reads:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(250));
            self.reload();
        }
    }

    /// A Chrome DevTools command through chromedriver (works with JavaScript off).
    pub fn cdp(&self, command: &str, params: Value) -> Value {
        let cmd = Cdp { command: command.to_string(), params };
        self.call(&format!("DevTools {command}"), |c| async move { c.issue_cmd(cmd).await })
    }

    /// The page's laid-out size, from Chromium's layout (not from a script).
    pub fn layout(&self) -> Layout {
        let m = self.cdp("Page.getLayoutMetrics", json!({}));
        let f = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("layout metrics: {m}"));
        Layout {
            content_width: f(&m["cssContentSize"]["width"]),
            content_height: f(&m["cssContentSize"]["height"]),
            viewport_width: f(&m["cssLayoutViewport"]["clientWidth"]),
        }
    }

    /// A screenshot of the whole page (beyond the viewport) saved as
    /// `target/test-artifacts/<name>`; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let layout = self.layout();
        let shot = self.cdp(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": layout.content_width.max(layout.viewport_width),
                          "height": layout.content_height.min(16_000.0), "scale": 1 },
            }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_else(|| panic!("a screenshot: {shot}")))
            .expect("base64 PNG");
        let path = artifacts_dir().join(name);
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ =
                self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), client.close()).await });
        }
    }
}

/// `target/test-artifacts`, created if need be.
pub fn artifacts_dir() -> PathBuf {
    // The test executable is target/<profile>/deps/<name>.
    let exe = std::env::current_exe().expect("the test's own path");
    let target = exe.ancestors().nth(3).expect("target/").to_path_buf();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

fn start_driver() -> Driver {
    use std::os::unix::process::CommandExt;
    let port = tocsin_testkit::free_port();
    let log = std::env::temp_dir().join(format!("chromedriver-{port}.log"));
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("starting {CHROMEDRIVER}: {e}; install it: apt-get install chromium chromium-driver")
        });
    let mut driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return driver;
        }
        if let Ok(Some(status)) = driver.child.try_wait() {
            panic!("chromedriver exited ({status}) before listening; see {}", log.display());
        }
        assert!(Instant::now() < deadline, "chromedriver did not listen on {port} within 30 s; see {}", log.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `POST /session/{id}/goog/cdp/execute`: chromedriver's way to DevTools.
#[derive(Debug)]
struct Cdp {
    command: String,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({ "cmd": self.command, "params": self.params }).to_string()))
    }
}
