//! The canary: one `http` check per location whose target is this
//! watchdog (`/canary/<watchdog>/<location>/<generation>`).
//!
//! Health endpoints cannot see a controller that answers `/healthz` but
//! schedules nothing. The canary can: every `rotate` the watchdog changes
//! the checks' URL to a new generation, and that change only reaches the
//! probe nodes through the scheduler. A location is healthy when a probe
//! from it hit the newest generation within `deadline` of the change, keeps
//! hitting, and its results come back through the API.
//!
//! Anyone can send a request to the canary target, so a hit counts only
//! when it carries the nonce of its location's current generation (or of
//! the previous one, until the deadline): 128 random bits made at each
//! rotation per location, sent by the check in the [`CANARY_HEADER`]
//! header. It travels the same way as the change (API, database,
//! scheduler, node), and readers of the check see headers hidden, so no
//! one can make a wedged scheduler look healthy by hitting the target, nor
//! a healthy one look wedged by hitting it with old generations or for
//! locations this watchdog never set up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::Canary as Settings;
use crate::model::{Health, Millis, Observation, fresh_nonce};
use crate::platform::{CallError, Platform};

/// The header in which a probe carries its generation's nonce.
pub const CANARY_HEADER: &str = "x-tocsin-canary";

/// Why a hit counts for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitRefused {
    /// Not a location whose canary this watchdog set up.
    UnknownLocation,
    /// Not the nonce of the location's current generation, nor of the
    /// previous one within the deadline: forged, or a probe that is late.
    WrongNonce,
}

impl HitRefused {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            HitRefused::UnknownLocation => "unknown_location",
            HitRefused::WrongNonce => "wrong_nonce",
        }
    }
}

/// A location's nonces: of the current generation and the previous one.
#[derive(Clone)]
struct Nonces {
    current: String,
    previous: Option<String>,
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A hit on the canary target, as the probe described itself.
#[derive(Clone, Debug)]
pub struct Hit {
    pub generation: i64,
    pub at: Millis,
    pub node: String,
    pub slot: Option<Millis>,
}

#[derive(Default)]
struct Location {
    newest: Option<Hit>,
    /// The first hit of the current generation.
    first_of_generation: Option<Millis>,
    /// The first hit ever: results are expected from then on.
    first_seen: Option<Millis>,
}

/// What the canary knows; shared by the HTTP handler and the watch loop.
#[derive(Clone, Default)]
pub struct Canary {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    locations: HashMap<String, Location>,
    /// The generation the checks were last set to, and when.
    generation: Option<(i64, Millis)>,
    /// The generation before it (hits of it count until the deadline).
    previous: Option<i64>,
    /// Each location's nonces; only locations set up here have any.
    nonces: HashMap<String, Nonces>,
    /// How long the previous generation's hits count after a rotation.
    deadline: Millis,
    /// The newest result seen through the API, per location.
    results: HashMap<String, Millis>,
    /// When this watchdog first judged the canary: it gets a deadline to set it up.
    first_judged: Option<Millis>,
    /// Why the last change of the checks failed, if it did.
    last_error: Option<String>,
}

pub fn check_name(watchdog: &str, location: &str) -> String {
    format!("watchdog-{watchdog}-canary-{location}")
}

impl Inner {
    /// The generation a hit on `location` carrying `nonce` at `at` belongs to.
    fn generation_of(&self, location: &str, nonce: &str, at: Millis) -> Result<i64, HitRefused> {
        let nonces = self.nonces.get(location).ok_or(HitRefused::UnknownLocation)?;
        let (current, set_at) = self.generation.ok_or(HitRefused::UnknownLocation)?;
        if same(nonce, &nonces.current) {
            return Ok(current);
        }
        match (&nonces.previous, self.previous) {
            (Some(previous), Some(generation)) if at - set_at <= self.deadline && same(nonce, previous) => {
                Ok(generation)
            }
            _ => Err(HitRefused::WrongNonce),
        }
    }

