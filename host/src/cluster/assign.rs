//! Which node runs which check: rendezvous (highest random weight) hashing
//! with bounded load, changed incrementally.
//!
//! Every node gets a score for every check from a hash of both ids; a check
//! belongs to its highest-scoring eligible node in its locations. A node
//! may hold at most `load_factor` times its fair share, so a popular node
//! overflows to the next-ranked one. The plan only moves what must move:
//!
//! - a check whose owner is dead or drained (or that has none) goes to its
//!   best-ranked eligible node, preferring the location where it normally
//!   runs, so a dead node's checks spread over its neighbours and nothing
//!   else moves;
//! - a check whose owner is alive moves only back to a better-ranked node
//!   that has been healthy long enough (a node that returns gets its checks
//!   back, but not before it has proved itself).
//!
//! Pure: the coordinator feeds it what the database says and applies the
//! moves it returns.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// A node as the planner sees it.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub id: String,
    pub location: String,
    /// Alive and not drained: may own checks.
    pub eligible: bool,
    /// Healthy for long enough to take checks from a live owner.
    pub settled: bool,
}

/// A check as the planner sees it.
#[derive(Clone, Debug)]
pub struct CheckView {
    pub id: i64,
    /// Where it may run; empty means anywhere.
    pub locations: Vec<String>,
    pub owner: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The check had no owner.
    Initial,
    /// Its owner is dead or drained.
    Failover,
    /// A better-placed node is back, or has room.
    Handback,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub check_id: i64,
    pub from: Option<String>,
    pub to: String,
    pub reason: Reason,
}

