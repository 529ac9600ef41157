//! Maintenance windows and silences: while one matches an alert's source,
//! its incident is recorded but nobody is notified. When the last one ends
//! and the incident is still open, its escalation starts then.

use chrono::{TimeZone, Utc};
use globset::{Glob, GlobSet, GlobSetBuilder};
use sqlx::AnyConnection;

use super::model::Maintenance;
use crate::model::Millis;
use crate::store;

/// A set of source globs; empty matches everything.
pub fn globs(patterns: &[String]) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        set.add(Glob::new(p).map_err(|e| format!("source pattern {p:?}: {e}"))?);
    }
    set.build().map(Some).map_err(|e| e.to_string())
}

pub fn matches(patterns: &[String], source: &str) -> bool {
    match globs(patterns) {
        Ok(Some(set)) => set.is_match(source),
        Ok(None) => true,
        // Refused when stored; a bad pattern matches nothing.
        Err(_) => false,
    }
}

/// A cron schedule (5 fields, UTC), as stored.
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, String> {
    croner::Cron::new(schedule).parse().map_err(|e| format!("schedule {schedule:?}: {e}"))
}

impl Maintenance {
    /// Whether the window covers `now`.
    pub fn active(&self, now: Millis) -> bool {
        if let (Some(start), Some(end)) = (self.starts_at, self.ends_at) {
            return start <= now && now < end;
        }
        let (Some(schedule), Some(duration)) = (&self.schedule, self.duration) else { return false };
        let Ok(cron) = parse_schedule(schedule) else { return false };
        // In the window when an occurrence falls in (now - duration, now].
        let Some(from) = Utc.timestamp_millis_opt(now - duration.as_millis() as i64).single() else { return false };
        match cron.find_next_occurrence(&from, false) {
            Ok(t) => t.timestamp_millis() <= now,
            Err(_) => false,
        }
    }

    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<String> {
        if let Err(e) = globs(&self.sources) {
            return Some(e);
        }
        match (self.starts_at, self.ends_at, &self.schedule, self.duration) {
            (Some(start), Some(end), None, None) if start < end => None,
            (Some(_), Some(_), None, None) => Some("ends_at must be after starts_at".into()),
            (None, None, Some(schedule), Some(d)) if !d.is_zero() => parse_schedule(schedule).err(),
            (None, None, Some(_), _) => Some("a recurring window needs a duration above zero".into()),
            _ => Some("give either starts_at and ends_at (one-off) or schedule and duration (recurring)".into()),
        }
    }
}

/// What holds back notifications for `source` at `now`: `maintenance
/// <name>` or `silence <id>`, if anything.
pub async fn why_suppressed(conn: &mut AnyConnection, source: &str, now: Millis) -> store::Result<Option<String>> {
    let windows: Vec<Maintenance> = super::directory::list(conn, super::directory::MAINTENANCE).await?;
    for window in windows {
        if window.active(now) && matches(&window.sources, source) {
            return Ok(Some(format!("maintenance {}", window.name)));
        }
    }
    let silences: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, sources FROM silences WHERE ends_at > $1").bind(now).fetch_all(&mut *conn).await?;
    for (id, sources) in silences {
        let sources: Vec<String> = serde_json::from_str(&sources).unwrap_or_default();
        if matches(&sources, source) {
            return Ok(Some(format!("silence {id}")));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn window(schedule: &str, duration: Duration) -> Maintenance {
        Maintenance {
            name: "w".into(),
            sources: vec![],
            starts_at: None,
            ends_at: None,
            schedule: Some(schedule.into()),
            duration: Some(duration),
            comment: String::new(),
        }
    }

    #[test]
    fn recurring_windows_cover_their_hours() {
        // Sundays 02:00-04:00 UTC. 2026-11-22 is a Sunday.
        let w = window("0 2 * * SUN", Duration::from_secs(7200));
        let at = |s: &str| crate::model::wire::parse_time(s).unwrap();
        assert!(!w.active(at("2026-11-22T01:59:59Z")));
        assert!(w.active(at("2026-11-22T02:00:00Z")));
        assert!(w.active(at("2026-11-22T03:59:59Z")));
        assert!(!w.active(at("2026-11-22T04:00:00Z")));
        assert!(!w.active(at("2026-11-23T03:00:00Z")), "Monday");
        assert!(w.problem().is_none());
        assert!(window("0 25 * * *", Duration::from_secs(60)).problem().is_some());
    }

    #[test]
    fn globs_match_sources() {
        assert!(matches(&["check:db-*".into()], "check:db-main"));
        assert!(!matches(&["check:db-*".into()], "check:api"));
        assert!(matches(&[], "anything"));
    }
}
