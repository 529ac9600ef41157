use super::*;
use crate::model::Observation;

/// 2026-11-20T12:00:00Z
const NOW: Millis = 1_795_176_000_000;
const TODAY: i64 = NOW / DAY_MS;

async fn state() -> (tempfile::TempDir, State) {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("w.db")).await.unwrap();
    (dir, state)
}

async fn component(state: &State, id: &str, health: &str, detail: &str) {
    let (kind, name) = id.split_once(':').unwrap_or((id, id));
    sqlx::query(
        "INSERT INTO components (id, kind, name, state, detail, latency_ms, since, seen_at) VALUES (?1, ?2, ?3, ?4, ?5, 4.5, ?6, ?7)",
    )
    .bind(id)
    .bind(kind)
    .bind(name)
    .bind(health)
    .bind(detail)
    .bind(NOW - 3_600_000)
    .bind(NOW - 1_000)
    .execute(state.pool())
    .await
    .unwrap();
}

async fn day(state: &State, id: &str, day: i64, up: i64, degraded: i64, down: i64) {
    sqlx::query("INSERT INTO days (component, day, up, degraded, down) VALUES (?1, ?2, ?3, ?4, ?5)")
        .bind(id)
        .bind(day)
        .bind(up)
        .bind(degraded)
        .bind(down)
        .execute(state.pool())
        .await
        .unwrap();
}

async fn bucket(state: &State, id: &str, start: Millis, counts: [i64; 3], latency: Option<(f64, i64, f64)>) {
    let (sum, n, max) = latency.map_or((0.0, 0, None), |(s, n, m)| (s, n, Some(m)));
    sqlx::query(
        "INSERT INTO buckets (component, start, up, degraded, down, latency_sum, latency_n, latency_max) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(id)
    .bind(start)
    .bind(counts[0])
    .bind(counts[1])
    .bind(counts[2])
    .bind(sum)
    .bind(n)
    .bind(max)
    .execute(state.pool())
    .await
    .unwrap();
}

async fn incident(state: &State, id: &str, opened: Millis, resolved: Option<Millis>, events: usize) -> i64 {
    let (n,): (i64,) = sqlx::query_as(
        "INSERT INTO incidents (component, title, severity, opened_at, resolved_at) VALUES (?1, ?2, 'down', ?3, ?4) RETURNING id",
    )
    .bind(id)
    .bind(format!("{id} down"))
    .bind(opened)
    .bind(resolved)
    .fetch_one(state.pool())
    .await
    .unwrap();
    for e in 0..events {
        sqlx::query("INSERT INTO incident_events (incident_id, at, text) VALUES (?1, ?2, ?3)")
            .bind(n)
            .bind(opened + e as i64 * 1000)
            .bind(format!("event {e}"))
            .execute(state.pool())
            .await
            .unwrap();
    }
    n
}

fn find<'a>(v: &'a StatusView, id: &str) -> &'a Component {
    v.groups.iter().flat_map(|g| &g.components).find(|c| c.id == id).unwrap_or_else(|| panic!("{id} in {v:#?}"))
}

