//! `tocsin bench failover`: SIGKILL a node of a real cluster and time how
//! long its checks go without an owner.
//!
//! A controller and `--nodes` `tocsin node` processes (half in `east`, half
//! in `west`) run http checks against a target in this process, which notes
//! every request's `X-Tocsin-Check`, `-Node` and `-Slot` and when it came.
//! Each round kills one node and measures, for every check it owned, the
//! time from the kill to the first request from another node: detection,
//! reassignment, the new owner hearing of it and running the check. Then
//! the node is restarted and the round waits for its checks to come back.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use super::local::{self, Child, poll};
use super::{FailoverArgs, other};
use crate::cli::CliError;
use crate::model::{Millis, now_ms};

/// One request the target saw.
#[derive(Clone, Debug)]
struct Hit {
    check: String,
    node: String,
    slot: Millis,
    at: Millis,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

async fn target() -> Result<(String, Hits), CliError> {
    let hits: Hits = Arc::default();
    let recorded = hits.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let recorded = recorded.clone();
            async move {
                let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                if h("x-tocsin-attempt") == "scheduled" {
                    let hit = Hit {
                        check: h("x-tocsin-check"),
                        node: h("x-tocsin-node"),
                        slot: h("x-tocsin-slot").parse().unwrap_or(0),
                        at: now_ms(),
                    };
                    recorded.lock().unwrap_or_else(|p| p.into_inner()).push(hit);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(other)?;
    let addr = listener.local_addr().map_err(other)?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}/"), hits))
}

/// `look` at the hits so far, without copying them: the target keeps
/// recording while the benchmark polls.
fn with_hits<R>(hits: &Hits, look: impl FnOnce(&[Hit]) -> R) -> R {
    look(&hits.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Each check's node, by its latest request.
fn owners(hits: &[Hit]) -> HashMap<String, String> {
    let mut latest: HashMap<&str, &Hit> = HashMap::new();
    for hit in hits {
        let entry = latest.entry(&hit.check).or_insert(hit);
        if hit.slot > entry.slot {
            *entry = hit;
        }
    }
    latest.into_iter().map(|(c, h)| (c.to_string(), h.node.clone())).collect()
}

pub async fn failover(args: FailoverArgs) -> Result<(), CliError> {
    if args.nodes < 2 {
        return Err(CliError::Usage("--nodes must be at least 2: a check needs somewhere to go".into()));
    }
    let interval_ms = args.interval.as_millis() as i64;
    let dir = tempfile::tempdir().map_err(other)?;
    let (url, hits) = target().await?;
    let config = "local_node = false\nmin_interval = \"1s\"\n";
    let controller = local::controller(dir.path(), config, args.database_url.as_deref()).await?;
    let token = controller.node_token().await?;
    let location = |i: usize| if i.is_multiple_of(2) { "east" } else { "west" };
    let mut nodes: Vec<Child> = Vec::new();
    for i in 0..args.nodes {
        nodes.push(local::node(dir.path(), &format!("n{i}"), location(i), &controller.url, &token).await?);
    }
    let where_is: HashMap<String, &str> = (0..args.nodes).map(|i| (format!("n{i}"), location(i))).collect();

    eprintln!("creating {} http checks every {:?} on {} nodes", args.checks, args.interval, args.nodes);
    let interval = crate::model::wire::format_duration(args.interval);
    let created = futures::stream::iter(0..args.checks)
        .map(|i| {
            let body = serde_json::json!({
                "name": format!("f{i}"), "plugin": "http", "target": url, "interval": interval,
                "allow": ["127.0.0.1"], "config": {"context_headers": true},
            });
            let admin = &controller.admin;
            async move { admin.send::<serde_json::Value, _>(reqwest::Method::POST, "/api/v1/checks", &body).await }
        })
        .buffer_unordered(16);
    futures::pin_mut!(created);
    while let Some(created) = created.next().await {
        created?;
    }
    // Every node past `handback_after` and the checks spread over them.
    eprintln!("waiting for every node to own checks (handback after 30 s by default)");
    poll("every node owns checks", Duration::from_secs(120), || async {
        let nodes = controller.nodes().await?;
        Ok(nodes.iter().all(|n| n.load > 0 && n.state == crate::cluster::NodeState::Active))
    })
    .await?;

    let mut delays: Vec<i64> = Vec::new();
    let (mut moved_total, mut same_location, mut missed_total) = (0usize, 0usize, 0usize);
    for round in 0..args.rounds {
        let victim = round % args.nodes;
        let victim_name = format!("n{victim}");
        tokio::time::sleep(Duration::from_millis(3 * interval_ms as u64)).await;
        let theirs: Vec<String> = with_hits(&hits, owners)
            .into_iter()
            .filter(|(_, node)| *node == victim_name)
            .map(|(check, _)| check)
            .collect();
        let killed_at = now_ms();
        nodes[victim].kill();
        let detected = poll("the controller moves the dead node's checks", Duration::from_secs(30), || async {
            Ok(controller.nodes().await?.iter().any(|n| n.name == victim_name && n.load == 0))
        })
        .await?;
        let first_from_others = |hits: &[Hit]| -> HashMap<String, Hit> {
            let mut first: HashMap<String, Hit> = HashMap::new();
            for hit in hits.iter().filter(|h| h.at >= killed_at && h.node != victim_name && theirs.contains(&h.check)) {
                first.entry(hit.check.clone()).or_insert_with(|| hit.clone());
            }
            first
        };
        poll("every moved check runs on its new node", Duration::from_secs(60), || async {
            Ok(with_hits(&hits, |seen| first_from_others(seen).len()) == theirs.len())
        })
        .await?;
        // Two more intervals, to see every slot after the kill run by someone.
        tokio::time::sleep(Duration::from_millis(2 * interval_ms as u64 + 2_000)).await;
        let seen = with_hits(&hits, <[Hit]>::to_vec);
        let first = first_from_others(&seen);
        let mut round_delays: Vec<i64> = first.values().map(|h| h.at - killed_at).collect();
        round_delays.sort_unstable();
        same_location += first.values().filter(|h| where_is.get(&h.node) == where_is.get(&victim_name)).count();
        // Slots from one interval before the kill (it may have been running
        // them) to two intervals ago, for the checks that moved.
        let until = now_ms() - 2 * interval_ms;
        let mut missed = 0;
        for check in &theirs {
            let slots: BTreeSet<Millis> = seen.iter().filter(|h| &h.check == check).map(|h| h.slot).collect();
            let Some(&first_slot) = slots.range(killed_at - 2 * interval_ms..).next() else {
                missed += 1;
                continue;
            };
            let mut slot = first_slot;
            while slot <= until {
                if !slots.contains(&slot) {
                    missed += 1;
                }
                slot += interval_ms;
            }
        }
        println!(
            "round {}: killed {victim_name} owning {} of {} checks (1/N = {:.0}); controller moved them after {:.2} s; \
             first run elsewhere p50 {} ms, max {} ms; {} missed slots",
            round + 1,
            theirs.len(),
            args.checks,
            args.checks as f64 / args.nodes as f64,
            detected.as_secs_f64(),
            round_delays.get(round_delays.len() / 2).unwrap_or(&0),
            round_delays.last().unwrap_or(&0),
            missed,
        );
        moved_total += theirs.len();
        missed_total += missed;
        delays.extend(round_delays);

        nodes[victim] = local::node(dir.path(), &victim_name, location(victim), &controller.url, &token).await?;
        let back = poll("the restarted node gets its checks back", Duration::from_secs(120), || async {
            Ok(controller.nodes().await?.iter().any(|n| n.name == victim_name && n.load > 0))
        })
        .await?;
        println!("         restarted: its checks came back after {:.1} s", back.as_secs_f64());
    }
    delays.sort_unstable();
    let pct = |p: f64| {
        delays.get(((delays.len() as f64 * p) as usize).min(delays.len().saturating_sub(1))).copied().unwrap_or(0)
    };
    println!(
        "kill to first run on the new owner: p50 {} ms, p99 {} ms, max {} ms over {} moved checks; \
         {:.0} % stayed in the dead node's location; {} moved per death on average (1/N = {:.0}); {} missed slots",
        pct(0.5),
        pct(0.99),
        delays.last().unwrap_or(&0),
        delays.len(),
        100.0 * same_location as f64 / delays.len().max(1) as f64,
        moved_total / args.rounds.max(1),
        args.checks as f64 / args.nodes as f64,
        missed_total,
    );
    drop(nodes);
    Ok(())
}
