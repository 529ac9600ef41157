//! The probe node: runs the checks assigned to it at their slots, through
//! the plugin runtime, and reports every run.
//!
//! The node computes slots itself from its assignment, so it keeps running
//! its checks on time whatever happens to the controllers; results wait in
//! a buffer until one answers. `tocsin node` runs one as its own process,
//! talking HTTP ([`http_link`]); `tocsin serve` runs one in process.

mod agent;
pub mod buffer;
pub mod http_link;
pub mod link;
pub mod plugins;
pub mod runner;
pub mod schedule;

pub use agent::{Agent, Identity, PluginSource};
pub use schedule::{AssignedCheck, Assignment};
