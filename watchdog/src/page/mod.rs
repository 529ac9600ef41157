//! The status page (`/`) and its JSON twin (`/api/v1/status`).
//!
//! [`view`] reads the watchdog's own state ([`crate::state`]) in one read
//! transaction with a handful of set-based queries: the newest judgement of
//! every component, their daily counts for the 90-day bars, their 5-minute
//! buckets for the last 24 hours, the incidents of the last 14 days with
//! their timelines, and the failover actions of the last 14 days. The
//! result, [`StatusView`], is served as JSON as is; [`render`] turns it
//! into a self-contained HTML page: no JavaScript, no external assets (it
//! must work when nothing else is up), inline SVG for the bars and charts,
//! refreshed by the browser every 30 seconds. [`Published`] keeps the last
//! render of both, which is what the server serves.
//!
//! Uptime counts a degraded sample (it answered, slowly or partly) as up:
//! uptime = (up + degraded) / (up + degraded + down). A day's bar shows the
//! worst state seen that day.

mod published;
mod svg;

pub use published::{Published, Rendered};

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use minijinja::{Environment, Value};
use serde::Serialize;

use crate::model::{Health, Millis};
use crate::state::{BUCKET_MS, DAY_MS, State};

/// Days of history shown as bars.
pub const BAR_DAYS: usize = 90;
/// 5-minute points of the response-time series (24 hours).
pub const SERIES_POINTS: usize = (DAY_MS / BUCKET_MS) as usize;
/// How far back incidents and actions are listed.
pub const RECENT_DAYS: i64 = 14;
/// A component not judged for this long is shown as stale.
pub const STALE_MS: Millis = 2 * 60_000;
const MAX_INCIDENTS: i64 = 50;
const MAX_EVENTS: i64 = 25;
const MAX_ACTIONS: i64 = 20;

/// Everything the status page shows; served as `GET /api/v1/status`.
///
/// Times are RFC 3339 in UTC (`2026-11-20T12:34:56Z`), dates are UTC days
/// (`2026-11-20`), latencies are milliseconds, uptimes are percentages
/// (0 to 100) or `null` when there is no sample in the window.
#[derive(Clone, Debug, Serialize)]
pub struct StatusView {
    /// The name of the watchdog that judged (and serves) this.
    pub watchdog: String,
    /// When this view was read from the watchdog's state.
    pub generated_at: String,
    pub overall: Overall,
    /// Components grouped as on the page: `platform`, `locations`, `pipeline`, `watchdogs` (and `other`).
    pub groups: Vec<Group>,
    /// Incidents open now or opened or resolved in the last 14 days: open
    /// ones first, then newest first (at most 50).
    pub incidents: Vec<Incident>,
    /// Failover actions of the last 14 days, newest first (at most 20).
    pub actions: Vec<Action>,
    #[serde(skip)]
    pub generated_at_ms: Millis,
}

