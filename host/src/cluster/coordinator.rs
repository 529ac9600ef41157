//! The coordinator: every controller runs one; the one holding the
//! scheduling lease keeps every active check owned by a live node.
//!
//! Each tick it renews the lease (against the database clock), reads the
//! nodes, and, when something changed, plans moves with [`assign::plan`]
//! and writes them in a transaction fenced by the lease epoch. A check
//! taken from a dead node starts at its first slot without a result (the
//! new owner catches up at once); one handed over by a live node (drained,
//! or giving a check back) moves at a slot boundary a few seconds ahead, so
//! the old owner stops exactly where the new one starts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::assign::{self, CheckView, NodeView, Reason};
use super::bulletin::Bulletin;
use super::{ClusterConfig, NodeState, SCHEDULER_LEASE};
use crate::metrics::Metrics;
use crate::model::Millis;
use crate::store::cluster::{Handover, NodeRow};
use crate::store::{self, Db};
use crate::{ingest, slots};

const TICK: Duration = Duration::from_millis(250);
/// How far ahead a handover between live nodes is scheduled: time for both
/// to hear of it.
const HANDOVER_MARGIN_MS: i64 = 3_000;
/// Handbacks are looked for this often even when nothing else changed.
const REPLAN: Duration = Duration::from_secs(5);
/// How far before the newest change already delivered a check's change is
/// still delivered again: `updated_at` is the writing controller's clock
/// at the start of its transaction, so a change that commits late, or comes
/// from a controller whose clock is behind, can be older than one seen.
const REDELIVER_MS: i64 = 10_000;

pub struct Coordinator {
    pub db: Db,
    pub config: ClusterConfig,
    /// This controller's name in the lease.
    pub me: String,
    pub metrics: Arc<Metrics>,
    pub bulletin: Arc<Bulletin>,
    /// Woken when checks change through this controller's API.
    pub changes: Arc<Notify>,
    pub rules: crate::alerting::Rules,
    /// Only an active site schedules.
    pub site: crate::sync::SiteWatch,
}

/// What the lease holder keeps between ticks.
struct Leader {
    epoch: i64,
    /// Nodes are not judged dead before this: they need one dead timeout
    /// after we took the lease, or after the database came back, to report.
    /// Unset until a pass has read the nodes since then.
    judge_from: Option<Instant>,
    checks: Vec<CheckRow>,
    checks_version: Option<(i64, Option<i64>)>,
    owners: HashMap<i64, String>,
    last_plan: Option<(Instant, u64)>,
    /// The newest `updated_at` of a check whose owners were told; none
    /// until the first pass, which tells every owner (a previous holder may
    /// have died before it did).
    delivered: Option<Millis>,
    /// A fenced write failed: the lease moved on, so look at it again now.
    fenced_off: bool,
}

#[derive(sqlx::FromRow)]
struct CheckRow {
    id: i64,
    locations: String,
    interval_ms: i64,
}

