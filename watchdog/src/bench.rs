//! `tocsin-watchdog bench page`: how long the status page takes to serve
//! with a long history, measured on a throwaway state.
//!
//! It fills a temporary state with `days` days of history for `components`
//! components (daily counts, 5-minute buckets for every day as the
//! watchdog keeps them, incidents with timelines, failover actions), then
//! times [`page::view`] and [`page::render`] directly and through HTTP,
//! next to serving the same number of bytes as a static string through the
//! same server, so the difference is what reading and rendering cost.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::model::{Millis, now_ms};
use crate::page;
use crate::state::{BUCKET_MS, DAY_MS, State};

const ITERATIONS: usize = 200;

pub async fn page(days: u32, components: u32) -> anyhow::Result<()> {
    run(days, components, ITERATIONS).await
}

async fn run(days: u32, components: u32, iterations: usize) -> anyhow::Result<()> {
    anyhow::ensure!(days >= 1 && components >= 1, "need at least one day and one component");
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let state = State::open(&dir.path().join("bench.db")).await?;
    let now = now_ms();
    let started = Instant::now();
    eprintln!("filling a state with {days} days of history for {components} components ...");
    let filled = fill(&state, now, days, components).await?;
    eprintln!("filled in {:.1} s: {filled}", started.elapsed().as_secs_f64());

    // Warm up: the page cache, the template, the connections.
    let view = page::view(&state, now, "bench").await?;
    let html = page::render(&view);
    let json = serde_json::to_string(&view)?;

    let mut t_view = Vec::with_capacity(iterations);
    let mut t_render = Vec::with_capacity(iterations);
    let mut t_both = Vec::with_capacity(iterations);
    let mut t_json = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let t0 = Instant::now();
        let view = page::view(&state, now, "bench").await?;
        let t1 = Instant::now();
        let page = page::render(&view);
        let t2 = Instant::now();
        std::hint::black_box(page);
        let json = serde_json::to_string(&view)?;
        let t3 = Instant::now();
        std::hint::black_box(json);
        t_view.push(t1 - t0);
        t_render.push(t2 - t1);
        t_both.push(t2 - t0);
        t_json.push(t3 - t2);
        progress("in process", i, iterations);
    }

    let http = http(&state, now, &html, iterations).await?;
    eprintln!();

    let build = if cfg!(debug_assertions) { "debug build: not representative, use --release" } else { "release build" };
    println!("status page: {components} components, {days} days ({filled}); {iterations} iterations each; {build}");
    println!("{:<34} {:>9} {:>9} {:>9} {:>10}", "", "p50", "p99", "max", "bytes");
    let row = |what: &str, t: &mut Vec<Duration>, bytes: Option<usize>| {
        let (p50, p99, max) = stats(t);
        println!(
            "{what:<34} {:>9} {:>9} {:>9} {:>10}",
            ms(p50),
            ms(p99),
            ms(max),
            bytes.map(|b| b.to_string()).unwrap_or_default()
        );
    };
    row("view (queries, one read tx)", &mut t_view, None);
    row("render (HTML)", &mut t_render, Some(html.len()));
    row("view + render = server time", &mut t_both, Some(html.len()));
    row("JSON (serde_json::to_string)", &mut t_json, Some(json.len()));
    let [mut page_t, mut static_t, mut json_t] = http;
    row("HTTP GET / (view + render)", &mut page_t, Some(html.len()));
    row("HTTP GET same bytes, static", &mut static_t, Some(html.len()));
    row("HTTP GET /api/v1/status", &mut json_t, Some(json.len()));
    let (p50, ..) = stats(&mut t_both);
    println!(
        "target: view + render within 100 ms: {}",
        if p50 <= Duration::from_millis(100) { "met" } else { "NOT met" }
    );
    Ok(())
}

fn progress(what: &str, i: usize, iterations: usize) {
    if i % 10 == 9 || i + 1 == iterations {
        eprint!("\r  {what}: {}/{iterations}   ", i + 1);
    }
}

