//! Tocsin: monitoring and alerting you can trust more than what it watches.
//!
//! This crate is the `tocsin` binary's library: the controller (HTTP API,
//! storage, scheduling), the probe node, and the CLI that talks to the API.
//! Checks and notifiers run as sandboxed WebAssembly components through
//! [`tocsin_runtime`]. Start with [`server::serve`] for the controller and
//! [`cli`] for the command line; `ARCHITECTURE.md` has the map.

pub mod alerting;
pub mod api;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod node;
pub mod redact;
pub mod secrets;
pub mod server;
pub mod slots;
pub mod store;
pub mod sync;