/// The state of the whole platform, as the banner says it.
#[derive(Clone, Debug, Serialize)]
pub struct Overall {
    pub state: OverallState,
    /// "All systems operational", "Degraded performance", "Partial outage", "Major outage", "No data yet".
    pub summary: String,
    /// How many components are up, degraded and down right now.
    pub up: usize,
    pub degraded: usize,
    pub down: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverallState {
    /// Every component is up.
    Operational,
    /// Something is degraded, nothing is down.
    Degraded,
    /// Something is down, but the platform still schedules and runs checks.
    PartialOutage,
    /// The database or the scheduler is down, every controller or every
    /// location is down, or half of all components are.
    MajorOutage,
    /// The watchdog has judged nothing yet.
    Unknown,
}

impl OverallState {
    pub fn summary(self) -> &'static str {
        match self {
            OverallState::Operational => "All systems operational",
            OverallState::Degraded => "Degraded performance",
            OverallState::PartialOutage => "Partial outage",
            OverallState::MajorOutage => "Major outage",
            OverallState::Unknown => "No data yet",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Group {
    /// `platform`, `locations`, `pipeline`, `watchdogs`, `other`.
    pub id: &'static str,
    /// "Platform", "Locations and nodes", "Pipeline", "Watchdogs", "Other".
    pub name: &'static str,
    pub components: Vec<Component>,
}

/// One component: its newest judgement and its history.
#[derive(Clone, Debug, Serialize)]
pub struct Component {
    /// `controller:c1`, `scheduler`, `database`, `location:eu`, `node:eu-1`, `canary:eu`, `watchdog:w1`.
    pub id: String,
    /// The part of the id before the colon.
    pub kind: String,
    /// For people: "Controller c1", "Database".
    pub name: String,
    pub state: Health,
    /// What the last probe found, e.g. "HTTP 200 in 3 ms".
    pub detail: String,
    /// When it entered its current state.
    pub since: String,
    /// When the watchdog last judged it.
    pub checked_at: String,
    /// Not judged for over 2 minutes: the state shown may be out of date.
    pub stale: bool,
    /// The last probe's latency.
    pub latency_ms: Option<f64>,
    pub uptime: Uptime,
    /// One bar per UTC day, the oldest first, the last one today (90).
    pub days: Vec<DayBar>,
    /// Response times over the last 24 hours.
    pub response_times: Series,
    #[serde(skip)]
    pub since_ms: Millis,
    #[serde(skip)]
    pub checked_at_ms: Millis,
}

/// Percentages (0 to 100) of samples up or degraded; `null` without samples.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Uptime {
    /// The last 24 hours (288 five-minute buckets, the current one included).
    #[serde(rename = "24h")]
    pub h24: Option<f64>,
    /// The last 7 UTC days, today included.
    #[serde(rename = "7d")]
    pub d7: Option<f64>,
    /// The last 90 UTC days, today included.
    #[serde(rename = "90d")]
    pub d90: Option<f64>,
}

/// One day of one component.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DayBar {
    /// `2026-11-20` (UTC).
    pub date: String,
    /// Share of samples up or degraded, 0 to 1; `null` without samples.
    pub uptime: Option<f64>,
    /// The worst state seen that day; `null` without samples.
    pub worst: Option<Health>,
    /// No sample that day (the watchdog was not running, or the component did not exist).
    pub no_data: bool,
}

/// A regular series of 5-minute points; `null` where there was no sample.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Series {
    /// The start of the first point's 5 minutes.
    pub start: String,
    pub step_seconds: u32,
    /// Mean latency of each 5 minutes.
    pub avg_ms: Vec<Option<f64>>,
    /// Highest latency of each 5 minutes.
    pub max_ms: Vec<Option<f64>>,
}