fn stats(t: &mut [Duration]) -> (Duration, Duration, Duration) {
    t.sort();
    let at = |q: f64| t[((t.len() as f64 * q).ceil() as usize).clamp(1, t.len()) - 1];
    (at(0.50), at(0.99), *t.last().unwrap())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The page, the same bytes as a static string, and the JSON, each served
/// by one axum server on loopback and fetched `iterations` times over one
/// kept-alive connection.
async fn http(state: &State, now: Millis, html: &str, iterations: usize) -> anyhow::Result<[Vec<Duration>; 3]> {
    use axum::response::Html;
    use axum::routing::get;
    let fixed: &'static str = Box::leak(html.to_string().into_boxed_str());
    let (s1, s2) = (state.clone(), state.clone());
    let app = axum::Router::new()
        .route(
            "/",
            get(move || {
                let state = s1.clone();
                async move {
                    let view = page::view(&state, now, "bench").await.map_err(|e| e.to_string())?;
                    Ok::<_, String>(Html(page::render(&view)))
                }
            }),
        )
        .route("/static", get(move || async move { Html(fixed) }))
        .route(
            "/api/v1/status",
            get(move || {
                let state = s2.clone();
                async move {
                    let view = page::view(&state, now, "bench").await.map_err(|e| e.to_string())?;
                    Ok::<_, String>(axum::Json(view))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let mut out: [Vec<Duration>; 3] = Default::default();
    for (n, path) in ["/", "/static", "/api/v1/status"].into_iter().enumerate() {
        let url = format!("http://{addr}{path}");
        client.get(&url).send().await?.error_for_status()?.bytes().await?;
        for i in 0..iterations {
            let t = Instant::now();
            let body = client.get(&url).send().await?.error_for_status()?.bytes().await?;
            out[n].push(t.elapsed());
            std::hint::black_box(body);
            progress(&format!("HTTP {path}"), i, iterations);
        }
    }
    server.abort();
    Ok(out)
}

/// Fills `state` as `days` days of a watchdog's life would: components of
/// every kind, one sample a second, mostly up with some bad days and some
/// slow hours, incidents with timelines, a few failover actions.
pub(crate) async fn fill(state: &State, now: Millis, days: u32, components: u32) -> anyhow::Result<String> {
    let pool = state.pool();
    let mut ids: Vec<(String, &str, String, f64)> = Vec::new();
    let fixed: [(&str, &str, f64); 9] = [
        ("controller", "c1", 3.0),
        ("controller", "c2", 3.5),
        ("controller", "c3", 4.0),
        ("scheduler", "", 0.0),
        ("database", "", 2.0),
        ("location", "eu", 0.0),
        ("location", "us", 0.0),
        ("canary", "eu", 40.0),
        ("canary", "us", 120.0),
    ];
    for (kind, name, latency) in fixed.into_iter().take(components as usize) {
        let id = if name.is_empty() { kind.to_string() } else { format!("{kind}:{name}") };
        ids.push((id, kind, if name.is_empty() { kind.to_string() } else { name.to_string() }, latency));
    }
    let mut n = 0;
    while ids.len() < components as usize {
        n += 1;
        let (kind, name, latency) = if n % 12 == 0 {
            ("watchdog", format!("w{}", n / 12 + 1), 1.5)
        } else {
            ("node", format!("{}-{}", ["eu", "us"][n % 2], n), 0.0)
        };
        ids.push((format!("{kind}:{name}"), kind, name, latency));
    }

    let mut tx = pool.begin().await?;
    for (i, (id, kind, name, latency)) in ids.iter().enumerate() {
        let (state, detail) = match i % 17 {
            5 => ("down", "connection refused (2 probes in a row)"),
            9 => ("degraded", "HTTP 200 in 730 ms, slower than 500 ms"),
            _ => ("up", "HTTP 200 in 3 ms"),
        };
        sqlx::query(
            "INSERT INTO components (id, kind, name, state, detail, latency_ms, since, seen_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(id)
        .bind(kind)
        .bind(name)
        .bind(state)
        .bind(detail)
        .bind((*latency > 0.0).then_some(*latency))
        .bind(now - (i as i64 + 1) * 3_600_000)
        .bind(now - 500)
        .execute(&mut *tx)
        .await?;
    }
    let today = now.div_euclid(DAY_MS);
    let first_day = today - days as i64 + 1;
    // Per day: 86 400 samples; one day in 40 with an outage, one in 15 with slowness.
    sqlx::query(
        "WITH RECURSIVE d(day) AS (SELECT ?1 UNION ALL SELECT day + 1 FROM d WHERE day < ?2), \
         r AS (SELECT c.id, d.day, abs(random()) % 600 AS x, abs(random()) % 3000 AS bad FROM components c, d) \
         INSERT INTO days (component, day, up, degraded, down) \
         SELECT id, day, 86400 - (CASE WHEN x < 15 THEN bad ELSE 0 END) - (CASE WHEN x BETWEEN 15 AND 54 THEN bad ELSE 0 END), \
                CASE WHEN x BETWEEN 15 AND 54 THEN bad ELSE 0 END, CASE WHEN x < 15 THEN bad ELSE 0 END FROM r",
    )
    .bind(first_day)
    .bind(today)
    .execute(&mut *tx)
    .await?;
    eprintln!("  days written");
    let first_bucket = now - now.rem_euclid(BUCKET_MS) - (days as i64 * (DAY_MS / BUCKET_MS) - 1) * BUCKET_MS;
    for (i, (id, _, _, latency)) in ids.iter().enumerate() {
        sqlx::query(
            "WITH RECURSIVE b(start) AS (SELECT ?2 UNION ALL SELECT start + ?3 FROM b WHERE start < ?4), \
             r AS (SELECT start, abs(random()) % 1000 AS x, (abs(random()) % 1000) / 1000.0 AS jitter FROM b) \
             INSERT INTO buckets (component, start, up, degraded, down, latency_sum, latency_n, latency_max) \
             SELECT ?1, start, CASE WHEN x < 3 THEN 240 WHEN x < 10 THEN 200 ELSE 300 END, \
                    CASE WHEN x BETWEEN 3 AND 9 THEN 100 ELSE 0 END, CASE WHEN x < 3 THEN 60 ELSE 0 END, \
                    CASE WHEN ?5 > 0 THEN 300 * ?5 * (1 + jitter * 0.3 + (x < 10) * 4) ELSE 0 END, \
                    CASE WHEN ?5 > 0 THEN 300 ELSE 0 END, \
                    CASE WHEN ?5 > 0 THEN ?5 * (1.5 + jitter * 3 + (x < 10) * 10) END FROM r",
        )
        .bind(id)
        .bind(first_bucket)
        .bind(BUCKET_MS)
        .bind(now - now.rem_euclid(BUCKET_MS))
        .bind(*latency)
        .execute(&mut *tx)
        .await?;
        if i % 10 == 9 || i + 1 == ids.len() {
            eprint!("\r  buckets: {}/{}   ", i + 1, ids.len());
        }
    }
    eprintln!();
    // Incidents: every component one every ~9 days, each with 3 to 6 events;
    // the components shown as down or degraded have one open.
    let span = days as i64 * DAY_MS;
    let mut incidents = 0;
    for (i, (id, kind, name, _)) in ids.iter().enumerate() {
        let title = page::name_for_people(kind, name);
        let count = (days as i64 / 9).max(1);
        for k in 0..count {
            let opened = now - span + (span / count) * k + (i as i64 * 7_919_000) % (span / count).max(1);
            let open = k == count - 1 && matches!(i % 17, 5 | 9);
            let resolved = (!open).then_some(opened + 60_000 + (i as i64 * 13 + k) % 40 * 60_000);
            let (incident,): (i64,) = sqlx::query_as(
                "INSERT INTO incidents (component, title, severity, opened_at, resolved_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
            )
            .bind(id)
            .bind(format!("{title} {}", if k % 3 == 0 { "degraded" } else { "down" }))
            .bind(if k % 3 == 0 { "degraded" } else { "down" })
            .bind(opened.min(now - 1000))
            .bind(resolved.map(|r| r.min(now)))
            .fetch_one(&mut *tx)
            .await?;
            incidents += 1;
            for e in 0..(3 + (k + i as i64) % 4) {
                sqlx::query("INSERT INTO incident_events (incident_id, at, text) VALUES (?1, ?2, ?3)")
                    .bind(incident)
                    .bind(opened + e * 20_000)
                    .bind(match e {
                        0 => "down: connection refused".to_string(),
                        1 => "alarm sent through pager".to_string(),
                        _ => format!("down: timed out after 2 s (round {e})"),
                    })
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    for k in 0..30i64 {
        sqlx::query(
            "INSERT INTO actions (at, kind, target, evidence, agreed_by, outcome) VALUES (?1, ?2, ?3, ?4, ?5, 'done')",
        )
        .bind(now - span + span / 30 * k)
        .bind(if k % 2 == 0 { "evict_node" } else { "revoke_lease" })
        .bind(if k % 2 == 0 { format!("node eu-{k}") } else { format!("scheduling lease of c1 (epoch {k}) to c2") })
        .bind("no heartbeat for 6 s; 0 of 60 expected runs in the last minute")
        .bind("w1,w2")
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let (d,): (i64,) = sqlx::query_as("SELECT count(*) FROM days").fetch_one(pool).await?;
    let (b,): (i64,) = sqlx::query_as("SELECT count(*) FROM buckets").fetch_one(pool).await?;
    Ok(format!("{d} day rows, {b} bucket rows, {incidents} incidents"))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_small_bench_runs() {
        super::run(2, 3, 3).await.unwrap();
    }
}
