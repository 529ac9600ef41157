//! The built-in plugins, compiled from `plugins/` by this crate's build
//! script, as `.wasm` bytes ready for `Runtime::load`.
//!
//! With the `testing` feature it also carries the plugins the test suites
//! use: a no-op check, a deliberately hostile one, a command component (the
//! wrong world), one that imports `wasi:sockets`, and the example from
//! `docs/writing-plugins.md`.

/// One compiled plugin.
#[derive(Clone, Copy, Debug)]
pub struct Artifact {
    pub name: &'static str,
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The plugins every Tocsin installation has.
pub const BUILTIN: &[Artifact] = &[HTTP, TCP, DNS, TLS_EXPIRY, WEBHOOK, TWILIO, EMAIL, PAGERDUTY, SLACK, VONAGE];
