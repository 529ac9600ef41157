//! Client commands for alerting: contacts, policies, gateways, routes,
//! maintenance windows, silences, incidents and inbound alerts.

use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::output::{ago, details, print, truncate};
use super::{CliError, Client, Output};
use crate::alerting::model::{GatewayTotals, Incident};
use crate::model::wire::{format_duration, format_ms, parse_duration, parse_time};

#[derive(Subcommand)]
pub enum ContactCommand {
    /// Add a contact (admin): `tocsin contact add ada --channel voice=+15550100 --channel email=ada@example.com`.
    Add {
        name: String,
        #[arg(long, default_value = "")]
        full_name: String,
        /// `channel=address`; channels: voice, sms, chat, email, webhook. Repeatable, in order of use.
        #[arg(long = "channel", required = true, value_name = "CHANNEL=ADDRESS")]
        channels: Vec<String>,
    },
    List,
    /// Delete a contact no policy names (admin).
    Rm {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Add an escalation policy: `--step ada:voice@5m --step bob,carol@10m --repeat 2 --fallback ada,bob,carol@15m`.
    Add {
        name: String,
        /// Contacts (`name` or `name:channel`, comma-separated) and how long to wait, `@5m`. Repeatable, in order.
        #[arg(long = "step", required = true, value_name = "CONTACTS@TIMEOUT")]
        steps: Vec<String>,
        /// How many times to go through the steps again after the last (0-9).
        #[arg(long, default_value_t = 0)]
        repeat: u32,
        /// Notified once every pass is done and nobody accepted.
        #[arg(long, value_name = "CONTACTS@TIMEOUT")]
        fallback: Option<String>,
    },
    List,
    Show {
        name: String,
    },
    Rm {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum GatewayCommand {
    /// Add a gateway (admin): an instance of a notifier plugin with its config.
    Add {
        name: String,
        /// The notifier plugin: webhook, twilio, vonage, email, slack, pagerduty, or an uploaded one.
        #[arg(long)]
        plugin: String,
        /// The plugin's configuration as a JSON object.
        #[arg(long, value_name = "JSON")]
        config: Option<String>,
        /// One configuration field, `key=value` (JSON if it parses, else text). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A host or range the plugin may reach beyond those its config names. Repeatable.
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// How long one delivery may take.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: Duration,
    },
    List,
    Rm {
        name: String,
    },
    /// Sent, failed, failed over and latency per gateway.
    Totals,
}

#[derive(Subcommand)]
pub enum RouteCommand {
    /// Add a route (admin): which gateways deliver a channel, primary first.
    Add {
        name: String,
        #[arg(long)]
        channel: String,
        /// A gateway, in precedence order. Repeatable.
        #[arg(long = "gateway", required = true)]
        gateways: Vec<String>,
        /// Only for alerts from these sources (globs such as `check:db-*`). Repeatable.
        #[arg(long = "source")]
        sources: Vec<String>,
    },
    List,
    Rm {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum MaintenanceCommand {
    /// Hold back notifications in a window: one-off (`--from --until`) or recurring (`--schedule --duration`).
    Add {
        name: String,
        /// Sources it covers (globs); none: everything. Repeatable.
        #[arg(long = "source")]
        sources: Vec<String>,
        #[arg(long, value_name = "RFC3339")]
        from: Option<String>,
        #[arg(long, value_name = "RFC3339")]
        until: Option<String>,
        /// When it starts, as cron in UTC: `0 2 * * SUN`.
        #[arg(long)]
        schedule: Option<String>,
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        #[arg(long, default_value = "")]
        comment: String,
    },
    List,
    Rm {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum SilenceCommand {
    /// Hold back notifications for sources for a while.
    Add {
        /// Sources (globs; `*` for all). Repeatable.
        #[arg(long = "source", required = true)]
        sources: Vec<String>,
        /// For how long.
        #[arg(long = "for", value_parser = parse_duration)]
        duration: Duration,
        #[arg(long, default_value = "")]
        comment: String,
    },
    List,
    /// End a silence now.
    Rm {
        id: i64,
    },
}

#[derive(Subcommand)]
pub enum IncidentCommand {
    /// List incidents, newest first.
    List {
        /// triggered, acknowledged, resolved, or open.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show an incident with its timeline.
    Show {
        id: i64,
    },
    /// Accept an incident (as yourself, or on behalf of a contact); its escalation stops.
    Ack {
        id: i64,
        #[arg(long)]
        contact: Option<String>,
    },
    /// Reject on behalf of a contact: their step may end at once.
    Reject {
        id: i64,
        #[arg(long)]
        contact: String,
    },
    Resolve {
        id: i64,
    },
}

#[derive(Subcommand)]
pub enum AlertCommand {
    /// Raise (or `--resolve`) an alert; with several `--server`s each is tried until one accepts.
    Send(SendArgs),
}

#[derive(Args)]
pub struct SendArgs {
    /// What raises it, such as `billing`.
    #[arg(long)]
    source: String,
    /// Alerts with the same source and key are one incident.
    #[arg(long)]
    key: String,
    /// One line (needed unless --resolve).
    #[arg(long, default_value = "")]
    summary: String,
    #[arg(long, default_value = "")]
    details: String,
    /// critical, error, warning or info.
    #[arg(long, default_value = "critical")]
    severity: String,
    /// The escalation policy (default: the one named `default`).
    #[arg(long)]
    policy: Option<String>,
    /// Resolve the alert instead.
    #[arg(long)]
    resolve: bool,
}

fn name_list(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

fn step(text: &str) -> Result<Value, CliError> {
    let (contacts, timeout) = text
        .rsplit_once('@')
        .ok_or_else(|| CliError::Usage(format!("step {text:?}: use contacts@timeout, such as ada:voice,bob@5m")))?;
    let timeout = parse_duration(timeout).map_err(CliError::Usage)?;
    let notify: Vec<&str> = contacts.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
    Ok(json!({"notify": notify, "timeout": format_duration(timeout)}))
}

fn key_value_config(config: Option<&str>, set: &[String]) -> Result<Value, CliError> {
    let mut value: Value = match config {
        Some(text) => serde_json::from_str(text).map_err(|e| CliError::Usage(format!("--config is not JSON: {e}")))?,
        None => json!({}),
    };
    let object = value.as_object_mut().ok_or_else(|| CliError::Usage("--config must be a JSON object".into()))?;
    for pair in set {
        let (k, v) = pair.split_once('=').ok_or_else(|| CliError::Usage(format!("--set {pair:?}: use key=value")))?;
        object.insert(k.to_string(), serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string())));
    }
    Ok(value)
}

async fn create(client: &Client, out: Output, path: &str, body: Value, what: &str) -> Result<(), CliError> {
    let created: Value = client.send(Method::POST, path, &body).await?;
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(&created).unwrap_or_default()),
        Output::Table => println!("Created {what}."),
    }
    Ok(())
}

async fn remove(client: &Client, path: &str, what: &str) -> Result<(), CliError> {
    client.send_empty(Method::DELETE, path).await?;
    println!("Deleted {what}.");
    Ok(())
}

pub async fn contact(client: &Client, out: Output, cmd: ContactCommand) -> Result<(), CliError> {
    match cmd {
        ContactCommand::Add { name, full_name, channels } => {
            let channels: Vec<Value> = channels
                .iter()
                .map(|c| {
                    let (channel, address) = c
                        .split_once('=')
                        .ok_or_else(|| CliError::Usage(format!("--channel {c:?}: use channel=address")))?;
                    Ok(json!({"channel": channel, "address": address}))
                })
                .collect::<Result<_, CliError>>()?;
            let body = json!({"name": name, "full_name": full_name, "channels": channels});
            create(client, out, "/api/v1/contacts", body, &format!("contact {name}")).await
        }
        ContactCommand::List => {
            let all: Value = client.get("/api/v1/contacts").await?;
            print(out, &all, &["NAME", "FULL NAME", "CHANNELS"], |all| {
                name_list(all)
                    .iter()
                    .map(|c| {
                        let channels: Vec<String> = name_list(&c["channels"])
                            .iter()
                            .map(|ch| {
                                format!(
                                    "{} {}",
                                    ch["channel"].as_str().unwrap_or(""),
                                    ch["address"].as_str().unwrap_or("")
                                )
                            })
                            .collect();
                        vec![text(&c["name"]), text(&c["full_name"]), channels.join(", ")]
                    })
                    .collect()
            });
            Ok(())
        }
        ContactCommand::Rm { name } => {
            remove(client, &format!("/api/v1/contacts/{name}"), &format!("contact {name}")).await
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn steps_text(policy: &Value) -> String {
    let mut parts: Vec<String> = name_list(&policy["steps"])
        .iter()
        .map(|s| {
            format!(
                "{}@{}",
                name_list(&s["notify"]).iter().map(text).collect::<Vec<_>>().join(","),
                text(&s["timeout"])
            )
        })
        .collect();
    if let Some(f) = policy.get("fallback").filter(|f| !f.is_null()) {
        parts.push(format!(
            "fallback {}@{}",
            name_list(&f["notify"]).iter().map(text).collect::<Vec<_>>().join(","),
            text(&f["timeout"])
        ));
    }
    parts.join(" → ")
}

pub async fn policy(client: &Client, out: Output, cmd: PolicyCommand) -> Result<(), CliError> {
    match cmd {
        PolicyCommand::Add { name, steps, repeat, fallback } => {
            let steps: Vec<Value> = steps.iter().map(|s| step(s)).collect::<Result<_, _>>()?;
            let mut body = json!({"name": name, "steps": steps, "repeat": repeat});
            if let Some(f) = fallback {
                body["fallback"] = step(&f)?;
            }
            create(client, out, "/api/v1/policies", body, &format!("policy {name}")).await
        }
        PolicyCommand::List => {
            let all: Value = client.get("/api/v1/policies").await?;
            print(out, &all, &["NAME", "STEPS", "REPEAT"], |all| {
                name_list(all).iter().map(|p| vec![text(&p["name"]), steps_text(p), text(&p["repeat"])]).collect()
            });
            Ok(())
        }
        PolicyCommand::Show { name } => {
            let p: Value = client.get(&format!("/api/v1/policies/{name}")).await?;
            details(
                out,
                &p,
                vec![("name", text(&p["name"])), ("steps", steps_text(&p)), ("repeat", text(&p["repeat"]))],
            );
            Ok(())
        }
        PolicyCommand::Rm { name } => {
            remove(client, &format!("/api/v1/policies/{name}"), &format!("policy {name}")).await
        }
    }
}

pub async fn gateway(client: &Client, out: Output, cmd: GatewayCommand) -> Result<(), CliError> {
    match cmd {
        GatewayCommand::Add { name, plugin, config, set, allow, timeout } => {
            let config = key_value_config(config.as_deref(), &set)?;
            let body = json!({"name": name, "plugin": plugin, "config": config, "allow": allow,
                              "timeout": format_duration(timeout)});
            create(client, out, "/api/v1/gateways", body, &format!("gateway {name}")).await
        }
        GatewayCommand::List => {
            let all: Value = client.get("/api/v1/gateways").await?;
            print(out, &all, &["NAME", "PLUGIN", "TIMEOUT", "CONFIG"], |all| {
                name_list(all)
                    .iter()
                    .map(|g| {
                        vec![
                            text(&g["name"]),
                            text(&g["plugin"]),
                            text(&g["timeout"]),
                            truncate(&g["config"].to_string(), 60),
                        ]
                    })
                    .collect()
            });
            Ok(())
        }
        GatewayCommand::Rm { name } => {
            remove(client, &format!("/api/v1/gateways/{name}"), &format!("gateway {name}")).await
        }
        GatewayCommand::Totals => {
            let totals: Vec<GatewayTotals> = client.get("/api/v1/gateways/totals").await?;
            print(out, &totals, &["GATEWAY", "SENT", "FAILED", "FAILED OVER", "GIVEN UP", "AVG MS", "MAX MS"], |t| {
                t.iter()
                    .map(|t| {
                        vec![
                            t.gateway.clone(),
                            t.sent.to_string(),
                            t.failed.to_string(),
                            t.failed_over.to_string(),
                            t.given_up.to_string(),
                            t.latency_avg_ms.map(|v| format!("{v:.0}")).unwrap_or_default(),
                            t.latency_max_ms.map(|v| v.to_string()).unwrap_or_default(),
                        ]
                    })
                    .collect()
            });
            Ok(())
        }
    }
}

pub async fn route(client: &Client, out: Output, cmd: RouteCommand) -> Result<(), CliError> {
    match cmd {
        RouteCommand::Add { name, channel, gateways, sources } => {
            let body = json!({"name": name, "channel": channel, "gateways": gateways, "sources": sources});
            create(client, out, "/api/v1/routes", body, &format!("route {name}")).await
        }
        RouteCommand::List => {
            let all: Value = client.get("/api/v1/routes").await?;
            print(out, &all, &["NAME", "CHANNEL", "SOURCES", "GATEWAYS"], |all| {
                name_list(all)
                    .iter()
                    .map(|r| {
                        let join = |v: &Value| name_list(v).iter().map(text).collect::<Vec<_>>();
                        let sources = join(&r["sources"]);
                        let sources = if sources.is_empty() { "any".to_string() } else { sources.join(", ") };
                        vec![text(&r["name"]), text(&r["channel"]), sources, join(&r["gateways"]).join(" → ")]
                    })
                    .collect()
            });
            Ok(())
        }
        RouteCommand::Rm { name } => remove(client, &format!("/api/v1/routes/{name}"), &format!("route {name}")).await,
    }
}

pub async fn maintenance(client: &Client, out: Output, cmd: MaintenanceCommand) -> Result<(), CliError> {
    match cmd {
        MaintenanceCommand::Add { name, sources, from, until, schedule, duration, comment } => {
            let time = |t: Option<String>| -> Result<Option<String>, CliError> {
                t.map(|t| parse_time(&t).map(format_ms).map_err(CliError::Usage)).transpose()
            };
            let body = json!({"name": name, "sources": sources, "starts_at": time(from)?, "ends_at": time(until)?,
                              "schedule": schedule, "duration": duration.map(format_duration), "comment": comment});
            create(client, out, "/api/v1/maintenance", body, &format!("maintenance window {name}")).await
        }
        MaintenanceCommand::List => {
            let all: Value = client.get("/api/v1/maintenance").await?;
            print(out, &all, &["NAME", "SOURCES", "WHEN", "COMMENT"], |all| {
                name_list(all)
                    .iter()
                    .map(|m| {
                        let when = if m["schedule"].is_string() {
                            format!("{} for {}", text(&m["schedule"]), text(&m["duration"]))
                        } else {
                            format!("{} to {}", text(&m["starts_at"]), text(&m["ends_at"]))
                        };
                        let sources = name_list(&m["sources"]).iter().map(text).collect::<Vec<_>>().join(", ");
                        vec![
                            text(&m["name"]),
                            if sources.is_empty() { "all".into() } else { sources },
                            when,
                            text(&m["comment"]),
                        ]
                    })
                    .collect()
            });
            Ok(())
        }
        MaintenanceCommand::Rm { name } => {
            remove(client, &format!("/api/v1/maintenance/{name}"), &format!("maintenance window {name}")).await
        }
    }
}

pub async fn silence(client: &Client, out: Output, cmd: SilenceCommand) -> Result<(), CliError> {
    match cmd {
        SilenceCommand::Add { sources, duration, comment } => {
            let ends_at = format_ms(crate::model::now_ms() + duration.as_millis() as i64);
            let body = json!({"sources": sources, "ends_at": ends_at, "comment": comment});
            create(client, out, "/api/v1/silences", body, &format!("a silence until {ends_at}")).await
        }
        SilenceCommand::List => {
            let all: Value = client.get("/api/v1/silences").await?;
            print(out, &all, &["ID", "SOURCES", "UNTIL", "BY", "COMMENT"], |all| {
                name_list(all)
                    .iter()
                    .map(|s| {
                        let sources = name_list(&s["sources"]).iter().map(text).collect::<Vec<_>>().join(", ");
                        vec![text(&s["id"]), sources, text(&s["ends_at"]), text(&s["created_by"]), text(&s["comment"])]
                    })
                    .collect()
            });
            Ok(())
        }
        SilenceCommand::Rm { id } => remove(client, &format!("/api/v1/silences/{id}"), &format!("silence {id}")).await,
    }
}

fn incident_rows(all: &[Incident]) -> Vec<Vec<String>> {
    all.iter()
        .map(|i| {
            vec![
                i.id.to_string(),
                i.state.as_str().to_string(),
                truncate(&i.title, 50),
                i.source.clone(),
                ago(i.opened_at),
                i.owner.clone().unwrap_or_default(),
                i.escalation.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

pub async fn incident(client: &Client, out: Output, cmd: IncidentCommand) -> Result<(), CliError> {
    let header = &["ID", "STATE", "TITLE", "SOURCE", "OPENED", "OWNER", "ESCALATION"];
    match cmd {
        IncidentCommand::List { state } => {
            let path = match state {
                Some(s) => format!("/api/v1/incidents?state={s}"),
                None => "/api/v1/incidents".to_string(),
            };
            let all: Vec<Incident> = client.get(&path).await?;
            print(out, &all, header, |all| incident_rows(all));
        }
        IncidentCommand::Show { id } => {
            let detail: Value = client.get(&format!("/api/v1/incidents/{id}")).await?;
            if out == Output::Json {
                println!("{}", serde_json::to_string_pretty(&detail).unwrap_or_default());
                return Ok(());
            }
            for key in ["id", "state", "title", "source", "message", "owner", "escalation", "opened_at", "resolved_at"]
            {
                if !detail[key].is_null() {
                    println!("{key:>11}  {}", text(&detail[key]));
                }
            }
            println!("\nTimeline:");
            for e in name_list(&detail["timeline"]) {
                let actor = e["actor"].as_str().map(|a| format!(" by {a}")).unwrap_or_default();
                println!("  {}  {}{actor}  {}", text(&e["at"]), text(&e["kind"]), e["detail"]);
            }
            let runs = name_list(&detail["runs"]);
            if !runs.is_empty() {
                println!("\nRuns ({}, the last 20):", runs.len());
                for r in runs.iter().rev().take(20).rev() {
                    println!(
                        "  {}  {:<12} {:<8} {:<10} {}",
                        text(&r["slot"]),
                        text(&r["attempt"]),
                        text(&r["status"]),
                        text(&r["location"]),
                        truncate(&text(&r["message"]), 70)
                    );
                }
            }
        }
        IncidentCommand::Ack { id, contact } => {
            let body = match contact {
                Some(c) => json!({"contact": c}),
                None => json!({}),
            };
            let i: Incident = client.send(Method::POST, &format!("/api/v1/incidents/{id}/accept"), &body).await?;
            print(out, &vec![i], header, |all| incident_rows(all));
        }
        IncidentCommand::Reject { id, contact } => {
            let body = json!({"contact": contact});
            let i: Incident = client.send(Method::POST, &format!("/api/v1/incidents/{id}/reject"), &body).await?;
            print(out, &vec![i], header, |all| incident_rows(all));
        }
        IncidentCommand::Resolve { id } => {
            let i: Incident = client.send(Method::POST, &format!("/api/v1/incidents/{id}/resolve"), &json!({})).await?;
            print(out, &vec![i], header, |all| incident_rows(all));
        }
    }
    Ok(())
}

pub async fn alert(client: &Client, out: Output, cmd: AlertCommand) -> Result<(), CliError> {
    let AlertCommand::Send(a) = cmd;
    let body = json!({"source": a.source, "key": a.key, "summary": a.summary, "details": a.details,
                      "severity": a.severity, "policy": a.policy,
                      "status": if a.resolve { "resolved" } else { "firing" }});
    let outcome: Value = client.send(Method::POST, "/api/v1/alerts", &body).await?;
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(&outcome).unwrap_or_default()),
        Output::Table => match outcome["incident"].as_i64() {
            Some(id) => println!("Alert {}: incident {id} {}.", a.key, text(&outcome["result"])),
            None => println!("Alert {}: no open incident to resolve.", a.key),
        },
    }
    Ok(())
}
