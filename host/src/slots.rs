//! Fixed slots: when a check runs.
//!
//! A check with interval `i` runs at every absolute time `t` with
//! `t mod i == phase(check)`. The phase comes from a hash of the check's id,
//! so checks with the same interval spread over it instead of all firing
//! at once, and every controller and node computes the same slots: a
//! failover moves a check to another node without shifting its schedule.

use sha2::{Digest, Sha256};

use crate::model::Millis;

/// The check's offset within its interval, in milliseconds.
pub fn phase(check_id: i64, interval_ms: i64) -> i64 {
    let digest = Sha256::digest([b"tocsin-slot:".as_slice(), &check_id.to_le_bytes()].concat());
    let n = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
    (n % interval_ms.max(1) as u64) as i64
}

/// The first slot at or after `t`.
pub fn next_at_or_after(check_id: i64, interval_ms: i64, t: Millis) -> Millis {
    let interval = interval_ms.max(1);
    let phase = phase(check_id, interval);
    let base = t - (t - phase).rem_euclid(interval);
    if base < t { base + interval } else { base }
}

/// The last slot at or before `t`.
pub fn last_at_or_before(check_id: i64, interval_ms: i64, t: Millis) -> Millis {
    let interval = interval_ms.max(1);
    t - (t - phase(check_id, interval)).rem_euclid(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_on_the_phase_and_in_order() {
        for id in [1, 2, 42, 10_000] {
            let interval = 30_000;
            let p = phase(id, interval);
            for t in [0, 1, p, p + 1, 1_700_000_000_000, 1_700_000_000_000 + p] {
                let next = next_at_or_after(id, interval, t);
                let last = last_at_or_before(id, interval, t);
                assert!(next >= t && next - t < interval, "{id} {t}");
                assert!(last <= t && t - last < interval, "{id} {t}");
                assert_eq!(next.rem_euclid(interval), p);
                assert_eq!(last.rem_euclid(interval), p);
                if next == t {
                    assert_eq!(last, t);
                }
            }
        }
    }

    #[test]
    fn phases_spread_over_the_interval() {
        let interval = 60_000;
        let mut buckets = [0u32; 6];
        for id in 0..6000 {
            buckets[(phase(id, interval) / 10_000) as usize] += 1;
        }
        for count in buckets {
            assert!((800..1200).contains(&count), "{buckets:?}");
        }
    }
}