/// An incident of the watchdog: a component down or degraded until it is up again.
#[derive(Clone, Debug, Serialize)]
pub struct Incident {
    pub id: i64,
    /// The component's id.
    pub component: String,
    pub title: String,
    /// The worst state seen: `degraded` or `down`.
    pub severity: Health,
    /// `open` or `resolved`.
    pub status: &'static str,
    pub opened_at: String,
    pub resolved_at: Option<String>,
    /// Until it was resolved, or until now while open.
    pub duration_seconds: i64,
    /// Its timeline, newest first (the newest 25).
    pub events: Vec<IncidentEvent>,
    /// Older events not listed.
    pub earlier_events: i64,
    #[serde(skip)]
    pub opened_at_ms: Millis,
    #[serde(skip)]
    pub resolved_at_ms: Option<Millis>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IncidentEvent {
    pub at: String,
    pub text: String,
}

/// A failover action taken by agreement of a quorum of watchdogs.
#[derive(Clone, Debug, Serialize)]
pub struct Action {
    pub id: i64,
    pub at: String,
    /// `evict_node` or `revoke_lease`.
    pub kind: String,
    /// What it acted on, e.g. "node eu-1".
    pub target: String,
    /// Why.
    pub evidence: String,
    /// The watchdogs that agreed.
    pub agreed_by: Vec<String>,
    /// `done`, or `refused: ...`.
    pub outcome: String,
}

/// Each component's days of the last 90, as "offset up degraded down,...".
const DAYS_SQL: &str = "SELECT c.id, group_concat((d.day - ?1) || ' ' || d.up || ' ' || d.degraded || ' ' || d.down, ',') \
    FROM components c CROSS JOIN days d WHERE d.component = c.id AND d.day >= ?1 GROUP BY c.id";
/// Each component's last 24 hours: counts, and "offset avg_us max_us,..."
/// for the buckets with latencies.
const BUCKETS_SQL: &str = "SELECT c.id, sum(b.up), sum(b.degraded), sum(b.down), \
      group_concat(((b.start - ?1) / ?2) || ' ' || CAST(round(b.latency_sum * 1000.0 / b.latency_n) AS INTEGER) \
        || ' ' || CAST(round(coalesce(b.latency_max, b.latency_sum / b.latency_n) * 1000.0) AS INTEGER), ',') \
    FROM components c CROSS JOIN buckets b WHERE b.component = c.id AND b.start >= ?1 GROUP BY c.id";

type ComponentRow = (String, String, String, String, String, Option<f64>, i64, i64);
/// A component's days as "offset up degraded down,...".
type DaysRow = (String, Option<String>);
/// A component's 24 hours: counts, and "offset avg_us max_us,..." for buckets with latencies.
type BucketsRow = (String, i64, i64, i64, Option<String>);
type IncidentRow = (i64, String, String, String, i64, Option<i64>);

/// Reads what the page shows, as of `now`, in one read transaction (so a
/// component's state and its incident always agree).
pub async fn view(state: &State, now: Millis, watchdog: &str) -> sqlx::Result<StatusView> {
    let today = now.div_euclid(DAY_MS);
    let first_day = today - (BAR_DAYS as i64 - 1);
    let first_bucket = now - now.rem_euclid(BUCKET_MS) - (SERIES_POINTS as i64 - 1) * BUCKET_MS;
    let recent = now - RECENT_DAYS * DAY_MS;

    let mut tx = state.pool().begin().await?;
    let components: Vec<ComponentRow> =
        sqlx::query_as("SELECT id, kind, name, state, detail, latency_ms, since, seen_at FROM components ORDER BY id")
            .fetch_all(&mut *tx)
            .await?;
    // CROSS JOIN makes SQLite loop over `components` outside, so each
    // component's history is one range of the primary key (component,
    // start); a plain JOIN lets it scan all 90 days of buckets instead.
    // One row per component, its history packed as text: sqlx costs a few
    // microseconds a row, SQLite a few hundred nanoseconds.
    let days: Vec<DaysRow> = sqlx::query_as(DAYS_SQL).bind(first_day).fetch_all(&mut *tx).await?;
    let buckets: Vec<BucketsRow> =
        sqlx::query_as(BUCKETS_SQL).bind(first_bucket).bind(BUCKET_MS).fetch_all(&mut *tx).await?;
    let incident_rows: Vec<IncidentRow> = sqlx::query_as(
        "SELECT id, component, title, severity, opened_at, resolved_at FROM incidents \
         WHERE resolved_at IS NULL OR resolved_at >= ?1 OR opened_at >= ?1 \
         ORDER BY resolved_at IS NOT NULL, opened_at DESC, id DESC LIMIT ?2",
    )
    .bind(recent)
    .bind(MAX_INCIDENTS)
    .fetch_all(&mut *tx)
    .await?;
    let ids = serde_json::to_string(&incident_rows.iter().map(|r| r.0).collect::<Vec<_>>()).unwrap_or_default();
    let events: Vec<(i64, i64, String, i64)> = sqlx::query_as(
        "SELECT incident_id, at, text, n FROM ( \
           SELECT incident_id, at, text, id, \
             ROW_NUMBER() OVER (PARTITION BY incident_id ORDER BY id DESC) AS r, \
             COUNT(*) OVER (PARTITION BY incident_id) AS n \
           FROM incident_events WHERE incident_id IN (SELECT value FROM json_each(?1))) \
         WHERE r <= ?2 ORDER BY incident_id, id DESC",
    )
    .bind(&ids)
    .bind(MAX_EVENTS)
    .fetch_all(&mut *tx)
    .await?;
    let actions: Vec<(i64, i64, String, String, String, String, String)> = sqlx::query_as(
        "SELECT id, at, kind, target, evidence, agreed_by, outcome FROM actions WHERE at >= ?1 \
         ORDER BY at DESC, id DESC LIMIT ?2",
    )
    .bind(recent)
    .bind(MAX_ACTIONS)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    Ok(assemble(now, watchdog, components, days, buckets, incident_rows, events, actions))
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    now: Millis,
    watchdog: &str,
    components: Vec<ComponentRow>,
    days: Vec<DaysRow>,
    buckets: Vec<BucketsRow>,
    incident_rows: Vec<IncidentRow>,
    events: Vec<(i64, i64, String, i64)>,
    actions: Vec<(i64, i64, String, String, String, String, String)>,
) -> StatusView {
    let today = now.div_euclid(DAY_MS);
    let first_day = today - (BAR_DAYS as i64 - 1);
    let first_bucket = now - now.rem_euclid(BUCKET_MS) - (SERIES_POINTS as i64 - 1) * BUCKET_MS;
    let dates: Vec<String> = (0..BAR_DAYS as i64).map(|i| date(first_day + i)).collect();
    let series_start = rfc3339(first_bucket);

    let index: HashMap<&str, usize> = components.iter().enumerate().map(|(i, c)| (c.0.as_str(), i)).collect();
    let mut day_counts = vec![[[0i64; 3]; BAR_DAYS]; components.len()];
    for (component, packed) in &days {
        let Some(&i) = index.get(component.as_str()) else { continue };
        for [d, up, degraded, down] in unpack::<4>(packed.as_deref()) {
            if let Ok(d) = usize::try_from(d)
                && d < BAR_DAYS
            {
                day_counts[i][d] = [up, degraded, down];
            }
        }
    }
    let mut h24 = vec![[0i64; 3]; components.len()];
    let mut series: Vec<Series> = (0..components.len())
        .map(|_| Series {
            start: series_start.clone(),
            step_seconds: (BUCKET_MS / 1000) as u32,
            avg_ms: vec![None; SERIES_POINTS],
            max_ms: vec![None; SERIES_POINTS],
        })
        .collect();
    for (component, up, degraded, down, packed) in &buckets {
        let Some(&i) = index.get(component.as_str()) else { continue };
        h24[i] = [*up, *degraded, *down];
        for [p, avg_us, max_us] in unpack::<3>(packed.as_deref()) {
            if let Ok(p) = usize::try_from(p)
                && p < SERIES_POINTS
            {
                series[i].avg_ms[p] = Some(round2(avg_us as f64 / 1000.0));
                series[i].max_ms[p] = Some(round2(max_us as f64 / 1000.0));
            }
        }
    }

    let mut groups: Vec<Group> = GROUPS.iter().map(|(id, name)| Group { id, name, components: vec![] }).collect();
    for (i, (id, kind, name, state, detail, latency_ms, since, seen_at)) in components.into_iter().enumerate() {
        let counts = &day_counts[i];
        let sum = |from: usize| counts[from..].iter().fold([0i64; 3], |a, c| [a[0] + c[0], a[1] + c[1], a[2] + c[2]]);
        let days = counts
            .iter()
            .zip(&dates)
            .map(|(&[up, degraded, down], date)| DayBar {
                date: date.clone(),
                // Six digits are plenty, and never rounded up to a clean day.
                uptime: fraction([up, degraded, down]).map(|f| (f * 1e6).floor() / 1e6),
                worst: worst([up, degraded, down]),
                no_data: up + degraded + down == 0,
            })
            .collect();
        let component = Component {
            name: name_for_people(&kind, &name),
            state: Health::parse(&state),
            detail,
            since: rfc3339(since),
            checked_at: rfc3339(seen_at),
            stale: now - seen_at > STALE_MS,
            latency_ms: latency_ms.map(round2),
            uptime: Uptime {
                h24: fraction(h24[i]).map(percent),
                d7: fraction(sum(BAR_DAYS - 7)).map(percent),
                d90: fraction(sum(0)).map(percent),
            },
            days,
            response_times: std::mem::take(&mut series[i]),
            since_ms: since,
            checked_at_ms: seen_at,
            id,
            kind,
        };
        let g = group_of(&component.kind);
        groups[g].components.push(component);
    }
    for group in &mut groups {
        group.components.sort_by_cached_key(order_key);
    }
    groups.retain(|g| !g.components.is_empty());

    let all: Vec<&Component> = groups.iter().flat_map(|g| &g.components).collect();
    let overall = overall(&all);

    let mut timelines: HashMap<i64, (Vec<IncidentEvent>, i64)> = HashMap::new();
    for (incident, at, text, n) in events {
        let t = timelines.entry(incident).or_default();
        t.0.push(IncidentEvent { at: rfc3339(at), text });
        t.1 = n;
    }
    let incidents = incident_rows
        .into_iter()
        .map(|(id, component, title, severity, opened_at, resolved_at)| {
            let (events, n) = timelines.remove(&id).unwrap_or_default();
            Incident {
                id,
                component,
                title,
                severity: Health::parse(&severity),
                status: if resolved_at.is_some() { "resolved" } else { "open" },
                opened_at: rfc3339(opened_at),
                resolved_at: resolved_at.map(rfc3339),
                duration_seconds: (resolved_at.unwrap_or(now) - opened_at).max(0) / 1000,
                earlier_events: n - events.len() as i64,
                events,
                opened_at_ms: opened_at,
                resolved_at_ms: resolved_at,
            }
        })
        .collect();
    let actions = actions
        .into_iter()
        .map(|(id, at, kind, target, evidence, agreed_by, outcome)| Action {
            id,
            at: rfc3339(at),
            kind,
            target,
            evidence,
            agreed_by: agreed_by.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            outcome,
        })
        .collect();

    StatusView {
        watchdog: watchdog.to_string(),
        generated_at: rfc3339(now),
        overall,
        groups,
        incidents,
        actions,
        generated_at_ms: now,
    }
}

/// "1 2 3,4 5 6" as [1, 2, 3], [4, 5, 6]; a malformed item is skipped.
fn unpack<const N: usize>(packed: Option<&str>) -> impl Iterator<Item = [i64; N]> + '_ {
    packed.unwrap_or_default().split(',').filter_map(|item| {
        let mut out = [0i64; N];
        let mut fields = item.split(' ');
        for slot in &mut out {
            *slot = fields.next()?.parse().ok()?;
        }
        fields.next().is_none().then_some(out)
    })
}

