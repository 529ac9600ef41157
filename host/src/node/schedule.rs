//! The node's timetable: for each assigned check, its next slot.
//!
//! A node runs every slot of its checks from the slot its assignment starts
//! at, including recent slots that have no result yet (a new owner catches
//! up at once; a node that was stopped runs what it missed), but never
//! more than a few slots back: older ones are lost, not run late. A check
//! being handed over runs until the slot its new owner starts at.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::Millis;
use crate::slots;

/// A check as a node needs it to run it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssignedCheck {
    pub id: i64,
    pub name: String,
    /// As stored: `http`, `custom@1.2.0`.
    pub plugin: String,
    /// For uploaded plugins: the bytes to fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub target: String,
    /// JSON text.
    pub config: String,
    pub interval_ms: i64,
    pub timeout_ms: i64,
    pub allow: Vec<String>,
    /// The ownership epoch results carry; a stale one is refused.
    pub epoch: i64,
    /// The first slot this node runs.
    pub from_slot: Millis,
    /// Set while the check is handed over: the new owner's first slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_slot: Option<Millis>,
    /// The newest slot with an accepted result, when the assignment was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_slot: Option<Millis>,
}

/// What a node must run, and the version of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub version: i64,
    pub checks: Vec<AssignedCheck>,
}

pub(crate) struct Schedule {
    due: BTreeSet<(Millis, i64)>,
    checks: HashMap<i64, (Arc<AssignedCheck>, Millis)>,
    catch_up: i64,
}

impl Schedule {
    pub fn new(catch_up_slots: i64) -> Self {
        Schedule { due: BTreeSet::new(), checks: HashMap::new(), catch_up: catch_up_slots.max(1) }
    }

    /// The oldest slot of `check` still worth running at `now`.
    fn earliest(&self, check: &AssignedCheck, now: Millis) -> Millis {
        slots::last_at_or_before(check.id, check.interval_ms, now) - (self.catch_up - 1) * check.interval_ms
    }

    /// Takes a new assignment. A check kept with the same epoch and interval
    /// keeps its next slot; a new or moved one starts at the first slot it
    /// owns that has no result, within the catch-up bound.
    pub fn update(&mut self, assignment: &Assignment, now: Millis) {
        let mut keep = HashMap::with_capacity(assignment.checks.len());
        for check in &assignment.checks {
            let next = match self.checks.get(&check.id) {
                Some((old, next)) if old.interval_ms == check.interval_ms && old.epoch == check.epoch => *next,
                _ => {
                    let after_last = check.last_slot.map(|s| s + check.interval_ms).unwrap_or(Millis::MIN);
                    let start = check.from_slot.max(after_last).max(self.earliest(check, now));
                    slots::next_at_or_after(check.id, check.interval_ms, start)
                }
            };
            keep.insert(check.id, (Arc::new(check.clone()), next));
        }
        self.due = keep.iter().map(|(id, (_, next))| (*next, *id)).collect();
        self.checks = keep;
    }

    pub fn next_due(&self) -> Option<Millis> {
        self.due.first().map(|(t, _)| *t)
    }

