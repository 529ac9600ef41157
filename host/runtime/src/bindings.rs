//! Host-side bindings generated from `wit/plugin.wit`.
//!
//! Both worlds import the same host interfaces, so one set of import traits
//! (generated with the `check` world) serves both, and one `Linker` links
//! check and notifier components alike.

pub mod check {
    wasmtime::component::bindgen!({
        world: "check",
        path: "../../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "tocsin:plugin/tcp.connection": crate::net::tcp::Connection,
        },
    });
}

pub mod notifier {
    wasmtime::component::bindgen!({
        world: "notifier",
        path: "../../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "tocsin:plugin/types": crate::bindings::check::tocsin::plugin::types,
            "tocsin:plugin/log": crate::bindings::check::tocsin::plugin::log,
            "tocsin:plugin/network": crate::bindings::check::tocsin::plugin::network,
            "tocsin:plugin/http": crate::bindings::check::tocsin::plugin::http,
            "tocsin:plugin/tcp": crate::bindings::check::tocsin::plugin::tcp,
            "tocsin:plugin/dns": crate::bindings::check::tocsin::plugin::dns,
            "tocsin:plugin/tls": crate::bindings::check::tocsin::plugin::tls,
        },
    });
}

pub use check::tocsin::plugin::{dns, http, log, network, tcp, tls, types};
