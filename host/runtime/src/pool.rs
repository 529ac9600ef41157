//! The instance slots invocations run in, shared between checks and
//! notifiers so that neither can starve the other of the one thing that
//! matters most: a notification going out.
//!
//! The pool has `max_concurrent` slots (the pooling allocator's size).
//! `notifier_slots` of them are reserved: only notifier calls take them.
//! Checks take only the rest, so a crowd of slow checks (a thousand probes
//! of a host that never answers, each holding its slot for its whole
//! timeout) cannot hold back a delivery. A notifier call takes a reserved
//! slot first and a check slot when none is free: deliveries are rare, and
//! idle check capacity may as well carry them.
//!
//! Waiting for a slot has a deadline (`slot_wait`): a call that cannot get
//! one in time fails with [`RunErrorKind::NoSlot`] instead of joining a
//! queue that may only grow. Every wait and every such failure is counted
//! per kind for `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::types::{PluginKind, RunErrorKind};

pub(crate) struct Pool {
    /// Slots any call may take.
    checks: Arc<Semaphore>,
    /// Slots only notifier calls take.
    notifiers: Arc<Semaphore>,
    check_slots: usize,
    notifier_slots: usize,
    wait: Duration,
    counters: Arc<[Counters; 2]>,
}

#[derive(Default)]
struct Counters {
    running: AtomicUsize,
    waited: AtomicU64,
    timed_out: AtomicU64,
}

/// The slot an invocation holds; returned to the pool when dropped.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    kind: PluginKind,
    counters: Arc<[Counters; 2]>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters[index(self.kind)].running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How one kind of call fares in the pool, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotStats {
    /// Calls of this kind holding a slot now.
    pub running: usize,
    /// Slots this kind may take: for checks their share, for notifiers
    /// their reserve plus the checks' share.
    pub slots: usize,
    /// Calls that found no free slot and had to wait, since start.
    pub waited: u64,
    /// Calls that gave up waiting ([`RunErrorKind::NoSlot`]), since start.
    pub timed_out: u64,
}

fn index(kind: PluginKind) -> usize {
    match kind {
        PluginKind::Check => 0,
        PluginKind::Notifier => 1,
    }
}

impl Pool {
    /// `total` slots, `reserved` of them for notifiers.
    pub fn new(total: u32, reserved: Option<u32>, wait: Duration) -> Result<Pool, crate::Error> {
        let total = total.max(1);
        let reserved = reserved.unwrap_or((total / 10).max(1));
        if reserved >= total {
            return Err(crate::Error::Config(format!(
                "notifier_slots ({reserved}) must be less than max_concurrent ({total}): checks need slots too"
            )));
        }
        let (check_slots, notifier_slots) = ((total - reserved) as usize, reserved as usize);
        Ok(Pool {
            checks: Arc::new(Semaphore::new(check_slots)),
            notifiers: Arc::new(Semaphore::new(notifier_slots)),
            check_slots,
            notifier_slots,
            wait,
            counters: Arc::default(),
        })
    }

    pub fn total(&self) -> usize {
        self.check_slots + self.notifier_slots
    }

    pub fn running(&self) -> usize {
        self.counters.iter().map(|c| c.running.load(Ordering::Relaxed)).sum()
    }

    pub fn stats(&self, kind: PluginKind) -> SlotStats {
        let c = &self.counters[index(kind)];
        SlotStats {
            running: c.running.load(Ordering::Relaxed),
            slots: match kind {
                PluginKind::Check => self.check_slots,
                PluginKind::Notifier => self.total(),
            },
            waited: c.waited.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
        }
    }

    /// A slot for a call of `kind`, or [`RunErrorKind::NoSlot`] after
    /// `slot_wait`.
    pub async fn acquire(&self, kind: PluginKind) -> Result<Slot, RunErrorKind> {
        let counters = &self.counters[index(kind)];
        let permit = match self.try_acquire(kind) {
            Some(permit) => permit,
            None => {
                counters.waited.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                match tokio::time::timeout(self.wait, self.wait_for(kind)).await {
                    Ok(permit) => permit,
                    Err(_) => {
                        counters.timed_out.fetch_add(1, Ordering::Relaxed);
                        let slots = self.stats(kind).slots;
                        return Err(RunErrorKind::NoSlot { waited_ms: started.elapsed().as_millis() as u64, slots });
                    }
                }
            }
        };
        counters.running.fetch_add(1, Ordering::Relaxed);
        Ok(Slot { _permit: permit, kind, counters: self.counters.clone() })
    }

    fn try_acquire(&self, kind: PluginKind) -> Option<OwnedSemaphorePermit> {
        if kind == PluginKind::Notifier
            && let Ok(permit) = self.notifiers.clone().try_acquire_owned()
        {
            return Some(permit);
        }
        self.checks.clone().try_acquire_owned().ok()
    }

    async fn wait_for(&self, kind: PluginKind) -> OwnedSemaphorePermit {
        let closed = "the pool's semaphores are never closed";
        match kind {
            PluginKind::Check => self.checks.clone().acquire_owned().await.expect(closed),
            // Whichever frees first; the other wait is dropped, which gives
            // up its place in that queue.
            PluginKind::Notifier => tokio::select! {
                permit = self.notifiers.clone().acquire_owned() => permit.expect(closed),
                permit = self.checks.clone().acquire_owned() => permit.expect(closed),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_never_take_the_notifiers_reserve() {
        let pool = Pool::new(4, Some(1), Duration::from_millis(50)).unwrap();
        let held: Vec<Slot> = futures::future::join_all((0..3).map(|_| pool.acquire(PluginKind::Check)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let refused = pool.acquire(PluginKind::Check).await.err().expect("a fourth check gets no slot");
        assert!(matches!(refused, RunErrorKind::NoSlot { slots: 3, waited_ms } if waited_ms >= 50), "{refused:?}");
        let notifier = pool.acquire(PluginKind::Notifier).await.expect("the reserved slot");
        assert_eq!(pool.stats(PluginKind::Check), SlotStats { running: 3, slots: 3, waited: 1, timed_out: 1 });
        assert_eq!(pool.stats(PluginKind::Notifier), SlotStats { running: 1, slots: 4, waited: 0, timed_out: 0 });
        drop(notifier);
        drop(held);
        assert_eq!(pool.running(), 0);
    }

    #[tokio::test]
    async fn a_notifier_uses_idle_check_slots_and_waits_for_whichever_frees() {
        let pool = Pool::new(3, Some(1), Duration::from_secs(5)).unwrap();
        let reserved = pool.acquire(PluginKind::Notifier).await.unwrap();
        let borrowed = pool.acquire(PluginKind::Notifier).await.unwrap();
        let check = pool.acquire(PluginKind::Check).await.unwrap();
        let waiting = pool.acquire(PluginKind::Notifier);
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending(), "every slot is taken");
        drop(check);
        let third = waiting.await.expect("the freed check slot");
        assert_eq!(pool.stats(PluginKind::Notifier).running, 3);
        drop((reserved, borrowed, third));
    }

    #[test]
    fn the_reserve_leaves_checks_a_share() {
        assert_eq!(Pool::new(1000, None, Duration::ZERO).unwrap().stats(PluginKind::Check).slots, 900);
        assert_eq!(Pool::new(8, None, Duration::ZERO).unwrap().stats(PluginKind::Check).slots, 7);
        let err = Pool::new(4, Some(4), Duration::ZERO).err().unwrap().to_string();
        assert!(err.contains("notifier_slots (4) must be less than max_concurrent (4)"), "{err}");
    }
}
