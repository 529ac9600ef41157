//! `tocsin-watchdog`: the meta-monitor that watches Tocsin itself.
//!
//! It shares nothing with the platform but the wire: its own config
//! ([`config`]), its own state in SQLite ([`state`]), and its own alarm
//! path ([`notify`], the notifier plugins run through the plugin runtime
//! linked as a library), so it can raise the alarm when every controller
//! and the database are down.
//!
//! Each round ([`watch`]) it probes the controllers, the scheduling lease,
//! the nodes, the database and the canary ([`probe`], [`canary`]), asks
//! its peers what they see ([`peers`]), records the verdicts, alarms on
//! changes, and acts on failover motions a majority of watchdogs agree on
//! ([`decide`]). [`server`] serves the status page ([`page`]), the JSON
//! status, the peer view, the canary target, `/healthz` and `/metrics`.

pub mod bench;
pub mod bench_failover;
pub mod canary;
pub mod cli;
pub mod config;
pub mod decide;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod page;
pub mod peer_secret;
pub mod peers;
pub mod platform;
pub mod probe;
pub mod server;
pub mod state;
pub mod watch;
