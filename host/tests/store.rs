//! Storage on both backends: results are never counted twice, history is
//! rolled up and pruned, and the database's clock is the one used.

mod support;

use std::time::Duration;

use support::*;
use tocsin::alerting::Rules;
use tocsin::cluster::ClusterConfig;
use tocsin::ingest;
use tocsin::model::{CheckSpec, CheckStatus, now_ms};
use tocsin::store::cluster::Handover;
use tocsin::store::rollup::HOUR_MS;
use tocsin::store::runs::NewRun;
use tocsin::store::{self, Db};

both!(
    a_slot_takes_one_result,
    results_from_a_stale_owner_are_fenced_off,
    history_is_rolled_up_and_pruned,
    the_database_clock_is_used,
    the_scheduling_lease_is_exclusive_and_fenced,
    revoking_the_lease_is_fenced_by_its_epoch,
);

const CLUSTER: ClusterConfig = ClusterConfig {
    heartbeat: Duration::from_secs(1),
    dead_after: Duration::from_secs(3),
    handback_after: Duration::from_secs(30),
    lease_ttl: Duration::from_secs(10),
    load_factor: 1.25,
    catch_up_slots: 3,
};

const RULES: Rules = Rules {
    recover_after: 2,
    reopen_window: Duration::from_secs(1800),
    link_ttl: Duration::from_secs(3600),
    give_up_after: Duration::from_secs(3600),
    public_url: String::new(),
};

/// Gives `check_id` to `node` from `from_slot` on.
async fn hand_over(db: &Db, check_id: i64, node: &str, from_slot: i64) {
    let mut tx = db.writer().begin().await.unwrap();
    store::cluster::hand_over(&mut tx, db, &[Handover { check_id, node: node.into(), from_slot }], now_ms())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn db(backend: Backend) -> (Db, TestDb) {
    let test_db = TestDb::new(backend).await;
    let keys = tocsin::secrets::Keyring::from_keys([tocsin::secrets::Keyring::generate().as_str()]).unwrap();
    (Db::connect(&test_db.url, keys).await.unwrap(), test_db)
}

async fn check(db: &Db, name: &str) -> i64 {
    let spec: CheckSpec =
        serde_json::from_value(serde_json::json!({"name": name, "plugin": "http", "target": "https://example.com"}))
            .unwrap();
    let mut tx = db.writer().begin().await.unwrap();
    let check = store::checks::create(&mut tx, db.keys(), &spec, "test").await.unwrap();
    tx.commit().await.unwrap();
    check.id
}

fn run(check_id: i64, slot: i64, status: CheckStatus, node: &str) -> NewRun {
    NewRun {
        check_id,
        slot,
        seq: 0,
        attempt: "scheduled".into(),
        status,
        error_code: None,
        message: format!("{status} from {node}"),
        metrics: vec![],
        response_ms: Some(10.0),
        node: node.into(),
        location: "here".into(),
        epoch: 1,
        started_at: slot + 5,
        duration_ms: 10,
        logs: vec![],
        refusals: vec![],
    }
}

async fn a_slot_takes_one_result(backend: Backend) {
    let (db, _guard) = db(backend).await;
    let id = check(&db, "web").await;
    hand_over(&db, id, "a", 0).await;
    let slot = 1_700_000_000_000;
    assert_eq!(
        ingest::write(&db, &CLUSTER, &RULES, "a", &[run(id, slot, CheckStatus::Up, "a")]).await.unwrap().accepted,
        1
    );
    // The same slot again in a batch with a new one. No other location is
    // up to confirm the failure, so it counts at once.
    let batch = [run(id, slot, CheckStatus::Down, "a"), run(id, slot + 60_000, CheckStatus::Down, "a")];
    let written = ingest::write(&db, &CLUSTER, &RULES, "a", &batch).await.unwrap();
    assert_eq!((written.accepted, written.refused), (1, 1));
    let runs = store::runs::list(&db, id, 0, i64::MAX, None, 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].node, "a", "the first result of a slot stands");
    let check = store::checks::get(&db, "web").await.unwrap();
    assert_eq!(check.status, CheckStatus::Down);
    assert_eq!(check.status_since, slot + 60_000 + 5);
    // A late result of an older slot does not move the status back.
    ingest::write(&db, &CLUSTER, &RULES, "a", &[run(id, slot - 60_000, CheckStatus::Up, "a")]).await.unwrap();
    assert_eq!(store::checks::get(&db, "web").await.unwrap().status, CheckStatus::Down);
}

