//! What `tocsin dev` serves itself, on 127.0.0.1: the `flaky` sample
//! target (up, then down, in turns), a port that refuses every connection
//! (bound, never listening), and a webhook sink that prints the alerts the
//! controller and the watchdog send, so they show in the terminal.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::extract::Path;
use axum::http::StatusCode;
use serde_json::Value;
use tokio::time::Instant;

use super::say;

pub struct Targets {
    /// The HTTP server: `/flaky` and `/alerts/{from}`.
    pub addr: SocketAddr,
    /// A port nothing will ever accept on while `tocsin dev` runs.
    pub closed: SocketAddr,
    /// Held so that no one else binds the closed port.
    _closed: tokio::net::TcpSocket,
}

impl Targets {
    pub fn flaky_url(&self) -> String {
        format!("http://{}/flaky", self.addr)
    }

    pub fn alerts_url(&self, from: &str) -> String {
        format!("http://{}/alerts/{from}", self.addr)
    }
}

/// Binds both ports (0: any free one) and serves until the process ends.
pub async fn start(port: u16, closed_port: u16, flap_every: Duration) -> anyhow::Result<Targets> {
    let taken = |port: u16, what: &str| format!("cannot bind 127.0.0.1:{port} ({what}): {}", super::PORT_HINT);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| taken(port, "the sample targets and the alert sink"))?;
    let addr = listener.local_addr()?;
    let closed_socket = tokio::net::TcpSocket::new_v4()?;
    closed_socket
        .bind(SocketAddr::from(([127, 0, 0, 1], closed_port)))
        .with_context(|| taken(closed_port, "the closed port"))?;
    let closed = closed_socket.local_addr()?;

    let since = Instant::now();
    let up = move || (since.elapsed().as_millis() / flap_every.as_millis().max(1)).is_multiple_of(2);
    let every = crate::model::wire::format_duration(flap_every);
    let app = axum::Router::new()
        .route(
            "/flaky",
            axum::routing::get(move || {
                let every = every.clone();
                async move {
                    if up() {
                        (StatusCode::OK, format!("up (tocsin dev flips this every {every})"))
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, format!("down (tocsin dev flips this every {every})"))
                    }
                }
            }),
        )
        .route("/alerts/{from}", axum::routing::post(alert));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut flips = tokio::time::interval_at(since + flap_every, flap_every);
    tokio::spawn(async move {
        loop {
            flips.tick().await;
            let now = if up() {
                "up again: its incident resolves after two good runs"
            } else {
                "down: its check fails from both locations and an incident opens"
            };
            say(&format!("flaky is {now}"));
        }
    });
    Ok(Targets { addr, closed, _closed: closed_socket })
}

/// A webhook notification (the `webhook` plugin's own format), printed.
async fn alert(Path(from): Path<String>, body: axum::body::Bytes) -> axum::Json<Value> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |key: &str| body[key].as_str().unwrap_or_default().to_string();
    let who = match from.as_str() {
        "watchdog" => "watchdog alarm",
        _ => "alert",
    };
    let event = text("event");
    let line = match event.as_str() {
        "" => format!("{who}: {}", text("title")),
        event => format!("{who} ({event}): {}", text("title")),
    };
    say(&line);
    axum::Json(serde_json::json!({"id": format!("dev-{}", text("id"))}))
}