#[tokio::test]
async fn uptime_counts_degraded_as_up_and_bars_show_the_worst_state() {
    let (_dir, state) = state().await;
    component(&state, "controller:c1", "up", "HTTP 200").await;
    // Today: 90 up, 10 down. Yesterday: 50 up, 50 degraded. 10 days ago: all up.
    // 100 days ago: down all day (outside every window).
    day(&state, "controller:c1", TODAY, 90, 0, 10).await;
    day(&state, "controller:c1", TODAY - 1, 50, 50, 0).await;
    day(&state, "controller:c1", TODAY - 10, 100, 0, 0).await;
    day(&state, "controller:c1", TODAY - 100, 0, 0, 100).await;
    let current = NOW - NOW % BUCKET_MS;
    bucket(&state, "controller:c1", current, [3, 0, 1], Some((40.0, 4, 25.0))).await;
    bucket(&state, "controller:c1", current - 2 * BUCKET_MS, [4, 0, 0], Some((8.0, 4, 3.0))).await;
    // Just outside the 24 hours: not counted, not charted.
    bucket(&state, "controller:c1", current - SERIES_POINTS as i64 * BUCKET_MS, [0, 0, 4], None).await;

    let v = view(&state, NOW, "w1").await.unwrap();
    let c = find(&v, "controller:c1");
    assert_eq!(c.name, "Controller c1");
    assert_eq!(c.uptime.d7, Some(95.0), "(90 + 100) / 200");
    assert_eq!(c.uptime.d90, Some(96.6667), "(190 + 100) / 300");
    assert_eq!(c.uptime.h24, Some(87.5), "7 of 8");
    assert_eq!(c.days.len(), BAR_DAYS);
    let today = c.days.last().unwrap();
    assert_eq!(today.date, "2026-11-20");
    assert_eq!((today.uptime, today.worst, today.no_data), (Some(0.9), Some(Health::Down), false));
    let yesterday = &c.days[BAR_DAYS - 2];
    assert_eq!(
        (yesterday.date.as_str(), yesterday.uptime, yesterday.worst),
        ("2026-11-19", Some(1.0), Some(Health::Degraded))
    );
    assert_eq!(c.days[BAR_DAYS - 11].worst, Some(Health::Up));
    let blank = &c.days[0];
    assert_eq!((blank.date.as_str(), blank.uptime, blank.worst, blank.no_data), ("2026-08-23", None, None, true));

    let s = &c.response_times;
    assert_eq!(s.avg_ms.len(), SERIES_POINTS);
    assert_eq!(s.start, rfc3339(current - (SERIES_POINTS as i64 - 1) * BUCKET_MS));
    assert_eq!((s.avg_ms[SERIES_POINTS - 1], s.max_ms[SERIES_POINTS - 1]), (Some(10.0), Some(25.0)));
    assert_eq!((s.avg_ms[SERIES_POINTS - 3], s.max_ms[SERIES_POINTS - 3]), (Some(2.0), Some(3.0)));
    assert_eq!(s.avg_ms.iter().flatten().count(), 2);
}

#[tokio::test]
async fn a_component_without_history_has_no_uptime_and_no_chart() {
    let (_dir, state) = state().await;
    component(&state, "node:eu-1", "up", "heartbeat 0.4 s ago").await;
    let v = view(&state, NOW, "w1").await.unwrap();
    let c = find(&v, "node:eu-1");
    assert_eq!((c.uptime.h24, c.uptime.d7, c.uptime.d90), (None, None, None));
    assert!(c.days.iter().all(|d| d.no_data));
    let html = render(&v);
    assert!(html.contains("no data"), "uptime shown as no data");
    assert!(!html.contains("class=\"chart\""), "no chart without latencies");
}

#[tokio::test]
async fn incidents_open_first_then_newest_and_only_the_last_14_days() {
    let (_dir, state) = state().await;
    let old_open = incident(&state, "database", NOW - 20 * DAY_MS, None, 1).await;
    let recent_resolved = incident(&state, "node:eu-1", NOW - 2 * DAY_MS, Some(NOW - 2 * DAY_MS + 60_000), 2).await;
    let older_resolved = incident(&state, "node:eu-2", NOW - 5 * DAY_MS, Some(NOW - 5 * DAY_MS + 5_000), 1).await;
    let new_open = incident(&state, "controller:c1", NOW - 60_000, None, 40).await;
    // Resolved 15 days ago: gone from the page.
    incident(&state, "node:eu-3", NOW - 16 * DAY_MS, Some(NOW - 15 * DAY_MS), 1).await;
    // Opened 15 days ago, resolved 13 days ago: still listed.
    let long = incident(&state, "canary:eu", NOW - 15 * DAY_MS, Some(NOW - 13 * DAY_MS), 1).await;

    let v = view(&state, NOW, "w1").await.unwrap();
    let ids: Vec<i64> = v.incidents.iter().map(|i| i.id).collect();
    assert_eq!(ids, [new_open, old_open, recent_resolved, older_resolved, long]);
    let first = &v.incidents[0];
    assert_eq!((first.status, first.duration_seconds, first.resolved_at.as_deref()), ("open", 60, None));
    assert_eq!(first.events.len(), MAX_EVENTS as usize, "the newest events");
    assert_eq!(first.earlier_events, 40 - MAX_EVENTS);
    assert_eq!(first.events[0].text, "event 39", "newest first");
    let resolved = &v.incidents[2];
    assert_eq!((resolved.status, resolved.duration_seconds), ("resolved", 60));
    assert_eq!(resolved.events.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["event 1", "event 0"]);

    let html = render(&v);
    assert!(html.contains("15 earlier updates not shown"), "{html}");
    assert!(html.contains("Ongoing") && html.contains("Resolved"));
}

