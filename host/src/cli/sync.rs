//! `tocsin sync`: where this site stands, and the operator's levers for
//! redundant sites (follow, recover, promote). Every command talks to the
//! site given by `--server`; the site then talks to its source itself.

use std::time::{Duration, Instant};

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::output::{self, ago};
use super::{CliError, Client, Output};
use crate::sync::Role;
use crate::sync::apply::Report;
use crate::sync::peers::SyncStatus;
use crate::sync::site::Site;

#[derive(Subcommand)]
pub enum SyncCommand {
    /// This site's role, epoch and feed position; while passive, how following goes.
    Status,
    /// Make this site passive and follow another from where this one stands.
    Follow {
        /// A controller of the site to follow.
        #[arg(long)]
        from: String,
        /// Return at once instead of showing progress until caught up.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this long (the site goes on following).
        #[arg(long, default_value = "10m", value_parser = crate::model::wire::parse_duration)]
        timeout: Duration,
    },
    /// Reset this site to another's state (discarding what only this one had) and follow it.
    Recover {
        #[arg(long)]
        from: String,
    },
    /// Make this passive site active (after its source is lost for good).
    Promote {
        /// Refuse unless the site is still at this epoch.
        #[arg(long)]
        epoch: Option<i64>,
    },
}

pub async fn run(client: &Client, out: Output, command: SyncCommand) -> Result<(), CliError> {
    match command {
        SyncCommand::Status => {
            let status: SyncStatus = client.get("/api/v1/sync/status").await?;
            show_status(out, &status);
        }
        SyncCommand::Follow { from, no_wait, timeout } => {
            let site: Site = client.send(Method::POST, "/api/v1/sync/follow", &json!({ "from": from })).await?;
            eprintln!("Site {} is passive now, following {from} from change {}.", site.name, site.head);
            if !no_wait {
                wait_caught_up(client, timeout).await?;
            }
            let status: SyncStatus = client.get("/api/v1/sync/status").await?;
            show_status(out, &status);
        }
        SyncCommand::Recover { from } => {
            eprintln!("Taking the state of {from}...");
            let report: Report = client.send(Method::POST, "/api/v1/sync/recover", &json!({ "from": from })).await?;
            show_report(out, &report);
        }
        SyncCommand::Promote { epoch } => {
            let site: Site = client.send(Method::POST, "/api/v1/sync/promote", &json!({ "epoch": epoch })).await?;
            output::details(
                out,
                &site,
                vec![
                    ("site", site.name.clone()),
                    ("role", "active".into()),
                    ("epoch", site.epoch.to_string()),
                    ("feed at", site.head.to_string()),
                ],
            );
        }
    }
    Ok(())
}

fn show_status(out: Output, status: &SyncStatus) {
    let site = &status.site;
    let mut fields = vec![
        ("site", site.name.clone()),
        ("role", format!("{:?}", site.role).to_lowercase()),
        ("ready", status.ready.to_string()),
        ("epoch", site.epoch.to_string()),
        ("feed at", format!("{} (epoch {})", site.head, site.head_epoch)),
    ];
    if let Some(source) = &site.source {
        fields.push(("follows", source.clone()));
    }
    if let Some(f) = &status.following {
        fields.push(("source at", f.source_head.map(|h| h.to_string()).unwrap_or_else(|| "not heard yet".into())));
        if let Some(head) = f.source_head {
            fields.push(("behind by", format!("{} changes", (head - site.head).max(0))));
        }
        fields.push(("last contact", f.last_contact.map(ago).unwrap_or_else(|| "never".into())));
        if let Some(error) = &f.error {
            fields.push(("problem", error.clone()));
        }
    }
    output::details(out, status, fields);
}

/// Shows progress until the site holds everything its source held.
async fn wait_caught_up(client: &Client, timeout: Duration) -> Result<(), CliError> {
    let started = Instant::now();
    let mut shown = Instant::now() - Duration::from_secs(1);
    loop {
        let status: SyncStatus = client.get("/api/v1/sync/status").await?;
        let following = status.following.clone().unwrap_or_default();
        if let Some(error) = following.error.as_ref().filter(|_| following.diverged) {
            return Err(CliError::Other(format!("following stopped: {error}")));
        }
        if let Some(head) = following.source_head {
            if status.site.head >= head && status.site.role == Role::Passive {
                eprintln!("Caught up: {} changes held, in {:.1?}.", status.site.head, started.elapsed());
                return Ok(());
            }
            if shown.elapsed() >= Duration::from_secs(1) {
                eprintln!("  {} of {head} changes applied", status.site.head);
                shown = Instant::now();
            }
        } else if let Some(error) = &following.error
            && shown.elapsed() >= Duration::from_secs(1)
        {
            eprintln!("  waiting for the source: {error}");
            shown = Instant::now();
        }
        if started.elapsed() > timeout {
            return Err(CliError::Other(format!(
                "not caught up after {timeout:?}; the site goes on following (`tocsin sync status`)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn show_report(out: Output, report: &Report) {
    if out == Output::Json {
        output::details(out, report, Vec::new());
        return;
    }
    if report.discarded.is_empty() {
        println!("Nothing discarded: this site held nothing the source did not.");
    } else {
        println!("Discarded {} objects this site held:", report.discarded.len());
        output::print(out, report, &["KIND", "NAME", "WHY"], |r| {
            r.discarded.iter().map(|d| vec![d.kind.clone(), d.name.clone(), d.why.clone()]).collect()
        });
    }
    println!(
        "Added {}, kept {} unchanged. The feed stood at change {} (epoch {}) here.",
        report.added, report.unchanged, report.was_at.0, report.was_at.1
    );
    if let Some(site) = &report.site {
        println!(
            "Site {} is passive, following {} from change {} (epoch {}).",
            site.name,
            site.source.as_deref().unwrap_or("?"),
            site.head,
            site.head_epoch
        );
    }
}