const GROUPS: [(&str, &str); 5] = [
    ("platform", "Platform"),
    ("locations", "Locations and nodes"),
    ("pipeline", "Pipeline"),
    ("watchdogs", "Watchdogs"),
    ("other", "Other"),
];

fn group_of(kind: &str) -> usize {
    match kind {
        "controller" | "scheduler" | "database" => 0,
        "location" | "node" => 1,
        "canary" => 2,
        "watchdog" => 3,
        _ => 4,
    }
}

/// Controllers, then the scheduler, then the database; locations before
/// nodes; names in natural order (`eu-2` before `eu-10`).
fn order_key(c: &Component) -> (u8, Vec<(String, u64)>) {
    let rank = match c.kind.as_str() {
        "controller" | "location" => 0,
        "scheduler" | "node" => 1,
        _ => 2,
    };
    let mut chunks = Vec::new();
    let mut text = String::new();
    let mut number: Option<u64> = None;
    for ch in c.name.chars() {
        match (ch.to_digit(10), number) {
            (Some(d), n) => number = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as u64)),
            (None, Some(n)) => {
                chunks.push((std::mem::take(&mut text), n));
                number = None;
                text.push(ch);
            }
            (None, None) => text.push(ch),
        }
    }
    chunks.push((text, number.unwrap_or(0)));
    (rank, chunks)
}