#[tokio::test]
async fn recorded_rounds_show_up_with_their_incident_and_overall_state() {
    let (_dir, state) = state().await;
    let round = |c1: Health, db: Health| {
        vec![
            Observation::new("controller", "c1", c1, "HTTP 200").latency(3.0),
            Observation::new("controller", "c2", Health::Up, "HTTP 200").latency(4.0),
            Observation::new("scheduler", "", Health::Up, "held by c1, epoch 4"),
            Observation::new("database", "", db, "write and read back in 2 ms").latency(2.0),
            Observation::new("node", "eu-1", Health::Up, "ran 60 of 60"),
            Observation::new("location", "eu", Health::Up, "1 of 1 nodes"),
            Observation::new("watchdog", "w2", Health::Up, "agrees"),
        ]
    };
    state.record(NOW - 3000, &round(Health::Up, Health::Up)).await.unwrap();
    let v = view(&state, NOW - 2500, "w1").await.unwrap();
    assert_eq!((v.overall.state, v.overall.summary.as_str()), (OverallState::Operational, "All systems operational"));
    let groups: Vec<(&str, Vec<&str>)> =
        v.groups.iter().map(|g| (g.id, g.components.iter().map(|c| c.id.as_str()).collect())).collect();
    assert_eq!(
        groups,
        [
            ("platform", vec!["controller:c1", "controller:c2", "scheduler", "database"]),
            ("locations", vec!["location:eu", "node:eu-1"]),
            ("watchdogs", vec!["watchdog:w2"]),
        ]
    );

    state.record(NOW - 2000, &round(Health::Down, Health::Up)).await.unwrap();
    let v = view(&state, NOW, "w1").await.unwrap();
    assert_eq!(v.overall.state, OverallState::PartialOutage, "one of two controllers down");
    let c1 = find(&v, "controller:c1");
    assert_eq!((c1.state, c1.since.as_str()), (Health::Down, rfc3339(NOW - 2000).as_str()));
    assert_eq!(c1.uptime.h24, Some(50.0));
    assert_eq!(v.incidents.len(), 1);
    assert_eq!((v.incidents[0].title.as_str(), v.incidents[0].status), ("Controller c1 down", "open"));

    state.record(NOW - 1000, &round(Health::Up, Health::Down)).await.unwrap();
    let v = view(&state, NOW, "w1").await.unwrap();
    assert_eq!((v.overall.state, v.overall.summary.as_str()), (OverallState::MajorOutage, "Major outage"));
    assert_eq!(v.incidents.iter().map(|i| i.status).collect::<Vec<_>>(), ["open", "resolved"]);
    assert_eq!(v.incidents[1].events.len(), 2, "down, then recovered");

    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["overall"]["state"], "major_outage");
    assert_eq!(json["groups"][0]["components"][0]["uptime"]["24h"], 66.6667);
    assert!(json["groups"][0]["components"][0].get("since_ms").is_none(), "internal fields stay out of the API");
}

#[tokio::test]
async fn degraded_only_is_degraded_performance_and_nothing_is_no_data() {
    let (_dir, state) = state().await;
    let v = view(&state, NOW, "w1").await.unwrap();
    assert_eq!(v.overall.state, OverallState::Unknown);
    assert!(render(&v).contains("has not judged any component yet"));
    component(&state, "controller:c1", "degraded", "HTTP 200 in 900 ms").await;
    component(&state, "node:eu-1", "up", "ok").await;
    let v = view(&state, NOW, "w1").await.unwrap();
    assert_eq!(v.overall.summary, "Degraded performance");
    component(&state, "node:eu-2", "down", "no heartbeat for 12 s").await;
    component(&state, "node:eu-3", "up", "ok").await;
    component(&state, "node:eu-10", "up", "ok").await;
    let v = view(&state, NOW, "w1").await.unwrap();
    assert_eq!(v.overall.summary, "Partial outage");
    let nodes: Vec<&str> = v.groups[1].components.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(nodes, ["node:eu-1", "node:eu-2", "node:eu-3", "node:eu-10"], "natural order");
}