async fn history_is_rolled_up_and_pruned(backend: Backend) {
    let (db, _guard) = db(backend).await;
    let id = check(&db, "web").await;
    let now = now_ms();
    let this_hour = now.div_euclid(HOUR_MS) * HOUR_MS;
    let mut runs = Vec::new();
    for i in 0..60 {
        // Two hours ago: all up. One hour ago: one in four down, one error.
        runs.push(run(id, this_hour - 2 * HOUR_MS + i * 60_000, CheckStatus::Up, "a"));
        let status = match i {
            0 => CheckStatus::Error,
            i if i % 4 == 1 => CheckStatus::Down,
            _ => CheckStatus::Up,
        };
        runs.push(run(id, this_hour - HOUR_MS + i * 60_000, status, "a"));
    }
    hand_over(&db, id, "a", 0).await;
    ingest::write(&db, &CLUSTER, &RULES, "a", &runs).await.unwrap();
    store::rollup::roll_up(&db, now).await.unwrap();
    // Rolling up again changes nothing.
    store::rollup::roll_up(&db, now).await.unwrap();
    let series = store::rollup::series(&db, id, now - 3 * HOUR_MS, now).await.unwrap();
    assert_eq!(series.len(), 2, "{series:?}");
    assert_eq!((series[0].runs, series[0].up, series[0].availability), (60, 60, Some(1.0)));
    assert_eq!((series[1].runs, series[1].down, series[1].errors), (60, 15, 1));
    assert_eq!(series[1].availability, Some(44.0 / 59.0), "errors are not counted either way");
    assert_eq!(series[1].response_avg_ms, Some(10.0));

    // Runs older than an hour go; their hours stay.
    let pruned = store::rollup::prune(&db, this_hour - HOUR_MS, 0).await.unwrap();
    assert_eq!(pruned, 60);
    assert_eq!(store::runs::count(&db, id).await.unwrap(), 60);
    assert_eq!(store::rollup::series(&db, id, now - 3 * HOUR_MS, now).await.unwrap().len(), 2);
    store::rollup::prune(&db, 0, this_hour).await.unwrap();
    assert_eq!(store::rollup::series(&db, id, now - 3 * HOUR_MS, now).await.unwrap().len(), 0);
}

async fn the_database_clock_is_used(backend: Backend) {
    let (db, _guard) = db(backend).await;
    let db_now = db.now_ms().await.unwrap();
    assert!((db_now - now_ms()).abs() < 2_000, "database clock {db_now} vs ours {}", now_ms());
    let node = store::cluster::Enrollment {
        id: "n1",
        name: "node-1",
        location: "eu",
        version: "0.1.0",
        key_hash: "in-process",
    };
    store::cluster::enroll(&db, &node, 3000).await.unwrap();
    let first = store::cluster::nodes(&db).await.unwrap().0[0].last_heartbeat;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store::cluster::heartbeat(&db, "n1", "{}", 3000).await.unwrap(), Some(0));
    let (nodes, now) = store::cluster::nodes(&db).await.unwrap();
    assert!(nodes[0].last_heartbeat > first, "{first} -> {}", nodes[0].last_heartbeat);
    assert!(now >= nodes[0].last_heartbeat);
    assert_eq!(store::cluster::heartbeat(&db, "nobody", "{}", 3000).await.unwrap(), None, "unknown nodes are told so");
    db.ping().await.unwrap();
    db.set_meta("k", "v").await.unwrap();
    assert_eq!(db.meta("k").await.unwrap().as_deref(), Some("v"));
}

async fn results_from_a_stale_owner_are_fenced_off(backend: Backend) {
    let (db, _guard) = db(backend).await;
    let id = check(&db, "web").await;
    let t = 1_700_000_000_000;
    hand_over(&db, id, "a", t).await;
    let mut stale = run(id, t - 60_000, CheckStatus::Up, "a");
    assert_eq!(
        ingest::write(&db, &CLUSTER, &RULES, "a", &[stale.clone()]).await.unwrap().accepted,
        0,
        "before the node's first slot"
    );
    assert_eq!(
        ingest::write(&db, &CLUSTER, &RULES, "a", &[run(id, t, CheckStatus::Up, "a")]).await.unwrap().accepted,
        1
    );

    // b takes over from t + 120s (epoch 2); a may still report slots before.
    hand_over(&db, id, "b", t + 120_000).await;
    let mut late_a = run(id, t + 60_000, CheckStatus::Up, "a");
    late_a.epoch = 1;
    let mut after_a = run(id, t + 120_000, CheckStatus::Up, "a");
    after_a.epoch = 1;
    let mut b = run(id, t + 120_000, CheckStatus::Up, "b");
    b.epoch = 2;
    let written = ingest::write(&db, &CLUSTER, &RULES, "a", &[late_a, after_a]).await.unwrap();
    assert_eq!(
        (written.accepted, written.refused),
        (1, 1),
        "a's slot before the handover stands; its slot after does not"
    );
    let mut forged = b.clone();
    forged.slot = t + 180_000;
    assert_eq!(
        ingest::write(&db, &CLUSTER, &RULES, "a", &[forged]).await.unwrap().accepted,
        0,
        "a cannot report b's slots, even naming b's epoch"
    );
    assert_eq!(ingest::write(&db, &CLUSTER, &RULES, "b", &[b]).await.unwrap().accepted, 1);
    let mut ahead = run(id, now_ms() + 60_000, CheckStatus::Up, "b");
    ahead.epoch = 2;
    assert_eq!(
        ingest::write(&db, &CLUSTER, &RULES, "b", &[ahead]).await.unwrap().accepted,
        0,
        "not even the owner reports a slot that has not come"
    );
    let runs = store::runs::list(&db, id, 0, i64::MAX, None, 10).await.unwrap();
    let by_slot: Vec<(i64, &str)> = runs.iter().map(|r| (r.slot - t, r.node.as_str())).collect();
    assert_eq!(by_slot, [(120_000, "b"), (60_000, "a"), (0, "a")]);

    // Once c owns it (epoch 3), a's epoch is too old for anything.
    hand_over(&db, id, "c", t + 240_000).await;
    stale.slot = t + 180_000;
    stale.epoch = 1;
    assert_eq!(ingest::write(&db, &CLUSTER, &RULES, "a", &[stale]).await.unwrap().accepted, 0);
}