fn overall(all: &[&Component]) -> Overall {
    let count = |h: Health| all.iter().filter(|c| c.state == h).count();
    let (up, degraded, down) = (count(Health::Up), count(Health::Degraded), count(Health::Down));
    let every_down = |kind: &str| {
        let mut of = all.iter().filter(|c| c.kind == kind).peekable();
        of.peek().is_some() && of.all(|c| c.state == Health::Down)
    };
    let essential_down =
        all.iter().any(|c| matches!(c.kind.as_str(), "database" | "scheduler") && c.state == Health::Down);
    let state = if all.is_empty() {
        OverallState::Unknown
    } else if essential_down
        || every_down("controller")
        || every_down("location")
        || (down > 0 && down * 2 >= all.len())
    {
        OverallState::MajorOutage
    } else if down > 0 {
        OverallState::PartialOutage
    } else if degraded > 0 {
        OverallState::Degraded
    } else {
        OverallState::Operational
    };
    Overall { state, summary: state.summary().to_string(), up, degraded, down }
}

/// "Controller c1", "Node eu-1", "Database".
pub fn name_for_people(kind: &str, name: &str) -> String {
    let label = match kind {
        "controller" => "Controller",
        "scheduler" => "Scheduler",
        "database" => "Database",
        "location" => "Location",
        "node" => "Node",
        "canary" => "Canary",
        "watchdog" => "Watchdog",
        other => other,
    };
    if name.is_empty() || name == kind { label.to_string() } else { format!("{label} {name}") }
}