impl Coordinator {
    pub async fn run(self, cancel: CancellationToken) {
        let mut leader: Option<Leader> = None;
        let mut renewed: Option<Instant> = None;
        let renew_every = self.config.lease_ttl / 3;
        let mut changed = false;
        loop {
            if !self.site.is_serving() {
                if leader.take().is_some() {
                    tracing::warn!(controller = %self.me, "this site is passive: giving up the scheduling lease");
                    let _ = store::cluster::release_lease(&self.db, SCHEDULER_LEASE, &self.me).await;
                }
                renewed = None;
            } else if renewed.is_none_or(|t| t.elapsed() >= renew_every) || leader.as_ref().is_none_or(|l| l.fenced_off)
            {
                match store::cluster::acquire_lease(
                    &self.db,
                    SCHEDULER_LEASE,
                    &self.me,
                    self.config.lease_ttl.as_millis() as i64,
                )
                .await
                {
                    // Also the way in for a controller the lease was handed
                    // to (revoked from a wedged holder): it finds itself the
                    // holder with an epoch it did not take, and starts afresh.
                    Ok(lease) if lease.holder == self.me => {
                        renewed = Some(Instant::now());
                        if let Some(l) = leader.as_mut() {
                            l.fenced_off = false;
                        }
                        if leader.as_ref().is_none_or(|l| l.epoch != lease.epoch) {
                            tracing::info!(controller = %self.me, epoch = lease.epoch, "holding the scheduling lease");
                            leader = Some(Leader {
                                epoch: lease.epoch,
                                judge_from: None,
                                checks: Vec::new(),
                                checks_version: None,
                                owners: HashMap::new(),
                                last_plan: None,
                                delivered: None,
                                fenced_off: false,
                            });
                            match store::cluster::owners(&self.db).await {
                                Ok(owners) => {
                                    if let Some(l) = leader.as_mut() {
                                        l.owners = owners.into_iter().map(|o| (o.check_id, o.node_id)).collect();
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "reading assignments failed");
                                    leader = None;
                                }
                            }
                        }
                    }
                    Ok(lease) => {
                        if leader.take().is_some() {
                            tracing::warn!(controller = %self.me, holder = %lease.holder, "lost the scheduling lease");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "renewing the scheduling lease failed");
                        // Act only while the lease we last renewed still stands.
                        if renewed.is_none_or(|t| t.elapsed() + renew_every >= self.config.lease_ttl)
                            && leader.take().is_some()
                        {
                            tracing::warn!(controller = %self.me, "stepping down: the lease could not be renewed");
                        }
                    }
                }
            }
            if let Some(l) = leader.as_mut()
                && let Err(e) = self.tick(l, std::mem::take(&mut changed)).await
            {
                tracing::warn!(error = %e, "scheduling pass failed");
                l.judge_from = None;
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = self.changes.notified() => changed = true,
                _ = cancel.cancelled() => break,
            }
        }
        if leader.is_some() {
            // Let another controller take over at once.
            let _ = store::cluster::release_lease(&self.db, SCHEDULER_LEASE, &self.me).await;
        }
    }