    /// Makes `generation` (set at `now`) current with each location's new nonce.
    fn advance(&mut self, generation: i64, now: Millis, nonces: HashMap<String, String>, deadline: Millis) {
        self.last_error = None;
        self.previous = self.generation.map(|(g, _)| g);
        self.generation = Some((generation, now));
        self.deadline = deadline;
        let mut old = std::mem::take(&mut self.nonces);
        for (location, current) in nonces {
            let previous = old.remove(&location).map(|n| n.current);
            self.nonces.insert(location, Nonces { current, previous });
        }
        for loc in self.locations.values_mut() {
            loc.first_of_generation = None;
        }
    }
}

impl Canary {
    /// Records a probe's hit on `location` carrying `nonce`, if it proves a
    /// generation this watchdog set up.
    pub fn record_hit(
        &self,
        location: &str,
        nonce: &str,
        at: Millis,
        node: String,
        slot: Option<Millis>,
    ) -> Result<(), HitRefused> {
        let mut inner = self.inner.lock().expect("canary lock");
        let generation = inner.generation_of(location, nonce, at)?;
        let current = inner.generation.map(|(g, _)| g);
        let hit = Hit { generation, at, node, slot };
        let loc = inner.locations.entry(location.to_string()).or_default();
        if Some(hit.generation) == current && loc.newest.as_ref().is_none_or(|h| h.generation != hit.generation) {
            loc.first_of_generation = Some(hit.at);
        }
        loc.first_seen.get_or_insert(hit.at);
        loc.newest = Some(hit);
        Ok(())
    }

    pub fn generation(&self) -> Option<(i64, Millis)> {
        self.inner.lock().expect("canary lock").generation
    }

    /// Sets every location's check to generation `now` (creating missing
    /// ones) through the first controller that takes it.
    pub async fn rotate(
        &self,
        platform: &Platform,
        controllers: &[url::Url],
        settings: &Settings,
        watchdog: &str,
        public_url: &str,
        now: Millis,
    ) -> Result<(), CallError> {
        let host = url::Url::parse(public_url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
        let mut last = CallError::Transport("no controller configured".into());
        let nonces: HashMap<String, String> = settings.locations.iter().map(|l| (l.clone(), fresh_nonce())).collect();
        'controllers: for base in controllers {
            for location in &settings.locations {
                let name = check_name(watchdog, location);
                let spec = json!({
                    "name": name,
                    "description": format!("Canary of watchdog {watchdog}: proves a change reaches {location} and its results come back"),
                    "plugin": "http",
                    "target": format!("{public_url}/canary/{watchdog}/{location}/{now}"),
                    // Readers of the check see header values hidden.
                    "config": {"context_headers": true, "headers": {CANARY_HEADER: nonces[location]}},
                    "interval": humantime::format_duration(settings.interval).to_string(),
                    "locations": [location],
                    "tags": ["watchdog", "canary"],
                    "allow": [host],
                });
                let result = match platform.check(base, &name).await {
                    Ok(existing) => platform.put_check(base, &name, &spec, existing.is_some()).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    tracing::debug!(controller = %base, check = %name, error = %e, "setting the canary failed");
                    last = e;
                    continue 'controllers;
                }
            }
            let deadline = settings.deadline.as_millis() as i64;
            self.inner.lock().expect("canary lock").advance(now, now, nonces, deadline);
            tracing::debug!(generation = now, controller = %base, "canary rotated");
            return Ok(());
        }
        let mut inner = self.inner.lock().expect("canary lock");
        let message = last.to_string();
        if inner.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(error = %message, "the canary checks could not be set");
        }
        inner.last_error = Some(message);
        Err(last)
    }

    /// Reads the newest canary results through the API.
    pub async fn read_results(&self, platform: &Platform, base: &url::Url, watchdog: &str, locations: &[String]) {
        for location in locations {
            if let Ok(runs) = platform.latest_runs(base, &check_name(watchdog, location), 1).await
                && let Some(run) = runs.first()
            {
                self.inner.lock().expect("canary lock").results.insert(location.clone(), run.slot);
            }
        }
    }