/// Share of samples up or degraded.
fn fraction([up, degraded, down]: [i64; 3]) -> Option<f64> {
    let total = up + degraded + down;
    (total > 0).then(|| (up + degraded) as f64 / total as f64)
}

fn worst([up, degraded, down]: [i64; 3]) -> Option<Health> {
    if down > 0 {
        Some(Health::Down)
    } else if degraded > 0 {
        Some(Health::Degraded)
    } else if up > 0 {
        Some(Health::Up)
    } else {
        None
    }
}

fn percent(f: f64) -> f64 {
    (f * 1_000_000.0).round() / 10_000.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// `2026-11-20T12:34:56Z`.
pub fn rfc3339(ms: Millis) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// `2026-11-20` for a day number (days since 1970-01-01).
fn date(day: i64) -> String {
    let mut s = rfc3339(day * DAY_MS);
    s.truncate(10);
    s
}

/// `2026-11-20 12:34:56 UTC`.
fn when(ms: Millis) -> String {
    let s = rfc3339(ms);
    format!("{} {} UTC", &s[..10], &s[11..19])
}

/// `2026-11-20 12:34 UTC`.
fn when_minute(ms: Millis) -> String {
    let s = rfc3339(ms);
    format!("{} {} UTC", &s[..10], &s[11..16])
}

/// `3 d 4 h`, `2 h 5 min`, `4 min 10 s`, `12 s`.
fn duration(ms: Millis) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min {} s", s % 60),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// A percentage for people, never rounded up to a perfect 100%: `99.99%`.
fn shown_percent(p: Option<f64>) -> String {
    match p {
        None => "no data".to_string(),
        Some(p) if p >= 100.0 => "100%".to_string(),
        Some(p) => format!("{:.2}%", (p * 100.0).floor() / 100.0),
    }
}

fn shown_ms(ms: f64) -> String {
    if ms >= 100.0 || ms.fract() == 0.0 { format!("{ms:.0} ms") } else { format!("{ms:.1} ms") }
}

fn state_label(h: Health) -> &'static str {
    match h {
        Health::Up => "Operational",
        Health::Degraded => "Degraded",
        Health::Down => "Down",
    }
}

// ---------------------------------------------------------------- rendering

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // The name ends in .html: everything interpolated is HTML-escaped
    // unless it was built as safe (the SVGs, escaped in `svg`).
    env.add_template("status.html", include_str!("../../templates/status.html")).expect("the status page template");
    env
});

#[derive(Serialize)]
struct Page<'a> {
    v: &'a StatusView,
    banner_class: &'static str,
    banner_icon: &'static str,
    counts: String,
    generated: String,
    groups: Vec<PageGroup<'a>>,
    incidents: Vec<PageIncident<'a>>,
    actions: Vec<PageAction<'a>>,
    recent_days: i64,
}

#[derive(Serialize)]
struct PageGroup<'a> {
    name: &'a str,
    id: &'a str,
    summary: String,
    rows: Vec<PageRow<'a>>,
}

#[derive(Serialize)]
struct PageRow<'a> {
    c: &'a Component,
    state: &'static str,
    label: &'static str,
    icon: &'static str,
    since: String,
    checked: String,
    latency: Option<String>,
    uptime: [String; 3],
    bars: Value,
    chart: Option<PageChart>,
}

#[derive(Serialize)]
struct PageChart {
    svg: Value,
    caption: String,
    /// The top of the chart's scale.
    top: String,
}

#[derive(Serialize)]
struct PageIncident<'a> {
    i: &'a Incident,
    opened: String,
    resolved: Option<String>,
    duration: String,
    events: Vec<(String, &'a str)>,
}

#[derive(Serialize)]
struct PageAction<'a> {
    a: &'a Action,
    at: String,
    what: String,
    agreed_by: String,
}