#[tokio::test]
async fn the_page_escapes_what_probes_report() {
    let (_dir, state) = state().await;
    let hostile = r#"<script>alert("x")</script><img src=x onerror=alert(1)>"#;
    component(&state, "controller:c1", "down", hostile).await;
    component(&state, "node:<b>eu</b>", "up", "ok").await;
    day(&state, "controller:c1", TODAY, 1, 0, 1).await;
    incident(&state, "controller:c1", NOW - 1000, None, 0).await;
    sqlx::query("INSERT INTO incident_events (incident_id, at, text) VALUES (1, ?1, ?2)")
        .bind(NOW)
        .bind(hostile)
        .execute(state.pool())
        .await
        .unwrap();
    state
        .record_action(NOW, "evict_node", "node <i>eu-1</i>", hostile, &["w1".into(), "w2".into()], "done")
        .await
        .unwrap();
    let html = render(&view(&state, NOW, "w<1>").await.unwrap());
    assert!(!html.contains("<script"), "no script element at all");
    assert!(!html.contains("<img") && !html.contains("<b>") && !html.contains("<i>") && !html.contains("w<1>"));
    assert!(html.contains("&lt;script&gt;alert("), "shown as text: {html}");
    assert!(html.contains("Node &lt;b&gt;eu&lt;"), "the name, escaped, also inside the SVG label");
}

#[tokio::test]
async fn the_page_is_what_a_status_page_shows() {
    let (_dir, state) = state().await;
    component(&state, "controller:c1", "up", "HTTP 200 in 3 ms").await;
    component(&state, "database", "up", "write and read back in 2 ms").await;
    for d in 0..BAR_DAYS as i64 {
        day(&state, "controller:c1", TODAY - d, 100, 0, if d == 3 { 1 } else { 0 }).await;
    }
    bucket(&state, "controller:c1", NOW - NOW % BUCKET_MS, [5, 0, 0], Some((15.0, 5, 4.0))).await;
    state
        .record_action(
            NOW - 5000,
            "revoke_lease",
            "scheduling lease of c1 (epoch 4) to c2",
            "c1 refused connections for 6 s",
            &["w1".into(), "w2".into()],
            "done",
        )
        .await
        .unwrap();
    let v = view(&state, NOW, "w1").await.unwrap();
    assert_eq!(v.actions.len(), 1);
    assert_eq!(v.actions[0].agreed_by, ["w1", "w2"]);
    let html = render(&v);
    assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">"));
    assert!(html.contains(r#"<meta http-equiv="refresh" content="30">"#));
    assert!(html.contains(r#"name="viewport""#));
    assert_eq!(html.matches("<h1").count(), 1);
    assert!(html.contains("All systems operational"));
    assert_eq!(html.matches("<rect ").count(), 2 * BAR_DAYS, "90 bars for each of 2 components");
    assert!(html.contains("<title>2026-11-17: 99.00% up</title>"), "a tooltip per bar");
    assert!(html.contains("Controller c1, last 90 days: 99.98% up overall; 2026-11-17 down at times (99.00% up)"));
    assert!(
        html.contains(r#"<svg class="chart""#)
            && html.contains("Response time of Controller c1 over the last 24 hours")
    );
    assert!(html.contains("Revoked scheduling lease of c1 (epoch 4) to c2") && html.contains("w1, w2"));
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="), "self-contained");
}

#[test]
fn packed_history_unpacks() {
    let items: Vec<[i64; 3]> = unpack::<3>(Some("0 1 2,5 6 7,bad,1 2,1 2 3 4,-1 0 0")).collect();
    assert_eq!(items, [[0, 1, 2], [5, 6, 7], [-1, 0, 0]]);
    assert_eq!(unpack::<3>(None).count(), 0);
}

#[tokio::test]
async fn the_history_queries_read_ranges_of_the_primary_keys() {
    let (_dir, state) = state().await;
    for (table, sql) in [("d", DAYS_SQL), ("b", BUCKETS_SQL)] {
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .bind(1)
                .bind(BUCKET_MS)
                .fetch_all(state.pool())
                .await
                .unwrap();
        let text: Vec<&str> = plan.iter().map(|p| p.3.as_str()).collect();
        assert!(
            text.iter().any(|t| t.starts_with(&format!("SEARCH {table} USING "))
                && t.contains("INDEX")
                && t.contains("(component=? AND ")),
            "{table}: {text:?}"
        );
        assert!(!text.iter().any(|t| t.starts_with(&format!("SCAN {table}"))), "{table}: {text:?}");
        assert!(!text.iter().any(|t| t.contains("TEMP B-TREE")), "grouped in the order read: {text:?}");
    }
}