    async fn tick(&self, leader: &mut Leader, changed: bool) -> store::Result<()> {
        // A wedged holder: keeps its lease and answers, plans and delivers nothing.
        #[cfg(feature = "testing")]
        fail::fail_point!("scheduler-wedged", |_| Ok(()));
        ingest::decide_expired(&self.db, &self.rules).await?;
        let version: (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MAX(updated_at) FROM checks").fetch_one(self.db.reader()).await?;
        let checks_changed = changed || leader.checks_version != Some(version);
        if checks_changed {
            leader.checks = sqlx::query_as("SELECT id, locations, interval_ms FROM checks WHERE paused = 0")
                .fetch_all(self.db.reader())
                .await?;
            if !self.deliver_changes(leader, version.1).await? {
                return Ok(());
            }
            leader.checks_version = Some(version);
        }
        let (nodes, now) = store::cluster::nodes(&self.db).await?;
        // Timed from the first read that succeeds: while the database was
        // unreachable, heartbeats could not be recorded either.
        let grace = self.config.dead_after + self.config.heartbeat;
        let judging = Instant::now() >= *leader.judge_from.get_or_insert_with(|| Instant::now() + grace);
        let views: Vec<NodeView> = nodes.iter().map(|n| self.view(n, now, judging)).collect();
        let fingerprint = fingerprint(&views);
        let due = leader.last_plan.is_none_or(|(at, print)| print != fingerprint || at.elapsed() >= REPLAN);
        if !checks_changed && !due {
            return Ok(());
        }
        leader.last_plan = Some((Instant::now(), fingerprint));

        let checks: Vec<CheckView> = leader
            .checks
            .iter()
            .map(|c| CheckView {
                id: c.id,
                locations: store::split_list(&c.locations),
                owner: leader.owners.get(&c.id).cloned(),
            })
            .collect();
        let moves = assign::plan(&checks, &views, self.config.load_factor);
        if moves.is_empty() {
            return Ok(());
        }

        // An evicted owner is as good as dead: its checks resume at once,
        // not at a handover boundary it would be trusted to keep.
        let alive = |id: &str| {
            nodes.iter().any(|n| n.id == id && n.evicted == 0 && now - n.last_heartbeat <= self.config.dead_after_ms())
        };
        let intervals: HashMap<i64, i64> = leader.checks.iter().map(|c| (c.id, c.interval_ms)).collect();
        let lost: Vec<i64> =
            moves.iter().filter(|m| m.from.as_deref().is_some_and(|f| !alive(f))).map(|m| m.check_id).collect();
        let last_slots: HashMap<i64, Option<i64>> =
            store::cluster::last_slots(&self.db, &lost).await?.into_iter().collect();
        let handovers: Vec<Handover> = moves
            .iter()
            .map(|m| {
                let interval = intervals[&m.check_id];
                let from_slot = match m.from.as_deref() {
                    None => slots::next_at_or_after(m.check_id, interval, now),
                    Some(from) if alive(from) => {
                        slots::next_at_or_after(m.check_id, interval, now + HANDOVER_MARGIN_MS)
                    }
                    Some(_) => {
                        self.resume_slot(m.check_id, interval, last_slots.get(&m.check_id).copied().flatten(), now)
                    }
                };
                Handover { check_id: m.check_id, node: m.to.clone(), from_slot }
            })
            .collect();

        let mut tx = self.db.writer().begin().await?;
        if !store::cluster::fence(&mut tx, SCHEDULER_LEASE, &self.me, leader.epoch).await? {
            tracing::warn!(controller = %self.me, epoch = leader.epoch, "the scheduling lease moved on; not applying the plan");
            leader.judge_from = None;
            leader.fenced_off = true;
            return Ok(());
        }
        store::cluster::hand_over(&mut tx, &self.db, &handovers, now).await?;
        store::cluster::drop_orphans(&mut tx).await?;
        tx.commit().await?;
        self.bulletin.poke();

        let mut summary: HashMap<(Option<String>, Reason), usize> = HashMap::new();
        for m in &moves {
            leader.owners.insert(m.check_id, m.to.clone());
            *summary.entry((m.from.clone(), m.reason)).or_default() += 1;
            self.metrics
                .moves
                .get_or_create(&crate::metrics::ReasonLabels { reason: format!("{:?}", m.reason).to_lowercase() })
                .inc();
        }
        for ((from, reason), count) in summary {
            let from = from.as_deref().map(|f| node_name(&nodes, f)).unwrap_or("nobody");
            tracing::info!(checks = count, from = %from, reason = ?reason, "checks moved");
        }
        Ok(())
    }

    /// Tells the owners of checks changed since the last delivery (all of
    /// them, the first time) to fetch their work again, and drops the
    /// assignments of deleted checks, in a transaction fenced by the lease.
    /// False when the lease moved on.
    async fn deliver_changes(&self, leader: &mut Leader, newest: Option<Millis>) -> store::Result<bool> {
        let since = leader.delivered.map_or(i64::MIN, |d| d - REDELIVER_MS);
        let mut tx = self.db.writer().begin().await?;
        if !store::cluster::fence(&mut tx, SCHEDULER_LEASE, &self.me, leader.epoch).await? {
            tracing::warn!(controller = %self.me, epoch = leader.epoch, "the scheduling lease moved on; not delivering check changes");
            leader.judge_from = None;
            leader.fenced_off = true;
            return Ok(false);
        }
        let told = store::cluster::bump_owners(&mut tx, since).await?;
        let dropped = store::cluster::drop_orphans(&mut tx).await?;
        tx.commit().await?;
        self.bulletin.poke();
        leader.delivered = leader.delivered.max(newest);
        tracing::debug!(nodes = told, dropped, "check changes delivered");
        Ok(true)
    }

    fn view(&self, node: &NodeRow, now: Millis, judging: bool) -> NodeView {
        let state = NodeState::of(node, now, &self.config);
        let alive = state != NodeState::Dead || !judging;
        NodeView {
            id: node.id.clone(),
            location: node.location.clone(),
            eligible: alive && node.drained == 0 && node.evicted == 0,
            settled: state == NodeState::Active,
        }
    }

    /// Where a check taken from a dead owner resumes: its first slot with
    /// no result, no further back than the catch-up bound.
    fn resume_slot(&self, check_id: i64, interval: i64, last_slot: Option<Millis>, now: Millis) -> Millis {
        let current = slots::last_at_or_before(check_id, interval, now);
        let earliest = current - (self.config.catch_up_slots.max(1) - 1) * interval;
        match last_slot {
            Some(last) => (last + interval).max(earliest),
            None => current,
        }
    }
}

fn node_name<'a>(nodes: &'a [NodeRow], id: &'a str) -> &'a str {
    nodes.iter().find(|n| n.id == id).map(|n| n.name.as_str()).unwrap_or(id)
}

fn fingerprint(views: &[NodeView]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in views {
        (&v.id, v.eligible, v.settled).hash(&mut h);
    }
    h.finish()
}