async fn the_scheduling_lease_is_exclusive_and_fenced(backend: Backend) {
    let (db, _guard) = db(backend).await;
    let first = store::cluster::acquire_lease(&db, "scheduler", "one", 10_000).await.unwrap();
    assert_eq!((first.holder.as_str(), first.epoch), ("one", 1));
    let renewed = store::cluster::acquire_lease(&db, "scheduler", "one", 10_000).await.unwrap();
    assert_eq!(renewed.epoch, 1, "renewing keeps the epoch");
    let other = store::cluster::acquire_lease(&db, "scheduler", "two", 10_000).await.unwrap();
    assert_eq!(other.holder, "one", "a live lease is not taken");

    let mut tx = db.writer().begin().await.unwrap();
    assert!(store::cluster::fence(&mut tx, "scheduler", "one", 1).await.unwrap());
    tx.commit().await.unwrap();

    let mut tx = db.writer().begin().await.unwrap();
    store::cluster::revoke_lease(&mut tx, db.dialect(), "scheduler", 1, None, 10_000).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    let taken = store::cluster::acquire_lease(&db, "scheduler", "two", 10_000).await.unwrap();
    assert_eq!((taken.holder.as_str(), taken.epoch), ("two", 3), "revoking and taking each move the epoch on");
    let mut tx = db.writer().begin().await.unwrap();
    assert!(!store::cluster::fence(&mut tx, "scheduler", "one", 1).await.unwrap(), "the old holder is fenced off");
    drop(tx);

    // A lease that lapses can be taken.
    let short = store::cluster::acquire_lease(&db, "other", "one", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let after = store::cluster::acquire_lease(&db, "other", "two", 10_000).await.unwrap();
    assert_eq!((after.holder.as_str(), after.epoch), ("two", short.epoch + 1));
}

async fn revoking_the_lease_is_fenced_by_its_epoch(backend: Backend) {
    let (db, _guard) = db(backend).await;
    let held = store::cluster::acquire_lease(&db, "scheduler", "one", 10_000).await.unwrap();
    let revoke = async |epoch: i64| {
        let mut tx = db.writer().begin().await.unwrap();
        let done =
            store::cluster::revoke_lease(&mut tx, db.dialect(), "scheduler", epoch, Some("two"), 10_000).await.unwrap();
        tx.commit().await.unwrap();
        done
    };

    // A watchdog that saw an older epoch hits nobody.
    assert_eq!(revoke(held.epoch - 1).await, None);
    assert_eq!(store::cluster::lease(&db, "scheduler").await.unwrap(), Some(held.clone()), "nothing changed");

    let (before, after) = revoke(held.epoch).await.expect("the epoch is current");
    assert_eq!(before, held);
    assert_eq!((after.holder.as_str(), after.epoch), ("two", held.epoch + 1));
    assert!(after.expires_at > db.now_ms().await.unwrap(), "handed over live, not lapsed");
    let renewed = store::cluster::acquire_lease(&db, "scheduler", "two", 10_000).await.unwrap();
    assert_eq!((renewed.holder.as_str(), renewed.epoch), ("two", held.epoch + 1), "the new holder renews it");
    let refused = store::cluster::acquire_lease(&db, "scheduler", "one", 10_000).await.unwrap();
    assert_eq!(refused.holder, "two", "the old holder cannot take it back");
    let mut tx = db.writer().begin().await.unwrap();
    assert!(
        !store::cluster::fence(&mut tx, "scheduler", "one", held.epoch).await.unwrap(),
        "the old holder is fenced off"
    );
    assert!(store::cluster::fence(&mut tx, "scheduler", "two", held.epoch + 1).await.unwrap());
    drop(tx);
}