    /// The checks whose slot has come, with that slot; missed slots come
    /// one by one, oldest first, back to the catch-up bound.
    pub fn pop_due(&mut self, now: Millis) -> Vec<(Arc<AssignedCheck>, Millis)> {
        let mut out = Vec::new();
        while let Some(&(slot, id)) = self.due.first() {
            if slot > now {
                break;
            }
            self.due.pop_first();
            let Some((check, next)) = self.checks.get_mut(&id) else { continue };
            let slot = slot
                .max(slots::last_at_or_before(id, check.interval_ms, now) - (self.catch_up - 1) * check.interval_ms);
            if check.until_slot.is_some_and(|until| slot >= until) {
                // Handed over: the new owner runs it from here.
                self.checks.remove(&id);
                continue;
            }
            *next = slot + check.interval_ms;
            self.due.insert((*next, id));
            out.push((check.clone(), slot));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.checks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: i64, interval_ms: i64) -> AssignedCheck {
        AssignedCheck {
            id,
            name: format!("c{id}"),
            plugin: "noop".into(),
            sha256: None,
            target: "x".into(),
            config: "{}".into(),
            interval_ms,
            timeout_ms: 1000,
            allow: vec![],
            epoch: 1,
            from_slot: 0,
            until_slot: None,
            last_slot: None,
        }
    }

    fn assignment(checks: Vec<AssignedCheck>) -> Assignment {
        Assignment { version: 1, checks }
    }

    const T0: Millis = 1_700_000_000_000;

    #[test]
    fn each_slot_is_popped_once_in_order() {
        let mut s = Schedule::new(3);
        s.update(&assignment(vec![check(1, 10_000), check(2, 10_000)]), T0);
        let mut seen = Vec::new();
        let mut now = T0;
        while now < T0 + 60_000 {
            now = s.next_due().unwrap();
            for (c, slot) in s.pop_due(now) {
                assert!(slot <= now);
                assert_eq!(slot.rem_euclid(10_000), slots::phase(c.id, 10_000));
                seen.push((c.id, slot));
            }
        }
        for id in [1, 2] {
            let mine: Vec<_> = seen.iter().filter(|(i, _)| *i == id).map(|(_, s)| *s).collect();
            assert!(mine.windows(2).all(|w| w[1] - w[0] == 10_000), "{mine:?}");
        }
    }

    #[test]
    fn a_new_owner_catches_up_slots_without_a_result() {
        let mut s = Schedule::new(3);
        let last = slots::last_at_or_before(7, 10_000, T0);
        let mut c = check(7, 10_000);
        c.from_slot = last - 10_000;
        c.last_slot = Some(last - 20_000);
        s.update(&assignment(vec![c]), T0);
        let slots: Vec<Millis> = s.pop_due(T0).iter().map(|(_, slot)| *slot).collect();
        assert_eq!(slots, vec![last - 10_000, last], "every missed slot, oldest first");
        assert!(s.next_due().unwrap() > T0);
    }

    #[test]
    fn a_restarted_owner_starts_after_its_last_result() {
        let mut s = Schedule::new(3);
        let last = slots::last_at_or_before(7, 10_000, T0);
        let mut c = check(7, 10_000);
        c.from_slot = T0 - 3_600_000;
        c.last_slot = Some(last);
        s.update(&assignment(vec![c]), T0);
        assert!(s.pop_due(T0).is_empty(), "nothing to catch up");
        assert_eq!(s.next_due(), Some(last + 10_000));
    }

    #[test]
    fn after_a_long_stop_only_the_last_few_slots_run() {
        let mut s = Schedule::new(3);
        s.update(&assignment(vec![check(7, 10_000)]), T0);
        let later = T0 + 600_000;
        let mut ran = Vec::new();
        loop {
            let due = s.pop_due(later);
            if due.is_empty() {
                break;
            }
            ran.extend(due.into_iter().map(|(_, slot)| slot));
        }
        let last = slots::last_at_or_before(7, 10_000, later);
        assert_eq!(ran, vec![last - 20_000, last - 10_000, last]);
    }

    #[test]
    fn a_handed_over_check_stops_at_the_new_owners_first_slot() {
        let mut s = Schedule::new(3);
        let mut c = check(7, 10_000);
        let first = slots::next_at_or_after(7, 10_000, T0);
        c.from_slot = first;
        c.until_slot = Some(first + 10_000);
        s.update(&assignment(vec![c]), T0);
        assert_eq!(s.pop_due(first).len(), 1);
        assert!(s.pop_due(first + 10_000).is_empty());
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn kept_checks_keep_their_slot_and_moved_ones_are_rescheduled() {
        let mut s = Schedule::new(3);
        s.update(&assignment(vec![check(1, 10_000)]), T0);
        let before = s.next_due();
        s.update(&assignment(vec![check(1, 10_000), check(2, 5_000)]), T0 + 3_000);
        assert_eq!(s.len(), 2);
        assert!(s.due.contains(&(before.unwrap(), 1)));
        s.update(&assignment(vec![check(2, 5_000)]), T0 + 3_000);
        assert_eq!(s.len(), 1);
    }
}