    /// The newest change has been out longer than the deadline and no
    /// location has probed it: the scheduler does not deliver changes.
    pub fn stalled(&self, settings: &Settings, now: Millis) -> bool {
        let inner = self.inner.lock().expect("canary lock");
        let Some((generation, set_at)) = inner.generation else { return false };
        now - set_at > settings.deadline.as_millis() as i64
            && settings.locations.iter().all(|l| {
                inner.locations.get(l).and_then(|loc| loc.newest.as_ref()).is_none_or(|h| h.generation != generation)
            })
    }

    /// Every location has probed the newest generation.
    pub fn delivered_everywhere(&self, settings: &Settings) -> bool {
        let inner = self.inner.lock().expect("canary lock");
        let Some((generation, _)) = inner.generation else { return false };
        settings.locations.iter().all(|l| {
            inner.locations.get(l).and_then(|loc| loc.newest.as_ref()).is_some_and(|h| h.generation == generation)
        })
    }

    /// One observation per location.
    pub fn judge(&self, settings: &Settings, now: Millis) -> Vec<Observation> {
        let mut inner = self.inner.lock().expect("canary lock");
        let first_judged = *inner.first_judged.get_or_insert(now);
        let deadline = settings.deadline.as_millis() as i64;
        settings
            .locations
            .iter()
            .map(|location| {
                let loc = inner.locations.get(location);
                let newest = loc.and_then(|l| l.newest.as_ref());
                let result = inner.results.get(location).copied();
                let (health, detail) = match (inner.generation, newest) {
                    (None, _) if now - first_judged <= deadline => (Health::Up, "being set up".to_string()),
                    (None, _) => (
                        Health::Down,
                        format!(
                            "the canary could not be set up: {}",
                            inner.last_error.as_deref().unwrap_or("no controller answers")
                        ),
                    ),
                    (Some((_, set_at)), None) if now - set_at <= deadline => {
                        (Health::Up, "waiting for the first probe".to_string())
                    }
                    (Some(_), None) => (Health::Down, format!("no probe from {location} has reached the canary")),
                    (Some((generation, set_at)), Some(hit)) => {
                        let current = hit.generation == generation;
                        let accepted = current || (Some(hit.generation) == inner.previous && now - set_at <= deadline);
                        let age = now - hit.at;
                        if !accepted {
                            (
                                Health::Down,
                                format!(
                                    "the change made {}s ago has not reached {location}: probes still use an older definition",
                                    (now - set_at) / 1000
                                ),
                            )
                        } else if age > deadline {
                            (Health::Down, format!("no probe from {location} for {}s", age / 1000))
                        } else if now - result.or(loc.and_then(|l| l.first_seen)).unwrap_or(now)
                            > deadline + settings.interval.as_millis() as i64
                        {
                            (
                                Health::Down,
                                format!("probes from {location} run, but their results do not come back through the API"),
                            )
                        } else {
                            let lag = loc.and_then(|l| l.first_of_generation).map(|f| f - set_at);
                            let lag = lag.map(|l| format!(", the last change arrived in {:.1}s", l as f64 / 1000.0));
                            (
                                Health::Up,
                                format!("probed by {} {:.1}s ago{}", hit.node, age as f64 / 1000.0, lag.unwrap_or_default()),
                            )
                        }
                    }
                };
                Observation::new("canary", location, health, detail)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings() -> Settings {
        Settings {
            locations: vec!["eu".into()],
            interval: Duration::from_secs(2),
            rotate: Duration::from_secs(10),
            deadline: Duration::from_secs(6),
        }
    }

    fn nonce(g: i64) -> String {
        format!("nonce-of-{g}")
    }

    /// Rotates to generation `g` at time `g`, as `rotate` does once every
    /// location's check took it.
    fn rotate_to(c: &Canary, g: i64) {
        let nonces = HashMap::from([("eu".to_string(), nonce(g))]);
        c.inner.lock().unwrap().advance(g, g, nonces, settings().deadline.as_millis() as i64);
    }

    fn canary_at_generation(g: i64) -> Canary {
        let c = Canary::default();
        rotate_to(&c, g);
        c
    }

    fn hit(c: &Canary, g: i64, at: Millis) -> Result<(), HitRefused> {
        c.record_hit("eu", &nonce(g), at, "n1".into(), Some(at))
    }

    #[test]
    fn a_location_probing_the_newest_generation_with_results_is_up() {
        let c = canary_at_generation(1_000);
        hit(&c, 1_000, 2_000).unwrap();
        c.inner.lock().unwrap().results.insert("eu".into(), 2_000);
        let o = c.judge(&settings(), 3_000);
        assert_eq!(o[0].health, Health::Up, "{}", o[0].detail);
        assert!(o[0].detail.contains("arrived in 1.0s"), "{}", o[0].detail);
    }

    #[test]
    fn a_change_that_never_arrives_is_caught_after_the_deadline() {
        let c = canary_at_generation(1_000);
        hit(&c, 1_000, 2_000).unwrap();
        c.inner.lock().unwrap().results.insert("eu".into(), 2_000);
        // Rotated; the probes keep hitting the old generation.
        rotate_to(&c, 10_000);
        for at in [11_000, 13_000, 15_000] {
            hit(&c, 1_000, at).unwrap();
            c.inner.lock().unwrap().results.insert("eu".into(), at);
        }
        assert_eq!(c.judge(&settings(), 15_500)[0].health, Health::Up, "within the deadline the old one counts");
        assert_eq!(hit(&c, 1_000, 17_000), Err(HitRefused::WrongNonce), "after it, it does not");
        let o = c.judge(&settings(), 17_000);
        assert_eq!(o[0].health, Health::Down);
        assert!(o[0].detail.contains("has not reached eu"), "{}", o[0].detail);
        assert!(c.stalled(&settings(), 17_000));
    }

    #[test]
    fn results_missing_from_the_api_are_caught() {
        let c = canary_at_generation(1_000);
        hit(&c, 1_000, 1_500).unwrap();
        hit(&c, 1_000, 9_500).unwrap();
        assert_eq!(c.judge(&settings(), 9_500)[0].health, Health::Up, "results get time to come back");
        let o = c.judge(&settings(), 10_000);
        assert_eq!(o[0].health, Health::Down);
        assert!(o[0].detail.contains("do not come back through the API"), "{}", o[0].detail);
    }

    #[test]
    fn hits_without_the_generations_nonce_or_for_other_locations_count_for_nothing() {
        let c = Canary::default();
        assert_eq!(hit(&c, 1_000, 500), Err(HitRefused::UnknownLocation), "nothing set up yet");
        rotate_to(&c, 1_000);
        hit(&c, 1_000, 2_000).unwrap();
        c.inner.lock().unwrap().results.insert("eu".into(), 2_000);
        rotate_to(&c, 10_000);
        hit(&c, 10_000, 10_500).unwrap();
        // Forged: a guessed nonce, the URL's generation as nonce, an old
        // generation's, another location, all flooding after the real hit.
        for at in 11_000..11_100 {
            assert_eq!(c.record_hit("eu", &"0".repeat(32), at, "x".into(), None), Err(HitRefused::WrongNonce));
            assert_eq!(c.record_hit("eu", "10000", at, "x".into(), None), Err(HitRefused::WrongNonce));
            assert_eq!(hit(&c, 0, at), Err(HitRefused::WrongNonce));
            assert_eq!(
                c.record_hit("elsewhere", &nonce(10_000), at, "x".into(), None),
                Err(HitRefused::UnknownLocation)
            );
        }
        c.inner.lock().unwrap().results.insert("eu".into(), 10_500);
        let o = c.judge(&settings(), 11_200);
        assert_eq!(o[0].health, Health::Up, "{}", o[0].detail);
        assert!(o[0].detail.contains("probed by n1"), "{}", o[0].detail);
        assert!(c.delivered_everywhere(&settings()) && !c.stalled(&settings(), 30_000));
        assert!(!c.inner.lock().unwrap().locations.contains_key("elsewhere"), "unknown locations take no memory");
        // Nothing reached a new generation: forged hits do not hide that.
        rotate_to(&c, 20_000);
        for at in 20_000..20_100 {
            let _ = c.record_hit("eu", &"f".repeat(32), at, "x".into(), None);
        }
        assert!(c.stalled(&settings(), 26_001));
    }
}