/// A node's weight for a check: stable across processes and versions.
fn score(check_id: i64, node_hash: u64) -> u64 {
    // splitmix64's finaliser over the pair: fast, and well mixed enough that
    // scores are independent across nodes.
    let mut z = (check_id as u64) ^ node_hash;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn node_hash(id: &str) -> u64 {
    let digest = Sha256::digest(id.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The moves that bring `checks` to where they belong on `nodes`.
pub fn plan(checks: &[CheckView], nodes: &[NodeView], load_factor: f64) -> Vec<Move> {
    let eligible: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].eligible).collect();
    if eligible.is_empty() {
        return Vec::new();
    }
    let hashes: Vec<u64> = nodes.iter().map(|n| node_hash(&n.id)).collect();
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let capacity = ((checks.len() as f64 * load_factor) / eligible.len() as f64).ceil().max(1.0) as usize;
    let mut load = vec![0usize; nodes.len()];
    for check in checks {
        if let Some(&i) = check.owner.as_deref().and_then(|o| index.get(o))
            && nodes[i].eligible
        {
            load[i] += 1;
        }
    }

    let mut order: Vec<&CheckView> = checks.iter().collect();
    order.sort_by_key(|c| c.id);
    let mut moves = Vec::new();
    let mut ranked = Vec::with_capacity(nodes.len());
    for check in order {
        // Every node allowed by the check's locations (or every node, when
        // none of its locations has an eligible node), best first; the
        // location of the best of them all comes first, so a failover stays
        // in the same location when it can.
        let allowed = |i: &usize| check.locations.is_empty() || check.locations.contains(&nodes[*i].location);
        let any_allowed_eligible = eligible.iter().any(allowed);
        ranked.clear();
        ranked.extend((0..nodes.len()).filter(|i| !any_allowed_eligible || allowed(i)));
        ranked.sort_by_key(|&i| std::cmp::Reverse(score(check.id, hashes[i])));
        let home = ranked.first().map(|&i| nodes[i].location.as_str()).unwrap_or("");
        ranked.sort_by_key(|&i| (nodes[i].location != home, std::cmp::Reverse(score(check.id, hashes[i]))));

        let owner = check.owner.as_deref().and_then(|o| index.get(o).copied());
        match owner {
            Some(o) if nodes[o].eligible => {
                // Move back only to a settled node ranked above the owner.
                let better = ranked
                    .iter()
                    .take_while(|&&i| i != o)
                    .find(|&&i| nodes[i].eligible && nodes[i].settled && load[i] < capacity);
                if let Some(&to) = better {
                    load[o] -= 1;
                    load[to] += 1;
                    moves.push(Move {
                        check_id: check.id,
                        from: Some(nodes[o].id.clone()),
                        to: nodes[to].id.clone(),
                        reason: Reason::Handback,
                    });
                }
            }
            _ => {
                let to = ranked
                    .iter()
                    .find(|&&i| nodes[i].eligible && load[i] < capacity)
                    .or_else(|| ranked.iter().find(|&&i| nodes[i].eligible));
                if let Some(&to) = to {
                    load[to] += 1;
                    let reason = if check.owner.is_some() { Reason::Failover } else { Reason::Initial };
                    moves.push(Move {
                        check_id: check.id,
                        from: check.owner.clone(),
                        to: nodes[to].id.clone(),
                        reason,
                    });
                }
            }
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, location: &str) -> NodeView {
        NodeView { id: id.into(), location: location.into(), eligible: true, settled: true }
    }

    fn apply(checks: &mut [CheckView], moves: &[Move]) {
        for m in moves {
            let c = checks.iter_mut().find(|c| c.id == m.check_id).unwrap();
            c.owner = Some(m.to.clone());
        }
    }

    fn fresh(n: i64, locations: &[&str]) -> Vec<CheckView> {
        (1..=n)
            .map(|id| CheckView { id, locations: locations.iter().map(|l| l.to_string()).collect(), owner: None })
            .collect()
    }

    fn loads(checks: &[CheckView]) -> HashMap<String, usize> {
        let mut loads = HashMap::new();
        for c in checks {
            *loads.entry(c.owner.clone().unwrap()).or_default() += 1;
        }
        loads
    }

    #[test]
    fn spreads_evenly_within_the_load_bound() {
        let nodes = vec![node("a", "eu"), node("b", "eu"), node("c", "us"), node("d", "us")];
        let mut checks = fresh(10_000, &[]);
        let moves = plan(&checks, &nodes, 1.25);
        assert_eq!(moves.len(), 10_000);
        apply(&mut checks, &moves);
        for (node, load) in loads(&checks) {
            assert!((2000..=3125).contains(&load), "{node}: {load}");
        }
        assert!(plan(&checks, &nodes, 1.25).is_empty(), "a settled plan is stable");
    }

    #[test]
    fn a_dead_node_loses_only_its_checks_to_its_location_first() {
        let mut nodes = vec![node("a", "eu"), node("b", "eu"), node("c", "us"), node("d", "us")];
        let mut checks = fresh(8000, &[]);
        let moves = plan(&checks, &nodes, 1.25);
        apply(&mut checks, &moves);
        let before: HashMap<i64, String> = checks.iter().map(|c| (c.id, c.owner.clone().unwrap())).collect();
        nodes[0].eligible = false;
        let moves = plan(&checks, &nodes, 1.25);
        assert!(moves.iter().all(|m| m.from.as_deref() == Some("a") && m.reason == Reason::Failover));
        assert_eq!(moves.len(), before.values().filter(|o| *o == "a").count(), "all of a's checks, nothing else");
        // The other eu node takes them first, up to its load bound.
        let room_in_b = (8000.0_f64 * 1.25 / 3.0).ceil() as usize - before.values().filter(|o| *o == "b").count();
        let to_b = moves.iter().filter(|m| m.to == "b").count();
        assert_eq!(to_b, moves.len().min(room_in_b), "{to_b} of {} stayed in eu", moves.len());
    }

    #[test]
    fn a_returning_node_gets_its_checks_back_once_settled() {
        let mut nodes = vec![node("a", "eu"), node("b", "eu"), node("c", "eu")];
        let mut checks = fresh(3000, &[]);
        let moves = plan(&checks, &nodes, 1.25);
        apply(&mut checks, &moves);
        let original: HashMap<i64, String> = checks.iter().map(|c| (c.id, c.owner.clone().unwrap())).collect();
        nodes[0].eligible = false;
        let moves = plan(&checks, &nodes, 1.25);
        apply(&mut checks, &moves);
        // Back, but not settled: it gets nothing yet.
        nodes[0].eligible = true;
        nodes[0].settled = false;
        assert!(plan(&checks, &nodes, 1.25).is_empty());
        nodes[0].settled = true;
        let moves = plan(&checks, &nodes, 1.25);
        assert!(moves.iter().all(|m| m.to == "a" && m.reason == Reason::Handback));
        apply(&mut checks, &moves);
        let now: HashMap<i64, String> = checks.iter().map(|c| (c.id, c.owner.clone().unwrap())).collect();
        assert_eq!(now, original, "every check is back where it was");
    }

    #[test]
    fn locations_are_respected_and_fall_back_when_empty() {
        let mut nodes = vec![node("a", "eu"), node("b", "us")];
        let mut checks = fresh(100, &["us"]);
        let moves = plan(&checks, &nodes, 1.25);
        apply(&mut checks, &moves);
        assert!(checks.iter().all(|c| c.owner.as_deref() == Some("b")), "only us nodes, above the load bound");
        nodes[1].eligible = false;
        let moves = plan(&checks, &nodes, 1.25);
        assert_eq!(moves.len(), 100, "with no node left in us, anywhere is better than nowhere");
        assert!(moves.iter().all(|m| m.to == "a"));
    }

    #[test]
    fn nothing_moves_when_no_node_is_eligible() {
        let mut nodes = vec![node("a", "eu")];
        let mut checks = fresh(10, &[]);
        let moves = plan(&checks, &nodes, 1.25);
        apply(&mut checks, &moves);
        nodes[0].eligible = false;
        assert!(plan(&checks, &nodes, 1.25).is_empty());
    }
}