fn icon(h: Health) -> &'static str {
    match h {
        Health::Up => "✓",
        Health::Degraded => "!",
        Health::Down => "✕",
    }
}

/// The HTML status page of `view`: self-contained, no JavaScript.
pub fn render(view: &StatusView) -> String {
    let now = view.generated_at_ms;
    let groups = view
        .groups
        .iter()
        .map(|g| {
            let down = g.components.iter().filter(|c| c.state == Health::Down).count();
            let degraded = g.components.iter().filter(|c| c.state == Health::Degraded).count();
            let summary = match (down, degraded) {
                (0, 0) => "All operational".to_string(),
                (0, d) => format!("{d} degraded"),
                (d, 0) => format!("{d} down"),
                (d, g) => format!("{d} down, {g} degraded"),
            };
            let rows = g
                .components
                .iter()
                .map(|c| PageRow {
                    c,
                    state: c.state.as_str(),
                    label: state_label(c.state),
                    icon: icon(c.state),
                    since: format!(
                        "{} for {}, since {}",
                        state_label(c.state),
                        duration(now - c.since_ms),
                        when_minute(c.since_ms)
                    ),
                    checked: if c.stale {
                        format!("Stale: last checked {} ago", duration(now - c.checked_at_ms))
                    } else {
                        String::new()
                    },
                    latency: c.latency_ms.map(shown_ms),
                    uptime: [c.uptime.h24, c.uptime.d7, c.uptime.d90].map(shown_percent),
                    bars: Value::from_safe_string(svg::bars(&c.name, &c.days, c.uptime.d90)),
                    chart: chart(c),
                })
                .collect();
            PageGroup { name: g.name, id: g.id, summary, rows }
        })
        .collect();
    let incidents = view
        .incidents
        .iter()
        .map(|i| PageIncident {
            i,
            opened: when(i.opened_at_ms),
            resolved: i.resolved_at_ms.map(when),
            duration: duration(i.duration_seconds * 1000),
            events: i.events.iter().map(|e| (e.at.replace('T', " ").replace('Z', " UTC"), e.text.as_str())).collect(),
        })
        .collect();
    let actions = view
        .actions
        .iter()
        .map(|a| PageAction {
            a,
            at: a.at.replace('T', " ").replace('Z', " UTC"),
            what: match a.kind.as_str() {
                "evict_node" => "Evicted".to_string(),
                "revoke_lease" => "Revoked".to_string(),
                other => other.replace('_', " "),
            },
            agreed_by: if a.agreed_by.is_empty() { "nobody recorded".into() } else { a.agreed_by.join(", ") },
        })
        .collect();
    let o = &view.overall;
    let page = Page {
        v: view,
        banner_class: match o.state {
            OverallState::Operational => "up",
            OverallState::Degraded => "degraded",
            OverallState::PartialOutage | OverallState::MajorOutage => "down",
            OverallState::Unknown => "unknown",
        },
        banner_icon: match o.state {
            OverallState::Operational => "✓",
            OverallState::Degraded => "!",
            OverallState::PartialOutage | OverallState::MajorOutage => "✕",
            OverallState::Unknown => "?",
        },
        counts: format!("{} up, {} degraded, {} down", o.up, o.degraded, o.down),
        generated: when(now),
        groups,
        incidents,
        actions,
        recent_days: RECENT_DAYS,
    };
    TEMPLATES
        .get_template("status.html")
        .and_then(|t| t.render(&page))
        .unwrap_or_else(|e| format!("<!doctype html><title>Status</title><p>The status page failed to render: {e}</p>"))
}

fn chart(c: &Component) -> Option<PageChart> {
    let s = &c.response_times;
    let peak = s.max_ms.iter().flatten().copied().fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
    let (sum, n) = s.avg_ms.iter().flatten().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    let mean = sum / n.max(1) as f64;
    let caption = format!("average {}, peak {}", shown_ms(mean), shown_ms(peak));
    let label = format!("Response time of {} over the last 24 hours: {caption}.", c.name);
    let top = svg::nice_ceiling(peak);
    Some(PageChart { svg: Value::from_safe_string(svg::chart(&label, s, top)), caption, top: shown_ms(top) })
}

#[cfg(test)]
mod tests;
